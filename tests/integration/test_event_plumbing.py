"""The shared event plumbing on a real broker and database (roster.uow, roster.events,
roster.handlers, roster.dependencies, roster.rpc), through toy services so each promise is
tested on its own: committed events only, rows left behind republished, a row the broker
refuses quarantined without blocking later ones, one publication per row with two
processes, a redelivered event applied once, failed events retried and then dead-lettered,
and a command retried with its idempotency key answered once."""
import json
import time
from contextlib import contextmanager
from decimal import Decimal

import eventlet
import pytest
from kombu import Connection, Exchange, Queue
from nameko.containers import ServiceContainer
from nameko.events import event_handler as plain_event_handler
from nameko.standalone.events import event_dispatcher
from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy import Integer, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import roster.dependencies
import roster.errors
import roster.handlers
import roster.rpc
from roster.dependencies import UnitOfWorkProvider
from roster.errors import ValidationFailed
from roster.events import envelope
from roster.handlers import Retired, event_handler
from roster.rpc import IDEMPOTENCY_KEY, rpc
from roster.uow import bookkeeping_tables


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    text: Mapped[str] = mapped_column(String(100))


class Counter(Base):
    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


tables = bookkeeping_tables(Base)

# Values a service may compute but the bus cannot carry (over RPC a >64-bit integer arrives as
# a float and NaN as null, so a client cannot send these; a service can still make them).
UNENCODABLE = {"huge": 2**70, "nan": {"deep": float("nan")}, "infinite": [Decimal("Infinity")], "nul": "a\x00b"}


class NoteTaker:
    name = "note_taker"
    uow = UnitOfWorkProvider(Base, tables, migrate=False)

    @rpc
    def take(self, text, extra=None):
        with self.uow.write() as tx:
            note = Note(text=text)
            tx.session.add(note)
            tx.session.flush()
            tx.record("note_taken", text=text, extra=UNENCODABLE.get(extra, extra))
            return tx.result({"id": note.id, "text": text})

    @rpc
    def fail_after_recording(self, text):
        with self.uow.write() as tx:
            tx.record("note_taken", text=text)
            raise ValueError("rolled back")

    @event_handler("counter_source", "counted")
    def count(self, payload):  # not idempotent by nature: only the dedupe keeps it right
        with self.uow.write() as tx:
            counter = tx.session.get(Counter, "n") or Counter(name="n", value=0)
            counter.value += 1
            tx.session.add(counter)


class Listener:
    name = "note_listener"
    heard: list = []

    @plain_event_handler("note_taker", "note_taken")
    def on_note(self, payload):
        Listener.heard.append(payload)


def start(amqp_uri, *classes):
    containers = [ServiceContainer(cls, {"AMQP_URI": amqp_uri}) for cls in classes]
    for container in containers:
        container.start()
    return containers


@pytest.fixture()
def containers(amqp_uri, own_database):
    Listener.heard = []
    running = start(amqp_uri, Listener, NoteTaker)
    yield running
    for container in running:
        container.stop()


def provider(container) -> UnitOfWorkProvider:
    return next(dep for dep in container.dependencies if dep.attr_name == "uow")


def wait_for(condition, timeout=8.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        eventlet.sleep(0.05)


def texts():
    return [payload["text"] for payload in Listener.heard]


def test_only_committed_events_are_published(containers, amqp_uri):
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=10) as cluster:
        cluster.note_taker.take("kept")
        with pytest.raises(Exception):
            cluster.note_taker.fail_after_recording("rolled back")
    wait_for(lambda: Listener.heard)
    eventlet.sleep(0.5)
    assert texts() == ["kept"]
    assert Listener.heard[0]["version"] == 1 and Listener.heard[0]["event_id"]


def test_a_value_the_bus_cannot_carry_is_a_422_and_stores_nothing(containers, amqp_uri):
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=10) as cluster:
        for bad in UNENCODABLE:
            with pytest.raises(ValidationFailed) as failure:
                cluster.note_taker.take("refused", extra=bad)
            assert failure.value.param.startswith("extra")
        cluster.note_taker.take("after")  # the service is still up and later events flow
    wait_for(lambda: Listener.heard)
    eventlet.sleep(0.3)
    assert texts() == ["after"]
    with provider(containers[1]).sessions() as session:
        assert session.scalars(select(Note.text)).all() == ["after"]


