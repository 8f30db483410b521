"""One database per service: engines, the column types every service uses, and row locks.

SQLite (the default) runs in WAL mode with a busy timeout so several processes of one
service can share a file, and a write transaction starts with `BEGIN IMMEDIATE`: it takes
the file's write lock up front, so two processes that read then write cannot deadlock on
the lock upgrade. PostgreSQL keeps each service's tables in a schema of its own (set as the
connection's search_path), so one `DATABASE_URL` serves every service without any of them
seeing another's tables; multi-row writes lock their rows with `SELECT ... FOR UPDATE` in
id order (`lock_rows`).
"""
import os
import sqlite3
import sys
import time
from functools import lru_cache
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import DateTime, String, bindparam, column, create_engine, event, exc, func, select, text, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

# psycopg's C extension waits for the server in C, which would block every green thread of
# the process; it detects gevent's patching but not eventlet's. Its pure-Python select()
# wait goes through the select eventlet patched, so the C speed stays and I/O stays green;
# under eventlet, the wait `_wait_green_when_patched` installs with the first PostgreSQL
# engine does the same for less.
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

from psycopg import waiting  # noqa: E402  (after the choice above: psycopg reads it on import)
from psycopg.waiting import Ready, Wait  # noqa: E402

WRITE = {"roster_write": True}  # execution option: this transaction will write
AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


def read_options(engine: Engine) -> dict:
    """The execution options of a read-only session on `engine`.

    PostgreSQL: autocommit. Under READ COMMITTED every statement takes its own snapshot, so a
    read's BEGIN and ROLLBACK (two round trips) bought nothing; and psycopg forgets the
    statements it prepared at every ROLLBACK (and deallocates them on the server), so a service
    whose reads rolled back never ran a prepared statement. SQLite: a plain BEGIN, whose
    snapshot holds across the read's statements.
    """
    return AUTOCOMMIT if engine.dialect.name == "postgresql" else {}


