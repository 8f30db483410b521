"""The contacts service's 0003 migration on the configured database (SQLite, or PostgreSQL with
DATABASE_URL): a database of the previous revision, with the data that revision allowed, is
upgraded without losing a contact (tests/integration/test_migrations.py checks that models and
migrations agree)."""
import pytest
from alembic import command
from sqlalchemy import text

from roster import config, migrations
from roster.database import make_engine
from services.contacts.models import Base

DS = "ds_1"


@pytest.fixture
def engine(own_database):
    engine = make_engine(config.database_url("contacts"), config.database_schema("contacts"))
    yield engine
    engine.dispose()


def upgrade_to(engine, revision: str) -> None:
    with engine.begin() as connection:
        command.upgrade(migrations.alembic_config("contacts", connection), revision)


def insert_contact(connection, id_, customer_uuid, external_id=None, position=None, data_source_uuid=DS):
    connection.execute(text(
        "INSERT INTO contacts (id, uuid, customer_uuid, customer_external_id, data_source_uuid, external_id, "
        "position, custom, created_at, updated_at) VALUES (:id, :uuid, :customer, :customer_external_id, :ds, "
        ":external_id, :position, '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
        {"id": id_, "uuid": f"con_{id_}", "customer": customer_uuid, "customer_external_id": f"ext-{customer_uuid}",
         "ds": data_source_uuid, "external_id": external_id, "position": position})


def test_upgrading_a_0002_database_keeps_every_contact_and_settles_ids_positions_and_customers(engine):
    upgrade_to(engine, "0002")
    with engine.begin() as connection:
        insert_contact(connection, 1, "cus_a", external_id="dup")
        insert_contact(connection, 2, "cus_a", external_id="dup")  # a duplicate of a concurrent create
        insert_contact(connection, 3, "cus_b", external_id="dup")
        insert_contact(connection, 4, "cus_b", external_id="dup", data_source_uuid="ds_2")  # another source
        insert_contact(connection, 5, "cus_b", external_id="")
        insert_contact(connection, 6, "cus_b", external_id=" ")
        insert_contact(connection, 7, "cus_c", position=2)
        insert_contact(connection, 8, "cus_c")
        insert_contact(connection, 9, "cus_gone")
        connection.execute(text("INSERT INTO gone_customers (uuid, merged_into, gone_at) VALUES "
                                "('cus_gone', NULL, CURRENT_TIMESTAMP), ('cus_old', 'cus_a', CURRENT_TIMESTAMP)"))

    migrations.upgrade(engine, "contacts", Base.metadata)

    with engine.connect() as connection:
        contacts = {row.id: row for row in connection.execute(
            text("SELECT id, customer_uuid, data_source_uuid, external_id, position FROM contacts"))}
        known = {row.uuid: tuple(row)[1:] for row in connection.execute(
            text("SELECT uuid, state, merged_into, external_id FROM known_customers"))}
    assert sorted(contacts) == list(range(1, 10))
    assert {id_: row.external_id for id_, row in contacts.items()} == {
        1: "dup", 2: None, 3: None, 4: "dup", 5: None, 6: None, 7: None, 8: None, 9: None}
    assert {id_: row.position for id_, row in contacts.items()} == {
        1: 1, 2: 2, 3: 1, 4: 2, 5: 3, 6: 4, 7: 2, 8: 3, 9: 1}
    assert known == {
        "cus_a": ("active", None, "ext-cus_a"), "cus_b": ("active", None, "ext-cus_b"),
        "cus_c": ("active", None, "ext-cus_c"), "cus_gone": ("deleted", None, None),
        "cus_old": ("merged", "cus_a", None)}