def test_rows_left_behind_by_a_crash_are_published_by_the_relay(containers):
    sessions = provider(containers[1]).sessions
    with sessions.begin() as session:  # committed, as if the process died before publishing
        session.add(tables.outbox(event_type="note_taken", payload='{"event_id": "e1", "text": "left behind"}'))
    wait_for(lambda: Listener.heard)
    assert texts() == ["left behind"]


def test_a_row_the_broker_refuses_is_quarantined_and_does_not_block_later_rows(containers, monkeypatch):
    monkeypatch.setattr(roster.dependencies, "MAX_MESSAGE_BYTES", 200)
    sessions = provider(containers[1]).sessions
    with sessions.begin() as session:
        session.add(tables.outbox(event_type="note_taken", payload='{"text": "%s"}' % ("x" * 500)))
        session.add(tables.outbox(event_type="note_taken", payload='{"event_id": "e2", "text": "behind it"}'))
    wait_for(lambda: Listener.heard)
    with sessions() as session:
        quarantined = session.scalars(select(tables.outbox).where(tables.outbox.failed_at.is_not(None))).all()
    assert texts() == ["behind it"]
    assert len(quarantined) == 1 and "exceeds" in quarantined[0].error
    assert quarantined[0].published_at is None  # refused, not published


def test_two_processes_of_one_service_publish_each_row_once(containers, amqp_uri):
    second = start(amqp_uri, NoteTaker)[0]  # shares the first one's database
    try:
        sessions = provider(containers[1]).sessions
        with sessions.begin() as session:
            session.add_all([tables.outbox(event_type="note_taken", payload='{"event_id": "e%d", "text": "%d"}'
                                           % (n, n)) for n in range(300)])
        wait_for(lambda: len(Listener.heard) >= 300)
        eventlet.sleep(1.5)
    finally:
        second.stop()
    assert sorted(texts(), key=int) == [str(n) for n in range(300)]


def test_a_redelivered_event_is_applied_once(containers, amqp_uri):
    dispatch = event_dispatcher({"AMQP_URI": amqp_uri})
    event = envelope(n=1)
    for _ in range(3):
        dispatch("counter_source", "counted", event)
    dispatch("counter_source", "counted", envelope(n=2))
    sessions = provider(containers[1]).sessions

    def counted():
        with sessions() as session:
            return session.scalar(select(Counter.value).where(Counter.name == "n"))

    wait_for(lambda: counted() == 2)
    eventlet.sleep(0.5)
    assert counted() == 2


def test_a_command_retried_with_its_idempotency_key_runs_once(containers, amqp_uri):
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=10, context_data={IDEMPOTENCY_KEY: "k1"}) as cluster:
        first = cluster.note_taker.take("once")
        again = cluster.note_taker.take("once")
        with pytest.raises(ValidationFailed) as failure:
            cluster.note_taker.take("something else")
    assert first == again and failure.value.param == "Idempotency-Key"
    with provider(containers[1]).sessions() as session:
        assert session.scalar(select(func.count()).select_from(Note)) == 1


class Flaky:
    name = "flaky_consumer"
    attempts: list = []
    fail_times = 1
    error = RuntimeError("not yet")

    @event_handler("flaky_source", "thing_happened")
    def handle(self, payload):
        Flaky.attempts.append(time.monotonic())
        if len(Flaky.attempts) <= Flaky.fail_times:
            raise Flaky.error


def dead_letters(amqp_uri, service="flaky_consumer"):
    with Connection(amqp_uri) as connection:
        channel = connection.default_channel
        found = []
        while (message := channel.basic_get(f"dead_letters.{service}", no_ack=True)) is not None:
            found.append(message)
        return found


