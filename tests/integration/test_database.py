"""The database layer under eventlet: a slow query must not stop the other green threads."""
import os
import time

import eventlet
import pytest
from sqlalchemy import text

from roster.database import make_engine
from tools.isolation import is_postgres

DATABASE_URL = os.environ.get("DATABASE_URL")


@pytest.mark.skipif(not is_postgres(DATABASE_URL), reason="needs DATABASE_URL pointing at PostgreSQL")
def test_a_slow_postgres_query_lets_other_green_threads_run():
    engine = make_engine(DATABASE_URL)
    ticks = []

    def ticker():
        started = time.monotonic()
        while time.monotonic() - started < 0.6:
            eventlet.sleep(0.05)
            ticks.append(time.monotonic())

    thread = eventlet.spawn(ticker)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_sleep(0.5)"))
    thread.wait()
    engine.dispose()

    assert len(ticks) >= 8  # a blocking driver would let the ticker run only after the query


@pytest.mark.skipif(not is_postgres(DATABASE_URL), reason="needs DATABASE_URL pointing at PostgreSQL")
def test_postgres_waits_in_eventlets_hub_for_reads_and_for_writes_larger_than_the_socket_takes():
    from psycopg import waiting

    engine = make_engine(DATABASE_URL)
    assert waiting.wait.__name__ == "_green_wait"  # under eventlet (tests/conftest.py patches)
    big = "x" * 20_000_000  # far more than a socket buffer: libpq asks to wait until it can write

    def round_trip(n):
        with engine.connect() as connection:
            return connection.execute(text("SELECT length(:v) + :n"), {"v": big, "n": n}).scalar()

    pool = eventlet.GreenPool(4)
    assert sorted(pool.imap(round_trip, range(4))) == [len(big) + n for n in range(4)]
    raw = engine.raw_connection()
    try:  # a wait with a deadline (psycopg's wait_select) still ends at its deadline
        started = time.monotonic()
        assert list(raw.driver_connection.notifies(timeout=0.2)) == []
        assert 0.15 < time.monotonic() - started < 2
    finally:
        raw.close()
        engine.dispose()


@pytest.fixture()
def pg_uow():
    from sqlalchemy.orm import sessionmaker

    from roster.uow import UnitOfWork
    from tests.unit.test_roster_mechanisms import RULES, Base, tables
    from tools.isolation import drop_schemas, schema_prefix

    prefix = schema_prefix()
    engine = make_engine(DATABASE_URL, f"{prefix}uow")
    Base.metadata.create_all(engine)
    yield UnitOfWork(sessionmaker(engine, expire_on_commit=False), tables, unique_rules=RULES)
    engine.dispose()
    drop_schemas(DATABASE_URL, prefix)


@pytest.mark.skipif(not is_postgres(DATABASE_URL), reason="needs DATABASE_URL pointing at PostgreSQL")
def test_a_unique_violation_on_postgres_is_a_422_naming_the_field(pg_uow):
    from roster.errors import ValidationFailed
    from tests.unit.test_roster_mechanisms import add_thing

    add_thing(pg_uow)
    with pytest.raises(ValidationFailed) as failure:
        add_thing(pg_uow)
    assert failure.value.param == "external_id"


@pytest.mark.skipif(not is_postgres(DATABASE_URL), reason="needs DATABASE_URL pointing at PostgreSQL")
def test_a_read_on_postgres_runs_outside_a_transaction_block_and_keeps_prepared_statements(pg_uow):
    from tests.unit.test_roster_mechanisms import add_thing, count

    with pg_uow.read() as session:  # no BEGIN: each statement is its own transaction, with its own now()
        first = session.scalar(text("SELECT now()"))
        time.sleep(0.02)
        assert session.scalar(text("SELECT now()")) > first
    add_thing(pg_uow)
    # psycopg prepares a statement run 5 times on a connection, and forgets what it prepared at
    # every ROLLBACK: reads that rolled back left every statement unprepared
    assert [count(pg_uow) for _ in range(6)] == [1] * 6
    with pg_uow.read() as session:
        prepared = session.scalars(text("SELECT statement FROM pg_prepared_statements")).all()
    assert any("count(*)" in statement for statement in prepared), prepared


