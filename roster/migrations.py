"""Schema migrations: Alembic per service, each with its own version table.

Every service keeps its revisions in `services/<name>/migrations/versions/`; its `env.py` is
two lines that call `run_env` with the service's metadata. A service upgrades its database
to head before it starts (`upgrade`), holding a lock so that several processes of one
service starting at once migrate it exactly once: an advisory lock on PostgreSQL, the
write lock of BEGIN IMMEDIATE on SQLite.

A database created before migrations existed (tables made by `create_all`, no version
table) is stamped with the first revision, which describes that schema, and then upgraded.

Developers: `python -m roster.migrations revision SERVICE "what changed"` writes a new
revision by comparing the models with a scratch database at head; `python -m
roster.migrations check SERVICE` exits 1 when models and migrations disagree.
"""
import sys
import tempfile
import zlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from roster import config as settings
from roster.database import WRITE, make_engine

SERVICES_ROOT = settings.PROJECT_ROOT / "services"
BASELINE = "0001"


def version_table(service_name: str) -> str:
    return f"alembic_version_{service_name}"


def alembic_config(service_name: str, connection: Connection | None = None) -> Config:
    """Return the Alembic configuration of one service, bound to `connection` when given."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_ROOT / service_name / "migrations"))
    cfg.attributes["service_name"] = service_name
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def run_env(metadata) -> None:
    """The body of every service's migrations/env.py: migrate the connection handed over."""
    from alembic import context

    cfg = context.config
    service_name = cfg.attributes["service_name"]
    connection = cfg.attributes.get("connection")
    if connection is None:  # the `alembic` command line: use the service's configured database
        engine = make_engine(settings.database_url(service_name), settings.database_schema(service_name))
        with engine.connect() as connection:
            _configure_and_run(context, connection, metadata, service_name)
        return
    _configure_and_run(context, connection, metadata, service_name)


def _configure_and_run(context, connection, metadata, service_name) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=version_table(service_name),
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
        include_object=lambda obj, name, kind, reflected, compare_to: not (
            kind == "table" and name.startswith("alembic_version")),
    )
    with context.begin_transaction():
        context.run_migrations()


def upgrade(engine: Engine, service_name: str, metadata) -> None:
    """Bring the service's database to the newest revision (once, whoever else is starting)."""
    with engine.connect() as connection:
        connection = connection.execution_options(**WRITE)
        with connection.begin():
            _lock(connection, service_name)
            if _created_before_migrations(connection, service_name, metadata):
                command.stamp(alembic_config(service_name, connection), BASELINE)
            command.upgrade(alembic_config(service_name, connection), "head")


def _lock(connection: Connection, service_name: str) -> None:
    if connection.dialect.name == "postgresql":
        key = zlib.crc32(f"roster-migrate-{service_name}".encode())
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    # SQLite: the transaction began with BEGIN IMMEDIATE and holds the write lock already.


def _created_before_migrations(connection: Connection, service_name: str, metadata) -> bool:
    tables = set(inspect(connection).get_table_names())
    return version_table(service_name) not in tables and bool(tables & set(metadata.tables))


def current_revision(engine: Engine, service_name: str) -> str | None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": version_table(service_name)})
        return context.get_current_revision()


def differences(engine: Engine, service_name: str, metadata) -> list:
    """Return what autogenerate would change between the models and a database at head."""
    from alembic.autogenerate import compare_metadata

    upgrade(engine, service_name, metadata)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "compare_type": True,
            "version_table": version_table(service_name),
            "include_object": lambda obj, name, kind, reflected, compare_to: not (
                kind == "table" and name.startswith("alembic_version")),
        })
        return compare_metadata(context, metadata)


def _service_metadata(service_name: str):
    module = __import__(f"services.{service_name}.models", fromlist=["Base"])
    return module.Base.metadata


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("revision", "check", "upgrade"):
        print('usage: python -m roster.migrations {revision SERVICE "message" | check SERVICE | upgrade SERVICE}',
              file=sys.stderr)
        return 2
    verb, service_name = argv[0], argv[1]
    metadata = _service_metadata(service_name)
    if verb == "upgrade":
        engine = make_engine(settings.database_url(service_name), settings.database_schema(service_name))
        upgrade(engine, service_name, metadata)
        print(f"{service_name}: at {current_revision(engine, service_name)}")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(f"sqlite:///{Path(scratch) / 'scratch.db'}")
        if verb == "check":
            found = differences(engine, service_name, metadata)
            for difference in found:
                print(difference)
            return 1 if found else 0
        upgrade(engine, service_name, metadata)
        with engine.connect() as connection:
            command.revision(alembic_config(service_name, connection), message=argv[2] if len(argv) > 2 else None,
                             autogenerate=True, rev_id=_next_revision_id(service_name))
    return 0


def _next_revision_id(service_name: str) -> str:
    versions = SERVICES_ROOT / service_name / "migrations" / "versions"
    numbers = [int(path.name[:4]) for path in versions.glob("[0-9][0-9][0-9][0-9]_*.py")]
    return f"{max(numbers, default=0) + 1:04d}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def upgrade_bookkeeping_to_claims() -> None:
    """Migration step every service shares: outbox claims and quarantine, idempotent answers.

    Called from each service's revision that introduced them (outbox rows already written
    keep their JSON text and are published as they are).
    """
    import sqlalchemy as sa
    from alembic import op

    from roster.database import UtcDateTime

    op.create_table(
        "idempotent_results",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_idempotent_results_created_at", "idempotent_results", ["created_at"])
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("created_at", UtcDateTime(), nullable=False,
                                   server_default=sa.text("CURRENT_TIMESTAMP")))
        batch.add_column(sa.Column("claimed_until", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("failed_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch.alter_column("payload", existing_type=sa.JSON(), type_=sa.Text(), existing_nullable=False,
                           postgresql_using="payload::text")
    op.create_index("ix_processed_events_processed_at", "processed_events", ["processed_at"])


def add_pending_outbox_index() -> None:
    """Migration step every service shares: the partial index of the outbox rows waiting to be
    published (`roster.uow.OutboxRowMixin`), which the relay reads in id order."""
    import sqlalchemy as sa
    from alembic import op

    from roster.uow import OUTBOX_PENDING

    op.create_index("ix_outbox_pending", "outbox", ["id"], postgresql_where=sa.text(OUTBOX_PENDING),
                    sqlite_where=sa.text(OUTBOX_PENDING))
