"""Every service's migrations: they build exactly the tables its models describe (on SQLite and,
with DATABASE_URL on PostgreSQL, there too), and a database made by an older revision, or by
`create_all` before migrations existed, upgrades to head with its rows intact."""
import os
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text

from roster import migrations
from roster.database import WRITE, make_engine
from tools.isolation import drop_schemas, is_postgres, schema_prefix

SERVICES = sorted(path.parent.parent.name for path in Path(migrations.SERVICES_ROOT).glob("*/migrations/versions")
                  if any(path.glob("[0-9]*.py")))
DATABASE_URL = os.environ.get("DATABASE_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_for(request, tmp_path):
    """engine_for(service) -> an empty database for that service on the parametrised backend."""
    if request.param == "postgresql" and not is_postgres(DATABASE_URL):
        pytest.skip("needs DATABASE_URL pointing at PostgreSQL")
    prefix = schema_prefix()
    engines = []

    def make(service):
        if request.param == "sqlite":
            engine = make_engine(f"sqlite:///{tmp_path / service}.db")
        else:
            engine = make_engine(DATABASE_URL, f"{prefix}{service}")
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()
    if request.param == "postgresql":
        drop_schemas(DATABASE_URL, prefix)


def metadata_of(service):
    return migrations._service_metadata(service)


def upgrade_to(engine, service, revision):
    with engine.connect() as connection:
        connection = connection.execution_options(**WRITE)
        with connection.begin():
            command.upgrade(migrations.alembic_config(service, connection), revision)


def test_every_service_with_models_has_migrations():
    with_models = {path.parent.name for path in Path(migrations.SERVICES_ROOT).glob("*/models.py")}
    assert with_models <= set(SERVICES), "a service with models has no migration"


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_build_exactly_what_the_models_describe(engine_for, service):
    engine = engine_for(service)
    assert migrations.differences(engine, service, metadata_of(service)) == []
    assert migrations.current_revision(engine, service) is not None


@pytest.mark.parametrize("service", SERVICES)
def test_upgrading_twice_and_from_two_processes_is_harmless(engine_for, service):
    engine = engine_for(service)
    migrations.upgrade(engine, service, metadata_of(service))
    head = migrations.current_revision(engine, service)
    migrations.upgrade(engine, service, metadata_of(service))
    assert migrations.current_revision(engine, service) == head


BASELINE_ROWS = {
    "customers": [
        "INSERT INTO customers (id, uuid, name, email, email_lower, company, status, mrr, currency, "
        "billing_system_type, created_at, updated_at) VALUES (1, 'cus_old', 'Old Co', 'a@old.co', 'a@old.co', '', "
        "'New Lead', 0, 'USD', 'Import API', '2024-01-01 00:00:00', '2024-01-01 00:00:00')",
        "INSERT INTO customer_external_ids (id, customer_id, data_source_uuid, external_id) VALUES (1, 1, 'ds_1', 'e1')",
        "INSERT INTO customer_tags (id, customer_id, tag) VALUES (1, 1, 'vip')",
        "INSERT INTO outbox (id, event_type, payload, published_at) VALUES "
        "(1, 'customer_created', '{\"event_id\": \"x\", \"customer\": {\"uuid\": \"cus_old\"}}', NULL)",
    ],
    "contacts": [
        "INSERT INTO contacts (id, uuid, customer_uuid, data_source_uuid, external_id, first_name, email, "
        "email_lower, custom, created_at, updated_at) VALUES (1, 'con_old', 'cus_old', 'ds_1', 'c1', 'Ann', "
        "'ann@old.co', 'ann@old.co', '{\"k\": 1}', '2024-01-01 00:00:00', '2024-01-01 00:00:00')",
        "INSERT INTO outbox (id, event_type, payload, published_at) VALUES "
        "(1, 'contact_created', '{\"event_id\": \"y\"}', NULL)",
    ],
    "billing_sync": [
        "INSERT INTO data_sources (id, uuid, name, system, status, created_at) VALUES "
        "(1, 'ds_1', 'Old source', 'Import API', 'idle', '2024-01-01 00:00:00')",
    ],
}
KEPT = {
    "customers": ("SELECT uuid, name, search_text FROM customers", [("cus_old", "Old Co", "old co a@old.co")]),
    "contacts": ("SELECT uuid, first_name, email FROM contacts", [("con_old", "Ann", "ann@old.co")]),
    "billing_sync": ("SELECT uuid, name FROM data_sources", [("ds_1", "Old source")]),
}


@pytest.mark.parametrize("made_by", ["the first revision", "create_all before migrations existed"])
@pytest.mark.parametrize("service", sorted(BASELINE_ROWS))
def test_a_database_from_the_first_revision_upgrades_with_its_rows(engine_for, service, made_by):
    engine = engine_for(service)
    upgrade_to(engine, service, migrations.BASELINE)
    with engine.begin() as connection:
        for statement in BASELINE_ROWS[service]:
            connection.execute(text(statement))
        if made_by != "the first revision":  # as main left it: tables, no version table
            connection.execute(text(f"DROP TABLE {migrations.version_table(service)}"))

    migrations.upgrade(engine, service, metadata_of(service))

    query, expected = KEPT[service]
    with engine.connect() as connection:
        assert [tuple(row) for row in connection.execute(text(query))] == expected
        if "outbox" in inspect(connection).get_table_names():
            payloads = connection.execute(text("SELECT payload FROM outbox WHERE published_at IS NULL")).scalars()
            assert all(payload.startswith("{") for payload in payloads)  # still publishable as they are
    assert migrations.differences(engine, service, metadata_of(service)) == []


def test_billings_metric_days_become_part_0_of_their_day_with_their_figures(engine_for):
    engine = engine_for("billing_sync")
    upgrade_to(engine, "billing_sync", "0006")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO metric_days (day, new_business, expansion, contraction, churn, "
                                "reactivation, customers) VALUES ('2024-01-01', 100, 20, -5, 0, 0, 1), "
                                "('2024-02-01', 0, 0, 0, -115, 0, -1)"))

    migrations.upgrade(engine, "billing_sync", metadata_of("billing_sync"))

    with engine.connect() as connection:
        rows = connection.execute(text("SELECT day, part, new_business, expansion, contraction, churn, reactivation,"
                                       " customers FROM metric_day_parts ORDER BY day")).all()
        assert [(str(day), *rest) for day, *rest in rows] == [("2024-01-01", 0, 100, 20, -5, 0, 0, 1),
                                                              ("2024-02-01", 0, 0, 0, 0, -115, 0, -1)]
        assert "metric_days" not in inspect(connection).get_table_names()