@pytest.mark.skipif(not is_postgres(DATABASE_URL), reason="needs DATABASE_URL pointing at PostgreSQL")
def test_concurrent_commands_with_one_idempotency_key_store_once_and_answer_alike(pg_uow):
    from roster.testing import recorded, with_idempotency_key
    from roster.uow import Replay
    from tests.unit.test_roster_mechanisms import add_thing, count

    def attempt(n):
        try:
            return add_thing(with_idempotency_key(pg_uow, "same-key", "request"), "e1")
        except Replay as replay:
            return replay.result

    pool = eventlet.GreenPool()
    answers = list(pool.imap(attempt, range(8)))
    assert answers == [{"external_id": "e1"}] * 8
    assert count(pg_uow) == 1 and len(recorded(pg_uow)) == 1


@pytest.mark.skipif(not is_postgres(DATABASE_URL), reason="needs DATABASE_URL pointing at PostgreSQL")
def test_many_rows_without_returning_go_to_postgres_as_one_multi_row_insert():
    from sqlalchemy import Column, Integer, MetaData, String, Table, event, func, insert, select

    from tools.isolation import drop_schemas, schema_prefix

    prefix = schema_prefix()
    engine = make_engine(DATABASE_URL, schema=f"{prefix}_rows")
    rows = Table("rows", MetaData(), Column("id", Integer, primary_key=True), Column("value", String(20)))
    rows.create(engine)
    sent = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, statement, params, context, executemany: sent.append((statement, executemany)))
    try:
        with engine.begin() as connection:
            connection.execute(insert(rows), [{"value": f"v{n}"} for n in range(20)])
            assert connection.scalar(select(func.count()).select_from(rows)) == 20
        [(statement, _), _count] = sent
        # psycopg's executemany would run 20 INSERTs on the server, one per row
        assert statement.count("(%(value__") == 20  # one statement, twenty rows
    finally:
        engine.dispose()
        drop_schemas(DATABASE_URL, prefix)


def relays_in_id_order_once_and_again_after_a_failed_publish(uow):
    import orjson

    from roster import metrics
    from roster.events import OutboxRelay
    from tests.unit.test_roster_mechanisms import add_thing

    for name in ("a", "b", "c"):
        add_thing(uow, name)

    def broker_away(batch):
        raise ConnectionError("broker away")

    with pytest.raises(ConnectionError):
        OutboxRelay(uow.sessions, uow.tables.outbox, broker_away, service="things").publish_pending()
    batches = metrics.OUTBOX_BATCHES.labels("things")
    before = batches._value.get()  # read after the failed publish: the successful one counts from here
    sent = []
    relay = OutboxRelay(uow.sessions, uow.tables.outbox, lambda batch: sent.extend(batch) or [], service="things")
    assert relay.publish_pending() == 3  # the failed publish left them unpublished
    assert batches._value.get() == before + 1  # the three in one batch
    assert [orjson.loads(event.payload)["external_id"] for event in sent] == ["a", "b", "c"]
    assert relay.publish_pending() == 0 and relay.backlog() == 0


def test_the_outbox_relay_on_sqlite_publishes_in_order_and_a_failed_publish_leaves_the_rows(tmp_path):
    from roster.testing import unit_of_work
    from tests.unit.test_roster_mechanisms import RULES, Base, tables

    relays_in_id_order_once_and_again_after_a_failed_publish(unit_of_work(Base, tables, tmp_path, unique_rules=RULES))


@pytest.mark.skipif(not is_postgres(DATABASE_URL), reason="needs DATABASE_URL pointing at PostgreSQL")
def test_the_outbox_relay_on_postgres_publishes_in_order_and_a_failed_publish_leaves_the_rows(pg_uow):
    relays_in_id_order_once_and_again_after_a_failed_publish(pg_uow)


