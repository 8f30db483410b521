"""Activities handlers racing each other on PostgreSQL: a fact's handler is held inside its
transaction, right after it took its lock, while the handler that undoes the fact runs. The
locks must make the second wait, so the undoing wins.

PostgreSQL only: on SQLite every write transaction takes the database's lock up front
(BEGIN IMMEDIATE), so two never overlap, and a second one waiting in SQLite's C busy loop would
block the green thread holding the lock.
"""
import os
import secrets

import eventlet
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from roster import migrations
from roster.database import make_engine
from roster.errors import NotFound, ValidationFailed
from roster.events import envelope
from roster.testing import as_handler
from roster.uow import UnitOfWork
from services.activities import commands, store
from services.activities.models import Base, FeedEntry, MrrActivity, Note, bookkeeping
from tools.isolation import drop_schemas, is_postgres

HOLD_SECONDS = 0.5


@pytest.fixture
def uow():
    url = os.environ.get("DATABASE_URL", "")
    if not is_postgres(url):
        pytest.skip("write transactions never overlap on SQLite (BEGIN IMMEDIATE); run with a PostgreSQL DATABASE_URL")
    prefix = f"t{secrets.token_hex(4)}_"
    engine = make_engine(url, schema=f"{prefix}activities")
    migrations.upgrade(engine, "activities", Base.metadata)
    yield UnitOfWork(sessionmaker(engine, expire_on_commit=False), bookkeeping)
    engine.dispose()
    drop_schemas(url, prefix)


@pytest.fixture
def hold(monkeypatch):
    """hold(name): the next call of store.<name> made by the current green thread pauses after returning."""

    def arm(name: str):
        original = getattr(store, name)
        me = eventlet.getcurrent()

        def held(*args, **kwargs):
            result = original(*args, **kwargs)
            if eventlet.getcurrent() is me:
                eventlet.sleep(HOLD_SECONDS)
            return result

        monkeypatch.setattr(store, name, held)

    return arm


def movement(customer_uuid, movement_uuid):
    return envelope(customer_uuid=customer_uuid, movement={
        "uuid": movement_uuid, "type": "new_biz", "date": "2024-03-01", "mrr_movement": 100, "mrr": 100,
        "arr": 1200, "currency": "USD", "description": "", "subscription_external_id": "",
        "plan_external_id": "", "data_source_uuid": "", "causes": []})


def run(uow, handler, payload):
    getattr(commands, handler)(as_handler(uow, handler, payload), payload)


def race(first, second):
    """Start `first`, let it reach its hold, then run `second`; wait for both."""
    held = eventlet.spawn(first)
    eventlet.sleep(HOLD_SECONDS / 3)
    other = eventlet.spawn(second)
    held.wait()
    other.wait()


def count(uow, model) -> int:
    with uow.read() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_a_retraction_during_the_recording_of_its_movement_wins(uow, hold):
    def record():
        hold("movement_retracted")
        run(uow, "on_mrr_movement_recorded", movement("cus_a", "mov_1"))

    race(record, lambda: run(uow, "on_mrr_movement_retracted", envelope(customer_uuid="cus_a",
                                                                         movement_uuid="mov_1")))

    assert count(uow, MrrActivity) == 0 and count(uow, FeedEntry) == 0


def test_a_deletion_during_the_recording_of_a_fact_about_the_customer_wins(uow, hold):
    def record():
        hold("survivor")
        run(uow, "on_mrr_movement_recorded", movement("cus_b", "mov_2"))

    race(record, lambda: run(uow, "on_customer_deleted", envelope(uuid="cus_b")))

    assert count(uow, MrrActivity) == 0 and count(uow, FeedEntry) == 0


def test_a_merge_during_the_recording_of_a_fact_about_the_merged_customer_moves_it(uow, hold):
    def record():
        hold("survivor")
        run(uow, "on_mrr_movement_recorded", movement("cus_from", "mov_3"))

    race(record, lambda: run(uow, "on_customer_merged", envelope(from_uuid="cus_from", into_uuid="cus_into")))

    assert commands.feed(uow, "cus_from")["entries"] == []
    assert sorted(e["kind"] for e in commands.feed(uow, "cus_into")["entries"]) == ["customer_merged", "new_biz"]