@pytest.fixture()
def flaky(amqp_uri, monkeypatch):
    monkeypatch.setattr(roster.handlers, "RETRY_BASE_SECONDS", 0.2)
    Flaky.attempts = []
    Flaky.error = RuntimeError("not yet")
    container = start(amqp_uri, Flaky)[0]
    dead_letters(amqp_uri)  # empties the queue (and fails if it was not declared)
    yield
    container.stop()


def test_a_failed_event_is_retried_after_a_pause(flaky, amqp_uri):
    Flaky.fail_times = 1
    event_dispatcher({"AMQP_URI": amqp_uri})("flaky_source", "thing_happened", envelope(n=1))
    wait_for(lambda: len(Flaky.attempts) == 2)
    assert Flaky.attempts[1] - Flaky.attempts[0] >= 0.18
    assert dead_letters(amqp_uri) == []


def test_an_event_that_keeps_failing_goes_to_the_dead_letters_with_its_reason(flaky, amqp_uri):
    Flaky.fail_times = 100
    event = envelope(n=2)
    event_dispatcher({"AMQP_URI": amqp_uri})("flaky_source", "thing_happened", event)
    wait_for(lambda: len(Flaky.attempts) == roster.handlers.MAX_ATTEMPTS, timeout=15)
    eventlet.sleep(0.5)
    [letter] = dead_letters(amqp_uri)
    gaps = [b - a for a, b in zip(Flaky.attempts, Flaky.attempts[1:])]
    assert all(later > earlier for earlier, later in zip(gaps, gaps[1:]))  # backoff grows
    assert letter.headers["x-roster-attempts"] == roster.handlers.MAX_ATTEMPTS
    assert "not yet" in letter.headers["x-roster-error"]
    assert letter.headers["x-roster-original-routing-key"] == "thing_happened"
    assert letter.headers["x-roster-original-queue"].startswith("evt-flaky_source-thing_happened")
    assert json.loads(letter.body)["event_id"] == event["event_id"]
    assert len(Flaky.attempts) == roster.handlers.MAX_ATTEMPTS


def test_an_event_that_fails_because_the_database_is_away_is_retried_until_it_is_back(flaky, amqp_uri, monkeypatch):
    from sqlalchemy.exc import OperationalError

    monkeypatch.setattr(roster.handlers, "RETRY_BASE_SECONDS", 0.05)
    Flaky.error = OperationalError("INSERT ...", {}, ConnectionRefusedError("the database is away"))
    Flaky.fail_times = roster.handlers.MAX_ATTEMPTS + 2  # an outage longer than the retries of a bad event
    event_dispatcher({"AMQP_URI": amqp_uri})("flaky_source", "thing_happened", envelope(n=4))
    wait_for(lambda: len(Flaky.attempts) == roster.handlers.MAX_ATTEMPTS + 3, timeout=15)
    eventlet.sleep(0.3)
    assert len(Flaky.attempts) == roster.handlers.MAX_ATTEMPTS + 3  # handled once the database was back
    assert dead_letters(amqp_uri) == []


def test_an_event_from_a_future_version_is_dead_lettered_at_once(flaky, amqp_uri):
    event_dispatcher({"AMQP_URI": amqp_uri})("flaky_source", "thing_happened", {**envelope(n=3), "version": 2})
    wait_for(lambda: dead_letters_count(amqp_uri) == 1)
    assert Flaky.attempts == []


def dead_letters_count(amqp_uri, service="flaky_consumer"):
    with Connection(amqp_uri) as connection:
        return connection.default_channel.queue_declare(f"dead_letters.{service}", passive=True).message_count


class Picky:
    name = "picky_consumer"
    handled: list = []

    @event_handler("picky_source", "thing_changed", when=roster.handlers.changes_any("name"))
    def handle(self, payload):
        Picky.handled.append(payload["n"])