def keyed_model():
    """A model with a two-column unique key, new each time (a test's own metadata)."""
    from sqlalchemy import Integer, String, UniqueConstraint
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

    class Base(DeclarativeBase):
        pass

    class Keyed(Base):
        __tablename__ = "keyed"
        __table_args__ = (UniqueConstraint("source", "external_id"), {"postgresql_with": {"autovacuum_enabled": "false"}})
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        source: Mapped[int] = mapped_column(Integer)
        external_id: Mapped[str] = mapped_column(String(100))

    return Keyed


def finds_exactly_the_pairs_asked_for(engine):
    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    from roster.database import matching_pairs

    keyed = keyed_model()
    keyed.metadata.create_all(engine)
    with Session(engine) as session:
        session.execute(insert(keyed), [{"source": s, "external_id": f"e-{n}"} for s in (1, 2) for n in range(10)])
        asked = {(1, "e-3"), (2, "e-4"), (1, "absent"), (3, "e-3")}
        rows = matching_pairs(session, keyed, asked, columns=("source", "external_id"), key=("source", "external_id"))
        assert {tuple(row) for row in rows} & asked == {(1, "e-3"), (2, "e-4")}
        entities = matching_pairs(session, keyed, asked, key=("source", "external_id")).all()
        assert {(row.source, row.external_id) for row in entities} & asked == {(1, "e-3"), (2, "e-4")}
        assert all(isinstance(row, keyed) for row in entities)
        assert matching_pairs(session, keyed, [], key=("source", "external_id")).all() == []
        # values an array literal or SQL would have to escape travel as they are
        odd = ["{", "}", '"', "\\", ",", "NULL", "a b", "ü€😀", "'; DROP TABLE keyed; --", '{"a": 1}', "", " "]
        session.execute(insert(keyed), [{"source": 3, "external_id": value} for value in odd])
        found = matching_pairs(session, keyed, {(3, value) for value in odd} | {(3, "e-1")}, key=("source", "external_id"))
        assert sorted(row.external_id for row in found) == sorted(odd)
        # a value longer than the column is not cut down to its length (and so matches nothing)
        session.execute(insert(keyed), [{"source": 1, "external_id": "y" * 100}])
        longer = matching_pairs(session, keyed, {(1, "y" * 101)}, columns=("id",), key=("source", "external_id"))
        assert longer.all() == []
    return keyed


