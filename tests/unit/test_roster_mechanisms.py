"""The shared library's pure mechanisms: timestamps, the bus codec, the unit of work (events,
dedupe, idempotency, unique rules), pruning, and where each service's database lives."""
import json
import os
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest
from sqlalchemy import Integer, String, UniqueConstraint, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from roster import config, serialization, timestamps
from roster.errors import PayloadTooLarge, ValidationFailed
from roster.events import envelope, prune
from roster.testing import as_handler, recorded, recorded_fields, unit_of_work, with_idempotency_key
from roster.uow import AlreadyHandled, Replay, UniqueRule, bookkeeping_tables

UTC = timezone.utc


# ---- timestamps ----

@pytest.mark.parametrize("text, expected", [
    ("2024-01-02T10:00:00-04:00", datetime(2024, 1, 2, 14, 0, tzinfo=UTC)),
    ("2024-01-02T10:00:00+05:30", datetime(2024, 1, 2, 4, 30, tzinfo=UTC)),
    ("2024-01-02 10:00:00", datetime(2024, 1, 2, 10, 0, tzinfo=UTC)),
    ("2024-01-02T10:00:00Z", datetime(2024, 1, 2, 10, 0, tzinfo=UTC)),
    ("2024-01-02", datetime(2024, 1, 2, tzinfo=UTC)),
    ("2024-01-02T10:00:00.123456789Z"[:26] + "Z", datetime(2024, 1, 2, 10, 0, 0, 123456, tzinfo=UTC)),
])
def test_every_timestamp_in_is_normalised_to_utc(text, expected):
    assert timestamps.parse(text, "f") == expected


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01", "0001-01-01T00:00:00+14:00", 5, "2024\x00-01-01",
                                   "9" * 100])
def test_a_timestamp_that_is_not_one_is_a_422_naming_the_field(value):
    with pytest.raises(ValidationFailed) as failure:
        timestamps.parse(value, "lead_created_at")
    assert failure.value.param == "lead_created_at"


def test_future_timestamps_can_be_refused_with_a_little_tolerance_for_clock_skew():
    soon = timestamps.utcnow() + timedelta(minutes=1)
    assert timestamps.parse(soon.isoformat(), "f", not_in_future=True) == soon
    with pytest.raises(ValidationFailed):
        timestamps.parse("2999-01-01", "f", not_in_future=True)


def test_every_timestamp_out_is_rendered_one_way():
    assert timestamps.render(datetime(2024, 1, 2, 14, 0, tzinfo=UTC)) == "2024-01-02T14:00:00Z"
    assert timestamps.render(datetime(2024, 1, 2, 14, 0, 0, 5, tzinfo=UTC)) == "2024-01-02T14:00:00.000005Z"
    assert timestamps.render(datetime(2024, 1, 2, 10, 0, tzinfo=timezone(timedelta(hours=-4)))) == \
        "2024-01-02T14:00:00Z"
    assert timestamps.render(datetime(2024, 1, 2, 14, 0)) == "2024-01-02T14:00:00Z"  # naive = UTC (SQLite)
    assert timestamps.render(None) is None


# ---- the bus codec ----

@pytest.mark.parametrize("payload, path", [
    ({"n": 2**63}, "n"), ({"a": {"b": [1, -(2**63) - 1]}}, "a.b[1]"), ({"x": float("inf")}, "x"),
    ({"s": "a\x00"}, "s"), ({"d": Decimal("NaN")}, "d"), ({"o": object()}, "o"), ({"k": {1: "x"}}, "k"),
])
def test_an_event_refuses_what_other_readers_could_not_take_exactly(payload, path):
    with pytest.raises(serialization.UnencodableValue) as failure:
        serialization.encode_event(payload)
    assert failure.value.path == path


def test_an_event_carries_decimals_exactly_as_strings_and_64_bit_integers():
    text = serialization.encode_event({"d": Decimal("1234567890.123456789"), "n": 2**63 - 1, "t": "é"})
    assert orjson.loads(text) == {"d": "1234567890.123456789", "n": 2**63 - 1, "t": "é"}