class Contacts:
    def get_contact(self, uuid):
        return {"uuid": uuid, "customer_uuid": "cus_c"}


def call_on(contact_uuid):
    return {"associated_object_identifier": {"associated_object": "contact", "method": "uuid", "value": contact_uuid},
            "type": "call", "text": "Pricing"}


def test_a_contact_deleted_while_a_call_is_logged_on_it_leaves_the_call_with_its_customer(uow, hold):
    def log_call():
        hold("survivor")
        commands.create_note(uow, call_on("con_x"), customers=None, contacts=Contacts())

    race(log_call, lambda: run(uow, "on_contact_deleted", envelope(uuid="con_x", customer_uuid="cus_c")))

    [call] = commands.list_notes(uow, {"customer_uuid": "cus_c"})["entries"]
    assert call["associated_object"] == "customer"  # the deletion waited for it, then kept it as the customer's


def test_a_call_logged_while_its_contact_is_deleted_is_refused(uow, hold):
    refused = []

    def log_call():
        try:
            commands.create_note(uow, call_on("con_y"), customers=None, contacts=Contacts())
        except ValidationFailed as error:
            refused.append(error.message)

    def delete():
        hold("mark_contact_gone")  # marked, not committed: the call must wait for the customer's lock
        run(uow, "on_contact_deleted", envelope(uuid="con_y", customer_uuid="cus_c"))

    race(delete, log_call)

    assert refused and "contact con_y was deleted" in refused[0]
    assert count(uow, Note) == 0


def test_a_contact_merged_onto_another_customer_while_a_call_is_logged_on_it_takes_the_call_along(uow, hold):
    def log_call():
        hold("survivor")
        commands.create_note(uow, call_on("con_m"), customers=None, contacts=Contacts())

    race(log_call, lambda: run(uow, "on_contact_merged", envelope(
        into_uuid="con_n", from_uuid="con_m", customer_uuid="cus_n", from_customer_uuid="cus_c", contact={})))

    [call] = commands.list_notes(uow, {"contact_uuid": "con_n"})["entries"]
    assert call["customer_uuid"] == "cus_n" and commands.feed(uow, "cus_c")["entries"] == []


class Customers:
    def get_customer(self, uuid):
        return {"uuid": uuid}


@pytest.fixture
def hold_every(monkeypatch):
    """hold_every(name): every call of store.<name> pauses after returning (all green threads)."""

    def arm(name: str):
        original = getattr(store, name)

        def held(*args, **kwargs):
            result = original(*args, **kwargs)
            eventlet.sleep(HOLD_SECONDS / 5)
            return result

        monkeypatch.setattr(store, name, held)

    return arm


@pytest.mark.parametrize("kind", ["note", "task", "opportunity"])
def test_of_parallel_deletes_of_one_record_exactly_one_succeeds(uow, hold_every, kind):
    ports = {"customers": Customers(), "contacts": Contacts()}
    if kind == "note":
        uuid = commands.create_note(uow, call_on("con_d"), **ports)["uuid"]
    elif kind == "task":
        uuid = commands.create_task(uow, {"customer_uuid": "cus_c", "task_details": "x", "assignee": "a@x.io",
                                          "due_date": "2024-05-01"}, **ports)["task_uuid"]
    else:
        uuid = commands.create_opportunity(uow, {
            "customer_uuid": "cus_c", "owner": "a@x.io", "pipeline": "P", "pipeline_stage": "S",
            "estimated_close_date": "2024-12-22", "currency": "USD", "amount_in_cents": 1}, customers=Customers())["uuid"]
    hold_every(kind)  # every delete reads the row, then waits: without a lock all of them go on
    outcomes = []

    def delete():
        try:
            getattr(commands, f"delete_{kind}")(uow, uuid)
            outcomes.append("deleted")
        except NotFound:
            outcomes.append("404")

    threads = [eventlet.spawn(delete) for _ in range(20)]
    for thread in threads:
        thread.wait()

    assert sorted(outcomes) == ["404"] * 19 + ["deleted"]