def test_matching_pairs_on_sqlite_finds_the_pairs_asked_for(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/pairs.db")
    finds_exactly_the_pairs_asked_for(engine)
    engine.dispose()


@pytest.mark.skipif(not is_postgres(DATABASE_URL), reason="needs DATABASE_URL pointing at PostgreSQL")
def test_matching_pairs_on_postgres_probes_the_index_per_pair_though_the_statistics_are_stale():
    from sqlalchemy import event, insert
    from sqlalchemy.orm import Session

    from roster.database import matching_pairs
    from tools.isolation import drop_schemas, schema_prefix

    prefix = schema_prefix()
    engine = make_engine(DATABASE_URL, schema=f"{prefix}_pairs")
    try:
        keyed = finds_exactly_the_pairs_asked_for(engine)
        with Session(engine) as session:
            session.execute(text("TRUNCATE keyed"))
            session.execute(insert(keyed), [{"source": 1, "external_id": "first"}])
            session.execute(text("ANALYZE keyed"))  # statistics of a one-row table, as after a first import
            session.execute(insert(keyed), [{"source": 1, "external_id": f"e-{n}"} for n in range(5000)])
            sent = []
            event.listen(engine, "before_cursor_execute", lambda conn, cursor, statement, parameters, *_:
                         sent.append((statement, parameters)))
            wanted = {(1, "e-10"), (1, "e-20"), (1, "absent")}
            assert len(matching_pairs(session, keyed, wanted, columns=("id",), key=("source", "external_id")).all()) == 2
            [(statement, parameters)] = sent
            cursor = session.connection().connection.driver_connection.cursor()
            plan = "\n".join(row[0] for row in cursor.execute(f"EXPLAIN ANALYZE {statement}", parameters))
        # one index probe per pair: not every row of source 1 read and filtered
        assert "Index Cond" in plan and "external_id" in plan.split("Index Cond")[1].split("\n")[0], plan
        assert "Rows Removed by Filter" not in plan, plan
    finally:
        engine.dispose()
        drop_schemas(DATABASE_URL, prefix)


@pytest.mark.skipif(not is_postgres(DATABASE_URL), reason="needs DATABASE_URL pointing at PostgreSQL")
def test_processes_of_one_service_starting_at_once_all_get_its_schema():
    # CREATE SCHEMA IF NOT EXISTS run at once by two sessions fails in one with a unique
    # violation: a service's processes (billing and its sync workers) start together
    from tools.isolation import drop_schemas, schema_prefix

    prefix = schema_prefix()
    try:
        for attempt in range(5):
            pool = eventlet.GreenPool()
            engines = list(pool.imap(lambda _: make_engine(DATABASE_URL, schema=f"{prefix}_race{attempt}"), range(8)))
            for engine in engines:
                with engine.connect() as connection:
                    assert connection.scalar(text("SELECT current_schema()")) == f"{prefix}_race{attempt}"
                engine.dispose()
    finally:
        drop_schemas(DATABASE_URL, prefix)


@pytest.fixture()
def pg_engine():
    engine = make_engine(DATABASE_URL)
    yield engine
    engine.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(text("SELECT pg_backend_pid()"))


def terminate(pid: int) -> None:
    killer = make_engine(DATABASE_URL)
    with killer.connect() as connection:
        assert connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    killer.dispose()
    time.sleep(0.2)  # the backend is gone once its socket is closed


@pytest.mark.skipif(not is_postgres(DATABASE_URL), reason="needs DATABASE_URL pointing at PostgreSQL")
def test_a_pooled_connection_is_checked_only_after_sitting_idle(pg_engine, monkeypatch):
    import roster.database

    pings = []
    real_ping = pg_engine.dialect.do_ping
    monkeypatch.setattr(pg_engine.dialect, "do_ping", lambda connection: pings.append(1) or real_ping(connection))
    monkeypatch.setattr(roster.database, "PING_AFTER_IDLE_SECONDS", 0.3)
    first = backend_pid(pg_engine)  # a new connection: not checked
    for _ in range(5):  # back to back: one round trip each, no check
        assert backend_pid(pg_engine) == first
    assert pings == []
    time.sleep(0.4)
    assert backend_pid(pg_engine) == first
    assert pings == [1]


@pytest.mark.skipif(not is_postgres(DATABASE_URL), reason="needs DATABASE_URL pointing at PostgreSQL")
def test_a_connection_the_server_dropped_while_idle_is_replaced_without_an_error(pg_engine, monkeypatch):
    import roster.database

    monkeypatch.setattr(roster.database, "PING_AFTER_IDLE_SECONDS", 0.3)
    dropped = backend_pid(pg_engine)
    terminate(dropped)  # as a server restart or an idle timeout would
    time.sleep(0.4)
    assert backend_pid(pg_engine) != dropped  # the check found it dead, the pool connected again


@pytest.mark.skipif(not is_postgres(DATABASE_URL), reason="needs DATABASE_URL pointing at PostgreSQL")
def test_a_connection_dropped_while_busy_fails_once_and_the_next_attempt_reconnects(pg_engine, monkeypatch):
    from sqlalchemy import exc

    from roster.database import database_unavailable

    dropped = backend_pid(pg_engine)
    terminate(dropped)
    with pytest.raises(exc.OperationalError) as failure:  # used again at once: not checked
        backend_pid(pg_engine)
    assert database_unavailable(failure.value)  # a 503, or an event retried
    assert backend_pid(pg_engine) != dropped