def test_an_event_the_when_predicate_declines_is_acknowledged_without_running_the_handler(amqp_uri):
    Picky.handled = []
    container = start(amqp_uri, Picky)[0]
    try:
        dispatch = event_dispatcher({"AMQP_URI": amqp_uri})
        dispatch("picky_source", "thing_changed", envelope(n=1, changes={"tags": ["a"]}))
        dispatch("picky_source", "thing_changed", envelope(n=2, changes={"name": "B", "tags": []}))
        dispatch("picky_source", "thing_changed", envelope(n=3, changes={"email": "x@example.com"}))
        wait_for(lambda: Picky.handled)
        eventlet.sleep(0.5)
        assert Picky.handled == [2]
        with Connection(amqp_uri) as connection:  # the declined ones were acknowledged, not left queued
            queue = next(iter(container.entrypoints)).queue
            assert connection.default_channel.queue_declare(queue.name, passive=True).message_count == 0
    finally:
        container.stop()


class Tally:
    name = "tally"
    uow = UnitOfWorkProvider(Base, tables, migrate=False)
    batches: list = []
    poison = "never"

    @event_handler("tally_source", "counted", batch=50)
    def count(self, payload):  # not idempotent by nature: only the dedupe keeps it right
        Tally.batches.append(self.uow._batch)  # the batch this event is handled in (kept: ids are reused)
        if payload["n"] == Tally.poison:
            raise RuntimeError("this one cannot be counted")
        with self.uow.write() as tx:
            counter = tx.session.get(Counter, "n") or Counter(name="n", value=0)
            counter.value += 1
            tx.session.add(counter)
            tx.record("tallied", n=payload["n"])


@pytest.fixture()
def tally(amqp_uri, own_database, monkeypatch):
    monkeypatch.setattr(roster.handlers, "RETRY_BASE_SECONDS", 0.05)
    Tally.batches, Tally.poison = [], "never"
    container = start(amqp_uri, Tally)[0]
    dead_letters(amqp_uri, "tally")
    yield container
    container.stop()


def tallied(container):
    with provider(container).sessions() as session:
        return session.scalar(select(Counter.value).where(Counter.name == "n")) or 0


def test_a_batch_handler_applies_each_event_once_in_few_transactions_and_isolates_a_poison_one(tally, amqp_uri):
    Tally.poison = 150
    tally.stop()  # the events wait in the durable queue, as under load
    dispatch = event_dispatcher({"AMQP_URI": amqp_uri})
    events = [envelope(n=n) for n in range(200)]
    for event in events + events[:20]:  # the first 20 delivered twice
        dispatch("tally_source", "counted", event)
    tally = start(amqp_uri, Tally)[0]
    try:
        check_tally(tally, amqp_uri)
    finally:
        tally.stop()


def check_tally(tally, amqp_uri):
    wait_for(lambda: tallied(tally) >= 199, timeout=15)
    wait_for(lambda: len(dead_letters_now(amqp_uri, "tally")) == 1, timeout=15)
    eventlet.sleep(0.5)
    assert tallied(tally) == 199  # every event once, but the poison one
    distinct = {id(batch) for batch in Tally.batches}
    # events waiting together: one transaction per batch of up to 50 (not capped by MAX_WORKERS' prefetch)
    assert None not in Tally.batches and len(distinct) < 15
    [letter] = dead_letters(amqp_uri, "tally")
    assert json.loads(letter.body)["n"] == 150 and "cannot be counted" in letter.headers["x-roster-error"]
    with provider(tally).sessions() as session:  # the events the handlers recorded were committed
        assert session.scalar(select(func.count()).select_from(tables.outbox)) == 199


def dead_letters_now(amqp_uri, service):
    with Connection(amqp_uri) as connection:
        count = connection.default_channel.queue_declare(f"dead_letters.{service}", passive=True).message_count
    return [None] * count


class Asker:
    name = "asker"
    note_taker = roster.rpc.BoundedRpcProxy("note_taker", timeout=1.5)
    nobody = roster.rpc.BoundedRpcProxy("nobody_runs_this", timeout=5)

    @rpc
    def ask(self, text):
        return self.note_taker.take(text)

    @rpc
    def ask_nobody(self):
        return self.nobody.anything()