SQLITE_OUTAGES = ("database is locked", "unable to open database", "disk i/o error", "database or disk is full",
                  "readonly database")


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` means the database cannot serve right now (unreachable, connection lost, pool
    exhausted, busy, a transaction to retry) rather than that a statement is wrong: a 503, worth
    retrying. The pool's checks and reconnects make the next attempt work once it is back."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, exc.OperationalError) and isinstance(error.orig, sqlite3.Error):
        # SQLite says OperationalError for a wrong statement too ("no such table"): a bug, not an outage
        return any(sign in str(error.orig).lower() for sign in SQLITE_OUTAGES)
    return isinstance(error, (exc.OperationalError, exc.InterfaceError, exc.TimeoutError))


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, schema: str | None = None) -> Engine:
    """Return an engine for `url`; on PostgreSQL its tables live in `schema`."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        return _postgres_engine(parsed, schema)
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def _sqlite_engine(url) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        # The driver's own transaction handling is off; "begin" below issues BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        immediate = connection.get_execution_options().get("roster_write")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


LONG_STATEMENTS_CACHED = 64  # psycopg's conversions of long statements kept (each up to ~100 kB)


def _cache_long_statements() -> None:
    """Have psycopg remember how it converted long statements too.

    psycopg turns `%(name)s` placeholders into `$1` by parsing the statement text, and keeps
    the result only for statements under 4 kB and 50 parameters: a multi-row INSERT (a batch
    of outbox rows, an import's line items, a batch's handled marks) was parsed again on every
    execution, about 1 ms each (a sixth of billing's CPU per import). Their texts repeat (one
    per number of rows), so a small cache of its own serves them.
    """
    from psycopg import _queries

    convert = getattr(_queries, "_query2pg_nocache", None)
    if convert is not None and not hasattr(convert, "cache_info"):
        _queries._query2pg_nocache = lru_cache(maxsize=LONG_STATEMENTS_CACHED)(convert)


def _wait_green_when_patched() -> None:
    """Under eventlet, have psycopg wait for the server through eventlet's hub directly.

    psycopg's wait_select calls the select() eventlet patched once per wait: it registers a
    listener per list (the socket is in two), arms and cancels a timer for its 0.1 s interval,
    and builds the result lists. A PostgreSQL round trip is mostly that wait, and a write is
    several round trips; `trampoline` registers one listener and no timer: about a sixth less
    CPU per round trip in the process. A wait with a deadline (rare: cancelling, notifies)
    goes through wait_select as before.
    """
    patcher = sys.modules.get("eventlet.patcher")  # not imported: nothing patched (and no import here)
    if patcher is not None and patcher.is_monkey_patched("select"):
        waiting.wait = _green_wait_function()


def _green_wait_function():
    """psycopg's wait function under eventlet (see `_wait_green_when_patched`)."""
    from eventlet.green import select as green_select
    from eventlet.hubs import trampoline

    def _green_wait(gen, fileno: int, interval: float = 0.0, timeout: float | None = None):
        """Drive `gen`, a libpq exchange, waiting in eventlet's hub for the socket to be readable
        or writable as it asks."""
        if timeout is not None:  # through the select() eventlet patched: green too
            return waiting.wait_select(gen, fileno, interval=interval, timeout=timeout)
        try:
            wanted = next(gen)
            while True:
                if wanted == Wait.R:
                    trampoline(fileno, read=True)
                    wanted = gen.send(Ready.R)
                elif wanted == Wait.W:
                    trampoline(fileno, write=True)
                    wanted = gen.send(Ready.W)
                else:  # either (sending more than the socket takes): eventlet's select says which
                    readable, writable, _ = green_select.select((fileno,), (fileno,), (), None)
                    wanted = gen.send((Ready.R if readable else 0) | (Ready.W if writable else 0))
        except StopIteration as done:
            return done.value

    return _green_wait


def _postgres_engine(url, schema: str | None) -> Engine:
    url = url.set(drivername="postgresql+psycopg")
    _cache_long_statements()
    _wait_green_when_patched()
    connect_args = {}
    if schema:
        _quote_check(schema)
        once = create_engine(url, poolclass=NullPool)
        with once.begin() as connection:
            # processes of one service start together, and two CREATE SCHEMA IF NOT EXISTS at
            # once fail in one of them with a unique violation: one at a time
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('roster: create schema'))"))
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        once.dispose()
        connect_args["options"] = f"-csearch_path={schema}"
    engine = create_engine(url, pool_size=10, max_overflow=20, connect_args=connect_args)
    _ping_after_idle(engine)
    # An INSERT of many rows without RETURNING (a transaction's outbox rows, an import's line
    # items) goes as multi-row VALUES statements, as with RETURNING: SQLAlchemy's default for
    # psycopg is executemany, which the server runs as one INSERT per row.
    engine.dialect.use_insertmanyvalues_wo_returning = True
    return engine


PING_AFTER_IDLE_SECONDS = 2.0  # a pooled connection unused this long is checked before use


def _ping_after_idle(engine: Engine) -> None:
    """Check a pooled connection before use only when it sat idle in the pool for a while.

    pool_pre_ping would check it at every checkout: one more round trip per transaction, a
    tenth of what a write costs here. A connection the server dropped (a restart, a cut
    network, an idle timeout) was idle when it happened, so that one is checked and replaced
    quietly; one dropped within the last seconds, while in use, fails its next statement,
    which invalidates the whole pool (SQLAlchemy's disconnect handling) for the next attempt.
    """
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record):
        record.info["roster_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy):
        idle_since = record.info.get("roster_idle_since")  # none: a new connection
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            if not engine.dialect.is_disconnect(error, dbapi_connection, None):
                raise
            # the pool replaces this connection (and the others checked in before now) and retries
            raise exc.InvalidatePoolError() from error


def _quote_check(schema: str) -> None:
    if not schema.replace("_", "").isalnum():
        raise ValueError(f"schema name {schema!r} must be letters, digits and '_'")


class UtcDateTime(TypeDecorator):
    """A timestamp stored in UTC and read back as an aware UTC datetime on every database.

    SQLite keeps no zone: a value with an offset would be stored as its wall-clock time and
    read back as if it were UTC, hours off. Normalising on the way in makes both agree.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def lock_rows(session: Session, model, ids) -> dict:
    """Lock the rows of `model` with these ids, in id order; return {id: row} of those that exist.

    In id order so two transactions locking overlapping sets queue behind each other instead
    of deadlocking. On SQLite the write transaction's BEGIN IMMEDIATE already holds the
    file's lock, and FOR UPDATE is left out.
    """
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = session.scalars(_locking_select(model), {"ids": wanted})
    return {row.id: row for row in rows}


@lru_cache(maxsize=None)
def _locking_select(model):
    """The statement lock_rows runs for `model`, built once (building it costs more than running it)."""
    return (select(model).where(model.id.in_(bindparam("ids", expanding=True))).order_by(model.id)
            .with_for_update().execution_options(populate_existing=True))


def matching_pairs(session: Session, model, pairs, columns: tuple[str, ...] = (),
                   key: tuple[str, str] = ("data_source_id", "external_id")):
    """Return the rows of `model` whose `key` columns, a unique key such as (data source, external
    id), hold one of `pairs`: entities, or rows of `columns` when named. On SQLite it may also
    return other combinations of the values asked for: callers keep the pairs they asked for.

    PostgreSQL runs the lookup as a LATERAL subquery once per pair (unnest of two arrays): with
    both columns equal, one probe of their index is the cheapest plan whatever the statistics
    say. With `first IN (...) AND second IN (...)`, or a join with a VALUES list, it planned, for
    a table grown since its last ANALYZE (a first import, before autovacuum comes by), a scan of
    every row holding the `first` value: each import cost more than the one before.
    """
    pairs = list(pairs)
    statement = _pairs_statement(model, columns, key, session.get_bind().dialect.name)
    parameters = {"pair_firsts": [a for a, _ in pairs], "pair_seconds": [b for _, b in pairs]}
    return session.execute(statement, parameters) if columns else session.scalars(statement, parameters)


@lru_cache(maxsize=None)
def _pairs_statement(model, columns: tuple[str, ...], key: tuple[str, str], dialect: str):
    """The statement of matching_pairs, built once: the pairs are its parameters, so it is
    compiled once too (building and compiling it cost more than running it)."""
    first, second = (getattr(model, name) for name in key)
    statement = select(*(getattr(model, name) for name in columns)) if columns else select(model)
    if dialect != "postgresql":
        return statement.where(first.in_(bindparam("pair_firsts", expanding=True)),
                               second.in_(bindparam("pair_seconds", expanding=True)))
    wanted = func.unnest(bindparam("pair_firsts", type_=ARRAY(_unbounded(first.type))),
                         bindparam("pair_seconds", type_=ARRAY(_unbounded(second.type)))) \
        .table_valued(column("first", first.type), column("second", second.type)) \
        .render_derived(name="wanted_pairs")
    # LIMIT keeps the planner from flattening the subquery into a join (the pair is a unique key)
    matched = statement.where(first == wanted.c.first, second == wanted.c.second).limit(1).lateral("matched")
    found = select(matched).select_from(wanted).join(matched, true())
    return found if columns else select(model).from_statement(found)


def _unbounded(column_type):
    # a cast to VARCHAR(n)[] would cut a longer value asked for down to n characters, and it
    # could then match a stored value it is not
    return String() if isinstance(column_type, String) else column_type


def insert_ignore(session: Session, table, rows: list[dict], conflict_columns: list[str]) -> int:
    """Insert `rows`, skipping any that would break the unique key `conflict_columns`; return how many went in.

    Concurrent inserts of the same key then both succeed (one inserts, one skips) instead of
    one failing with a unique violation. Every row must name the same columns.
    """
    # Counted from RETURNING: psycopg's rowcount for this statement is -1.
    return len(inserted_keys(session, table, rows, conflict_columns))


def inserted_keys(session: Session, table, rows: list[dict], conflict_columns: list[str]) -> list:
    """Insert `rows` as `insert_ignore` does; return the first conflict column's value of each row
    that went in (one statement for all of them)."""
    if not rows:
        return []
    statement = _insert_ignoring(table, tuple(conflict_columns), session.get_bind().dialect.name)
    return list(session.scalars(statement, rows))


def dialect_insert(dialect: str):
    """The INSERT construct of `dialect` ("postgresql" or "sqlite"), which has ON CONFLICT."""
    return pg_insert if dialect == "postgresql" else sqlite_insert


@lru_cache(maxsize=None)
def _insert_ignoring(table, conflict_columns: tuple[str, ...], dialect: str):
    return (dialect_insert(dialect)(table).on_conflict_do_nothing(index_elements=list(conflict_columns))
            .returning(table.c[conflict_columns[0]]))