def test_an_rpc_message_never_fails_to_encode_a_json_value_and_refuses_a_giant_one(monkeypatch):
    assert json.loads(serialization.dumps({"big": 2**70 + 1}))["big"] == 2**70 + 1
    monkeypatch.setattr(serialization, "MAX_MESSAGE_BYTES", 100)
    with pytest.raises(PayloadTooLarge):
        serialization.dumps({"page": "x" * 200})


# ---- the unit of work ----

class Base(DeclarativeBase):
    pass


class Thing(Base):
    __tablename__ = "things"
    __table_args__ = (UniqueConstraint("source", "external_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(20))


tables = bookkeeping_tables(Base)
RULES = (UniqueRule("things", ("source", "external_id"), "external_id", "is already used in this source"),)


@pytest.fixture()
def uow(tmp_path):
    return unit_of_work(Base, tables, tmp_path, unique_rules=RULES)


def add_thing(uow, external_id="e1", **event):
    with uow.write() as tx:
        tx.session.add(Thing(source="s", external_id=external_id))
        tx.session.flush()
        tx.record("thing_added", external_id=external_id, **event)
        return tx.result({"external_id": external_id})


def count(uow, model=Thing):
    with uow.read() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_changes_and_their_events_commit_together(uow):
    add_thing(uow)
    assert count(uow) == 1
    [event] = recorded(uow, "thing_added")
    assert event["external_id"] == "e1" and event["version"] == 1 and event["occurred_at"].endswith("Z")


def test_an_event_the_bus_cannot_carry_is_a_422_naming_the_field_and_nothing_is_stored(uow):
    with pytest.raises(ValidationFailed) as failure:
        add_thing(uow, extra={"n": 2**64})
    assert failure.value.param == "extra.n"
    assert count(uow) == 0 and recorded(uow) == []


def test_a_broken_unique_constraint_is_a_422_naming_the_field(uow):
    add_thing(uow)
    with pytest.raises(ValidationFailed) as failure:
        add_thing(uow)
    assert failure.value.param == "external_id" and "already used" in failure.value.message
    assert count(uow) == 1 and len(recorded(uow)) == 1


def test_a_handler_applies_an_event_once_however_often_it_arrives(uow):
    event = envelope(n=1)
    add_thing(as_handler(uow, "on_thing", event), "first")
    with pytest.raises(AlreadyHandled):
        add_thing(as_handler(uow, "on_thing", event), "second")
    add_thing(as_handler(uow, "another_handler", event), "third")  # dedupe is per handler
    assert count(uow) == 2


def test_a_command_retried_with_its_key_replays_its_first_answer_and_changes_nothing(uow):
    first = add_thing(with_idempotency_key(uow, "k", "request-1"), "e1")
    with pytest.raises(Replay) as replay:
        add_thing(with_idempotency_key(uow, "k", "request-1"), "e1")
    assert replay.value.result == first
    with pytest.raises(ValidationFailed) as failure:
        add_thing(with_idempotency_key(uow, "k", "request-2"), "e2")
    assert failure.value.param == "Idempotency-Key"
    assert count(uow) == 1 and len(recorded_fields(uow)) == 1


def test_a_failed_command_stores_no_answer_so_its_retry_runs(uow):
    add_thing(uow, "taken")
    with pytest.raises(ValidationFailed):
        add_thing(with_idempotency_key(uow, "k2"), "taken")
    with uow.write() as tx:
        tx.session.execute(Thing.__table__.delete())
    assert add_thing(with_idempotency_key(uow, "k2"), "taken") == {"external_id": "taken"}


def test_prune_keeps_what_is_recent_or_unpublished(uow):
    old, recent = timestamps.utcnow() - timedelta(days=40), timestamps.utcnow() - timedelta(hours=1)
    with uow.write() as tx:
        tx.session.add_all([
            tables.outbox(event_type="old", payload="{}", published_at=old),
            tables.outbox(event_type="recent", payload="{}", published_at=recent),
            tables.outbox(event_type="unpublished", payload="{}", created_at=old),
            tables.processed(key="old", processed_at=old), tables.processed(key="recent", processed_at=recent),
            tables.idempotent(key="old", fingerprint="f", result="{}", created_at=old),
            tables.idempotent(key="recent", fingerprint="f", result="{}", created_at=recent),
        ])
    prune(uow.sessions, tables)
    with uow.read() as session:
        assert sorted(session.scalars(select(tables.outbox.event_type))) == ["recent", "unpublished"]
        assert list(session.scalars(select(tables.processed.key))) == ["recent"]
        assert list(session.scalars(select(tables.idempotent.key))) == ["recent"]


# ---- where each service's data lives ----

def test_one_shared_sqlite_url_gives_each_service_its_own_file(monkeypatch):
    monkeypatch.delenv("CUSTOMERS_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", "sqlite:////data/roster.db")
    assert config.database_url("customers") == "sqlite:////data/roster.customers.db"
    assert config.database_url("contacts") == "sqlite:////data/roster.contacts.db"
    monkeypatch.setenv("CUSTOMERS_DATABASE_URL", "sqlite:////elsewhere/c.db")
    assert config.database_url("customers") == "sqlite:////elsewhere/c.db"
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    assert config.database_url("contacts") == "postgresql://u@h/db"
    assert config.database_schema("contacts").endswith("contacts")
    assert os.environ["DATABASE_URL"] == "postgresql://u@h/db"


def test_an_error_without_a_param_crosses_rpc_without_one():
    from nameko.exceptions import deserialize, serialize

    import roster.rpc  # noqa: F401  (registers the errors that cross RPC)
    from roster.errors import NotFound, ServiceUnavailable

    for error in (ServiceUnavailable("try again"), NotFound("no such customer", param="uuid")):
        back = deserialize(serialize(error))
        assert (type(back), back.message, back.param) == (type(error), error.message, error.param)


def test_changes_any_wants_an_update_that_changes_one_of_its_fields_or_cannot_tell():
    from roster.handlers import changes_any

    wants = changes_any("name", "company")
    assert wants({"changes": {"name": "A"}}) and wants({"changes": {"company": "", "tags": []}})
    assert not wants({"changes": {"tags": ["x"], "email": "a@b.c"}}) and not wants({"changes": {}})
    assert wants({"uuid": "cus_1"}) and wants({"changes": ["name"]})  # malformed: the handler decides


def test_a_batch_commits_many_events_writes_at_once_each_standing_or_falling_on_its_own(uow):
    committed = []
    uow.on_commit = committed.append
    with uow.batch():
        with uow.batch_item("h:e1"):
            add_thing(uow, "a")
        with pytest.raises(ValidationFailed):  # the second event breaks a unique rule: all it did is undone
            with uow.batch_item("h:e2"):
                add_thing(uow, "b")
                add_thing(uow, "a")
        with pytest.raises(AlreadyHandled):  # the first event again, in the same batch: already applied
            with uow.batch_item("h:e1"):
                add_thing(uow, "c")
        with uow.batch_item("h:e3"):
            add_thing(uow, "d")
            add_thing(uow, "e")  # a handler's second write: the event is checked once
        assert count(uow) == 3  # reads see the batch's own writes
        with uow.sessions() as other:  # nothing is committed before the batch ends
            assert other.scalar(select(func.count()).select_from(Thing)) == 0
    with uow.read() as session:
        assert sorted(session.scalars(select(Thing.external_id))) == ["a", "d", "e"]
    assert [event["external_id"] for event in recorded(uow, "thing_added")] == ["a", "d", "e"]
    assert [[event["external_id"] for event in events] for events in committed] == [["a", "d", "e"]]
    uow.handling("h:e2")
    add_thing(uow, "b")  # the failed event was not marked handled: its retry applies it


def test_a_batch_that_fails_as_a_whole_commits_nothing(uow):
    with pytest.raises(RuntimeError):
        with uow.batch():
            with uow.batch_item("h:e1"):
                add_thing(uow, "a")
            raise RuntimeError("the database went away")
    assert count(uow) == 0 and recorded(uow) == []
    uow.handling("h:e1")
    add_thing(uow, "a")  # the event was not marked handled: its retry applies it
    assert count(uow) == 1


def test_a_batch_marks_its_events_in_one_statement_and_a_failed_one_stays_unmarked(uow):
    with uow.batch():
        assert uow.mark_handled(["h:e1"]) == {"h:e1"}
        with uow.batch_item("h:e1", marked=True):
            add_thing(uow, "a")
    with uow.batch():
        # e1 was handled before; e2 twice in one batch counts once
        assert uow.mark_handled(["h:e1", "h:e2", "h:e3", "h:e2"]) == {"h:e2", "h:e3"}
        with pytest.raises(ValidationFailed):
            with uow.batch_item("h:e2", marked=True):
                add_thing(uow, "b")
                add_thing(uow, "a")  # breaks a unique rule: the event and its mark are undone
        with uow.batch_item("h:e3", marked=True):
            add_thing(uow, "c")
            add_thing(uow, "d")  # a second write of a marked event is not refused as handled
    with uow.read() as session:
        assert sorted(session.scalars(select(Thing.external_id))) == ["a", "c", "d"]
        assert sorted(session.scalars(select(uow.tables.processed.key))) == ["h:e1", "h:e3"]
    with uow.batch():
        assert uow.mark_handled(["h:e2"]) == {"h:e2"}  # the failed event's retry runs


def test_an_event_of_a_batch_cannot_go_on_after_one_of_its_writes_failed(uow):
    with uow.batch():
        with pytest.raises(RuntimeError, match="failed before"):
            with uow.batch_item("h:e1"):
                with pytest.raises(ValidationFailed):
                    add_thing(uow, "a")
                    add_thing(uow, "a")  # one write, broken: the event's savepoint has it
                add_thing(uow, "b")  # a handler that caught the failure may not write on top of it
        with uow.batch_item("h:e2"):
            add_thing(uow, "c")
    with uow.read() as session:
        assert sorted(session.scalars(select(Thing.external_id))) == ["c"]


def test_a_batch_memo_lives_for_the_batch_and_is_emptied_when_an_event_fails(uow):
    from roster.uow import batch_memo

    with uow.read() as session:
        assert batch_memo(session) is None  # outside a batch nothing is remembered
    with uow.batch():
        with uow.batch_item("h:e1"):
            with uow.read() as session:
                batch_memo(session)["x"] = 1
        with uow.batch_item("h:e2"):
            with uow.read() as session:
                assert batch_memo(session) == {"x": 1}  # a later event of the batch sees it
        with pytest.raises(ValidationFailed):
            with uow.batch_item("h:e3"):
                add_thing(uow, "a")
                add_thing(uow, "a")
        with uow.read() as session:
            assert batch_memo(session) == {}  # its locks may be gone with the failed event's savepoint


def test_a_write_of_a_batch_outside_any_event_that_breaks_a_rule_leaves_the_batch_usable(uow):
    with uow.batch():
        with pytest.raises(ValidationFailed):
            with uow.write() as tx:  # a savepoint of its own: its failed flush is rolled back
                tx.session.add_all([Thing(source="s", external_id="a"), Thing(source="s", external_id="a")])
        with uow.batch_item("h:e1"):
            add_thing(uow, "b")
    assert count(uow) == 1


def test_a_batch_worker_takes_every_event_that_arrived_before_it_started():
    from roster.handlers import DurableEventHandler

    spawned = []

    class Container:
        service_name = "things"

        def spawn_worker(self, entrypoint, args, kwargs, context_data=None, handle_result=None):
            spawned.append(args)

    class Message:
        headers = {}

    handler = DurableEventHandler("source", "thing_happened", batch=2)
    handler.container, handler.method_name, handler._batch_entrypoint = Container(), "handle", handler
    for n in range(3):  # a burst the consumer reads before the worker it spawned for the first one runs
        handler.handle_message(envelope(n=n), Message())
    [(batch,)] = spawned  # one worker, not one per event
    batch.take()  # what the worker does first
    assert [payload["n"] for payload in batch] == [0, 1] and len(batch.messages) == 2  # up to its size
    assert [body["n"] for body, _ in handler._waiting] == [2]  # the next batch's


def batch_handler(size: int):
    """A batch handler on a fake container; returns it and the list of batches its workers got."""
    from roster.handlers import DurableEventHandler

    spawned = []

    class Container:
        service_name = "things"

        def spawn_worker(self, entrypoint, args, kwargs, context_data=None, handle_result=None):
            spawned.append(args[0])

    handler = DurableEventHandler("source", "thing_happened", batch=size)
    handler.container, handler.method_name, handler._batch_entrypoint = Container(), "handle", handler
    return handler, spawned


class Message:
    headers = {}


def test_an_idle_batch_handler_starts_on_the_first_event_without_waiting_for_more():
    import eventlet

    handler, spawned = batch_handler(10)
    handler.handle_message(envelope(n=0), Message())
    later = eventlet.spawn_after(0.03, handler.handle_message, envelope(n=1), Message())
    [batch] = spawned
    batch.take()
    later.wait()
    assert [payload["n"] for payload in batch] == [0]  # the one that came later is the next batch's


def test_under_sustained_load_a_batch_waits_a_little_for_more_events(monkeypatch):
    import time

    import eventlet

    from roster import handlers

    monkeypatch.setattr(handlers, "BATCH_LINGER_SECONDS", 0.3)
    handler, spawned = batch_handler(3)
    handler._batch_ended = time.monotonic()  # a batch just ended: events are flowing
    handler.handle_message(envelope(n=0), Message())
    for n in (1, 2, 3):  # the batch is full with the third: it stops waiting then
        eventlet.spawn_after(0.02 * n, handler.handle_message, envelope(n=n), Message())
    [batch] = spawned
    started = time.monotonic()
    batch.take()
    assert [payload["n"] for payload in batch] == [0, 1, 2]
    assert time.monotonic() - started < 0.25  # it did not wait out the linger once full
    eventlet.sleep(0.05)
    assert [body["n"] for body, _ in handler._waiting] == [3]


class BatchService:
    """A service as a batch worker sees it: its one UnitOfWork, and the methods a test gives it."""

    def __init__(self, uow):
        self.uow = uow


def test_a_batch_runs_without_savepoints_until_an_event_fails_then_isolates_it(uow):
    from sqlalchemy import event as sa_event

    from roster.handlers import EventBatch, _batch_runner

    runs = []

    class Service(BatchService):
        def handle(self, payload):
            runs.append(payload["n"])
            if payload["n"] == "poison":
                raise RuntimeError("cannot")
            add_thing(uow, payload["n"])

    savepoints = []
    engine = uow.sessions.kw["bind"]
    sa_event.listen(engine, "savepoint", lambda *args: savepoints.append(1))
    run_batch = _batch_runner("handle")
    assert run_batch(Service(uow), EventBatch([envelope(n="a"), envelope(n="b")])) == [None, None]
    assert runs == ["a", "b"] and savepoints == []  # nothing failed: no savepoint per event

    runs.clear()
    outcomes = run_batch(Service(uow), EventBatch([envelope(n="c"), envelope(n="poison"), envelope(n="d")]))
    assert outcomes[0] is None and outcomes[2] is None and outcomes[1][0] is RuntimeError
    assert runs == ["c", "poison", "c", "poison", "d"]  # abandoned at the failure, then each in a savepoint
    with uow.read() as session:
        assert sorted(session.scalars(select(Thing.external_id))) == ["a", "b", "c", "d"]
        assert session.scalar(select(func.count()).select_from(uow.tables.processed)) == 4  # not the poison one
    assert [event["external_id"] for event in recorded(uow, "thing_added")] == ["a", "b", "c", "d"]


def test_a_prepared_batch_prepares_outside_the_transaction_only_what_was_not_handled(uow):
    from roster.handlers import EventBatch, _batch_runner

    prepared_for, engine = [], uow.sessions.kw["bind"]

    class Service(BatchService):
        def prepare(self, payloads):
            prepared_for.append([p["n"] for p in payloads])
            assert engine.pool.checkedout() == 0  # no connection (no transaction) held while preparing
            return [ValueError(f"no {p['n']}") if p["n"] == "bad" else p["n"].upper() for p in payloads]

        def handle(self, payload, value):
            add_thing(uow, value)

    run_batch = _batch_runner("handle", "prepare")
    first = [envelope(n="a"), envelope(n="bad"), envelope(n="b")]
    outcomes = run_batch(Service(uow), EventBatch(first))
    assert outcomes[0] is None and outcomes[2] is None
    assert outcomes[1][0] is ValueError and str(outcomes[1][1]) == "no bad"  # that event alone fails
    with uow.read() as session:
        assert sorted(session.scalars(select(Thing.external_id))) == ["A", "B"]
        assert session.scalar(select(func.count()).select_from(uow.tables.processed)) == 2  # not the bad one
    # redelivered with a new one: the handled events are neither prepared nor handled again
    assert run_batch(Service(uow), EventBatch([first[0], first[1], envelope(n="c")]))[0] is None
    assert prepared_for[-1] == ["bad", "c"]
    assert count(uow) == 3


def test_a_prepare_that_raises_fails_its_events_and_stores_nothing(uow):
    from roster.handlers import EventBatch, _batch_runner

    class Service(BatchService):
        def prepare(self, payloads):
            raise ConnectionError("source down")

        def handle(self, payload, value):
            add_thing(uow, payload["n"])

    outcomes = _batch_runner("handle", "prepare")(Service(uow), EventBatch([envelope(n="a"), envelope(n="b")]))
    assert [outcome[0] for outcome in outcomes] == [ConnectionError, ConnectionError]
    assert count(uow) == 0
    with uow.read() as session:
        assert session.scalar(select(func.count()).select_from(uow.tables.processed)) == 0  # both retried


def test_prepare_is_only_for_batch_handlers():
    from roster.handlers import DurableEventHandler

    with pytest.raises(TypeError):
        DurableEventHandler("source", "thing_happened", prepare="prepare")
    with pytest.raises(TypeError):
        DurableEventHandler("source", "thing_happened", bulk="bulk")


def add_things(uow, external_ids):
    """A set-based add_thing: one statement for all of them."""
    with uow.write() as tx:
        tx.session.add_all([Thing(source="s", external_id=external_id) for external_id in external_ids])
        tx.session.flush()
        for external_id in external_ids:
            tx.record("thing_added", external_id=external_id)


def test_a_bulk_batch_hands_the_events_not_handled_before_to_one_call(uow):
    from roster.handlers import EventBatch, _batch_runner

    calls = []

    class Service(BatchService):
        def handle(self, payload):
            raise AssertionError("the bulk method handles a batch that succeeds")

        def bulk(self, payloads):
            calls.append([payload["n"] for payload in payloads])
            add_things(uow, [payload["n"] for payload in payloads])

    run_batch = _batch_runner("handle", bulk="bulk")
    a = envelope(n="a")
    assert run_batch(Service(uow), EventBatch([a, envelope(n="b"), a])) == [None, None, None]
    assert calls == [["a", "b"]]  # a second copy of an event is not handed over again
    assert run_batch(Service(uow), EventBatch([a, envelope(n="c")])) == [None, None]
    assert calls[-1] == ["c"]  # handled before: left out
    with uow.read() as session:
        assert sorted(session.scalars(select(Thing.external_id))) == ["a", "b", "c"]
        assert session.scalar(select(func.count()).select_from(uow.tables.processed)) == 3
    assert [event["external_id"] for event in recorded(uow, "thing_added")] == ["a", "b", "c"]


def test_a_prepared_bulk_batch_gets_each_events_value_and_fails_the_unprepared_alone(uow):
    from roster.handlers import EventBatch, _batch_runner

    calls, handled = [], []

    class Service(BatchService):
        def prepare(self, payloads):
            return [ValueError("no") if p["n"] == "bad" else p["n"].upper() for p in payloads]

        def handle(self, payload, value):
            handled.append(value)
            add_thing(uow, value)

        def bulk(self, payloads, values):
            calls.append(([payload["n"] for payload in payloads], values))
            add_things(uow, values)

    run_batch = _batch_runner("handle", "prepare", "bulk")
    a = envelope(n="a")
    outcomes = run_batch(Service(uow), EventBatch([a, envelope(n="bad"), envelope(n="b"), a]))
    assert outcomes[0] is None and outcomes[2] is None and outcomes[3] is None and outcomes[1][0] is ValueError
    assert calls == [(["a", "b"], ["A", "B"])] and handled == []  # each value beside its event, once
    assert run_batch(Service(uow), EventBatch([a, envelope(n="c")])) == [None, None]
    assert calls[-1] == (["c"], ["C"])  # handled before: neither prepared nor handed over again
    with uow.read() as session:
        assert sorted(session.scalars(select(Thing.external_id))) == ["A", "B", "C"]


def test_a_bulk_call_that_fails_leaves_nothing_and_the_handler_takes_the_events_one_by_one(uow):
    from roster.handlers import EventBatch, _batch_runner

    handled = []

    class Service(BatchService):
        def handle(self, payload):
            handled.append(payload["n"])
            if payload["n"] == "poison":
                raise RuntimeError("cannot")
            add_thing(uow, payload["n"])

        def bulk(self, payloads):
            add_things(uow, [payload["n"] for payload in payloads if payload["n"] != "poison"])
            if any(payload["n"] == "poison" for payload in payloads):
                raise RuntimeError("cannot")

    outcomes = _batch_runner("handle", bulk="bulk")(
        Service(uow), EventBatch([envelope(n="a"), envelope(n="poison"), envelope(n="b")]))
    assert outcomes[0] is None and outcomes[2] is None and outcomes[1][0] is RuntimeError
    assert handled == ["a", "poison", "b"]  # the bulk call's writes were rolled back: each event once more
    with uow.read() as session:
        assert sorted(session.scalars(select(Thing.external_id))) == ["a", "b"]
        assert session.scalar(select(func.count()).select_from(uow.tables.processed)) == 2  # not the poison one
    assert [event["external_id"] for event in recorded(uow, "thing_added")] == ["a", "b"]


def test_psycopg_converts_a_long_statement_once_not_on_every_execution():
    from psycopg import _queries, adapt

    from roster.database import _cache_long_statements

    _cache_long_statements()  # what every PostgreSQL engine does first
    _cache_long_statements()  # and again: still one cache
    query = ("INSERT INTO outbox (payload) VALUES " + ", ".join(f"(%(p_{n})s)" for n in range(100))).encode()
    params = {f"p_{n}": str(n) for n in range(100)}  # beyond psycopg's own cache (50 parameters)
    converted = _queries.PostgresQuery(adapt.Transformer())
    before = _queries._query2pg_nocache.cache_info()
    converted.convert(query, params)
    converted.convert(query, params)
    after = _queries._query2pg_nocache.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
    assert converted.query.startswith(b"INSERT INTO outbox (payload) VALUES ($1), ($2)")


def test_a_batch_binds_each_events_request_id_while_it_runs_and_then_the_one_before(uow):
    from roster import tracing
    from roster.handlers import EventBatch, _batch_runner

    seen = []

    class Service(BatchService):
        def handle(self, payload):
            seen.append(tracing.current())
            add_thing(uow, payload["n"])

    tracing.bind("the worker's own")
    try:
        batch = EventBatch([envelope(n="a", request_id="req-a"), envelope(n="b", request_id="req-b")])
        assert _batch_runner("handle")(Service(uow), batch) == [None, None]
        assert seen == ["req-a", "req-b"]
        assert tracing.current() == "the worker's own"  # not the last event's, for what the worker does next
    finally:
        tracing.bind(None)


def test_an_entrypoint_checks_a_calls_arguments_against_a_signature_worked_out_once(monkeypatch):
    import inspect
    from types import SimpleNamespace

    from nameko.exceptions import IncorrectSignature

    from roster.rpc import RosterRpc

    class Service:
        def create(self, data, flag=False):
            pass

    worked_out = []
    signature = inspect.signature
    monkeypatch.setattr(inspect, "signature", lambda fn: worked_out.append(fn) or signature(fn))
    entrypoint = RosterRpc()
    entrypoint.container, entrypoint.method_name = SimpleNamespace(service_cls=Service), "create"
    entrypoint.check_signature(({},), {})
    entrypoint.check_signature(({},), {"flag": True})
    for args, kwargs in [((), {}), (({}, 1, 2), {}), (({},), {"nope": 1}), (({},), {"data": {}})]:
        with pytest.raises(IncorrectSignature):
            entrypoint.check_signature(args, kwargs)
    assert len(worked_out) == 1