def test_requests_are_confirmed_until_the_broker_routed_one_and_again_after_a_timeout(amqp_uri, own_database,
                                                                                       monkeypatch):
    confirmed = []
    publish = roster.rpc.UnroutedPublisher.publish

    def recording(self, payload, **kwargs):
        if kwargs.get("routing_key", "").startswith(("note_taker.", "nobody_runs_this.")):
            confirmed.append((kwargs["routing_key"], kwargs.get("use_confirms", self.use_confirms)))
        return publish(self, payload, **kwargs)

    monkeypatch.setattr(roster.rpc.UnroutedPublisher, "publish", recording)
    monkeypatch.setattr(roster.rpc, "_ROUTED", set())
    running = start(amqp_uri, NoteTaker, Asker)
    try:
        with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=10) as cluster:
            started = time.monotonic()
            with pytest.raises(roster.errors.ServiceUnavailable, match="not running"):
                cluster.asker.ask_nobody()  # an unknown service is told at once, not at the deadline
            assert time.monotonic() - started < 2
            assert [cluster.asker.ask(f"n{n}")["text"] for n in range(3)] == ["n0", "n1", "n2"]
            running[0].stop()  # the note taker stops answering: the next call times out
            with pytest.raises(roster.errors.ServiceUnavailable, match="did not answer"):
                cluster.asker.ask("lost")
            running[0] = start(amqp_uri, NoteTaker)[0]
            assert cluster.asker.ask("back")["text"] == "back"
    finally:
        for container in running:
            container.stop()
    assert [use for key, use in confirmed if key.startswith("note_taker.")] == [True, False, False, False, True]
    assert [use for key, use in confirmed if key.startswith("nobody_runs_this.")] == [True]


@contextmanager
def scratch_queue(amqp_uri, name):
    """A queue on the default exchange, empty at the start and deleted at the end; yields a function
    returning the "n" of every message it holds by then."""
    from kombu import Queue

    with Connection(amqp_uri) as connection:
        queue = Queue(name, exchange=roster.handlers.DEFAULT_EXCHANGE, routing_key=name,
                      auto_delete=False)(connection.default_channel)
        queue.declare()
        queue.purge()

        def drained():
            numbers = []
            while (message := queue.get(no_ack=True)) is not None:
                numbers.append(json.loads(message.body)["n"])
            return numbers

        try:
            yield drained
        finally:
            queue.delete()


def test_an_unconfirmed_message_on_a_broken_shared_connection_goes_the_pooled_way(amqp_uri, monkeypatch):
    from kombu.exceptions import EncodeError

    from roster import serialization

    from roster.publishing import SharedChannelPublisher, _shared_producer

    publisher = SharedChannelPublisher(amqp_uri, use_confirms=False, serializer="json")
    name = "roster-test-shared-publisher"
    with scratch_queue(amqp_uri, name) as drained:
        publisher.publish({"n": 1}, routing_key=name)
        shared = _shared_producer(amqp_uri, None, None)
        shared._connection.close()  # as when the broker drops it
        publisher.publish({"n": 2}, routing_key=name)
        publisher.publish({"n": 3}, routing_key=name)  # and a new shared connection is made
        connection_before = shared._connection
        monkeypatch.setattr(serialization, "MAX_MESSAGE_BYTES", 100)
        with pytest.raises(EncodeError):  # a message that cannot go is refused; the connection stays
            publisher.publish({"page": "x" * 200}, routing_key=name)
        assert shared._connection is connection_before
        eventlet.sleep(0.3)
        bodies = drained()
    assert bodies == [1, 2, 3]
    assert shared._connection is not None and shared._connection.connected


