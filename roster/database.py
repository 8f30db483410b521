"""One database per service: engine set-up and the nameko dependency that hands out sessions.

SQLite (the default) gets WAL and a busy timeout so several processes of one service
can share a file. On PostgreSQL every service keeps its tables in its own schema, so
one `DATABASE_URL` can serve all services without any of them seeing another's tables.
"""
import os
import time
from pathlib import Path

from nameko.extensions import DependencyProvider
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, sessionmaker

from roster import config

# psycopg's C extension waits for the server in C, which would block every green thread of
# the process; it detects gevent's patching but not eventlet's. Its pure-Python select()
# wait goes through the socket eventlet patched, so the C speed stays and I/O stays green.
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")


CREATE_ATTEMPTS = 5


def make_engine(url: str, schema: str | None = None) -> Engine:
    """Return an engine for `url`; on PostgreSQL its tables live in `schema`."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    if parsed.get_backend_name() == "postgresql":
        return _postgres_engine(parsed, schema)
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_engine(url) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def _postgres_engine(url, schema: str | None) -> Engine:
    url = url.set(drivername="postgresql+psycopg")
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    if schema:
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        engine = engine.execution_options(schema_translate_map={None: schema})
    return engine


def prepare(base: type[DeclarativeBase], service_name: str) -> Engine:
    """Create the service's tables if they are missing and return its engine."""
    for attempt in range(CREATE_ATTEMPTS):
        engine = None
        try:
            engine = make_engine(config.database_url(service_name), config.database_schema(service_name))
            base.metadata.create_all(engine)
            return engine
        except (OperationalError, ProgrammingError, IntegrityError):
            if engine is not None:
                engine.dispose()
            # Several processes of one service (sync workers) may create the same tables at
            # once; the loser sees "already exists" and finds them there on the next look.
            if attempt == CREATE_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


class Database(DependencyProvider):
    """Injects a session factory bound to this service's own database.

    Use `with self.db.begin() as session:` for one transaction.
    """

    def __init__(self, base: type[DeclarativeBase]):
        self.base = base
        self.engine = None
        self.sessions = None

    def setup(self):
        self.engine = prepare(self.base, self.container.service_name)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def stop(self):
        if self.engine is not None:
            self.engine.dispose()

    def get_dependency(self, worker_ctx):
        return self.sessions