def test_unconfirmed_messages_published_together_share_a_write_and_survive_its_failure(amqp_uri):
    from roster.publishing import SharedChannelPublisher, _shared_producer

    publisher = SharedChannelPublisher(amqp_uri, use_confirms=False, serializer="json")
    shared = _shared_producer(amqp_uri, None, None)
    name = "roster-test-coalesced"
    with scratch_queue(amqp_uri, name) as drained:
        publisher.publish({"n": 0}, routing_key=name)  # connects
        eventlet.sleep(0.1)
        writes, send = [], shared._send
        shared._send = lambda data: (writes.append(data), send(data))
        pool = eventlet.GreenPool()
        for n in range(1, 6):  # five green threads, as five requests of the gateway
            pool.spawn(publisher.publish, {"n": n}, routing_key=name)
        pool.waitall()
        eventlet.sleep(0.1)
        assert len(writes) == 1  # one socket write for the five

        def reset(data):
            raise ConnectionResetError("connection reset by peer")

        shared._send = reset  # as when the broker went away
        for n in range(6, 9):
            pool.spawn(publisher.publish, {"n": n}, routing_key=name)
        pool.waitall()
        eventlet.sleep(0.5)
        bodies = drained()
    assert sorted(bodies) == list(range(9))  # the three went nameko's way after the failed write
    publisher.publish({"n": 9}, routing_key="roster-test-nowhere")  # and a new shared connection is made
    assert shared._connection is not None and shared._connection.connected


class Successor:
    """Handles `cue` events in place of a retired handler of `noticed` events."""

    name = "successor"
    uow = UnitOfWorkProvider(Base, tables, migrate=False)

    @event_handler("relay_source", "cue", takes_over=(Retired("relay_source", "noticed", "on_noticed"),))
    def on_cue(self, payload):
        with self.uow.write() as tx:
            tx.session.add(Note(text=payload["text"]))


def test_a_handler_taking_over_a_retired_one_gets_its_waiting_events_and_its_queue_is_gone(amqp_uri, own_database):
    retired = Retired("relay_source", "noticed", "on_noticed").queue_name("successor")
    exchange = Exchange("relay_source.events", type="topic", durable=True)
    with Connection(amqp_uri) as connection:  # the queue an earlier version left, with events waiting
        Queue(retired, exchange=exchange, routing_key="noticed", durable=True)(connection.default_channel).declare()
    dispatch = event_dispatcher({"AMQP_URI": amqp_uri})
    for text in ("left 1", "left 2", "left 3"):
        dispatch("relay_source", "noticed", envelope(text=text))

    [container] = start(amqp_uri, Successor)
    try:
        dispatch("relay_source", "cue", envelope(text="new"))
        sessions = provider(container).sessions

        def notes():
            with sessions() as session:
                return sorted(session.scalars(select(Note.text)))

        wait_for(lambda: len(notes()) == 4)
        dispatch("relay_source", "noticed", envelope(text="after"))  # no queue takes it any more
        eventlet.sleep(0.5)
        assert notes() == ["left 1", "left 2", "left 3", "new"]
        with Connection(amqp_uri) as connection:
            with pytest.raises(connection.channel_errors):
                connection.channel().queue_declare(retired, passive=True)
        # Retired names queues as nameko does
        [handler] = [entry for entry in container.entrypoints if entry.method_name == "on_cue"]
        assert handler.queue.name == Retired("relay_source", "cue", "on_cue").queue_name("successor")
    finally:
        container.stop()


@pytest.mark.parametrize("publisher_class", [roster.rpc.UnroutedPublisher, roster.rpc.UnconfirmedPublisher])
@pytest.mark.parametrize("use_confirms", [True, False])
def test_rpc_requests_and_replies_are_transient(amqp_uri, publisher_class, use_confirms):
    """Not written to the broker's disk, and not run after a broker restart, long after the caller's 503."""
    with scratch_queue(amqp_uri, "rpc_transient_check") as _drained:
        publisher_class(amqp_uri).publish(json.dumps({"n": 1}), exchange=roster.handlers.DEFAULT_EXCHANGE,
                                          routing_key="rpc_transient_check", use_confirms=use_confirms)
        with Connection(amqp_uri) as connection:
            channel = connection.channel()
            deadline = time.monotonic() + 5
            while (message := channel.basic_get("rpc_transient_check", no_ack=True)) is None:
                assert time.monotonic() < deadline, "the message never arrived"
                time.sleep(0.05)
    assert message.properties["delivery_mode"] == 1
