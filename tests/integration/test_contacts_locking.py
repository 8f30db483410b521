"""The contacts service layer under overlapping transactions, on the configured database.

Each concurrent call gets its own UnitOfWork, as each nameko worker does; the calls are
released together (and, where a create asks the customers service first, held at that
point until every one of them got its answer), so their transactions really overlap.
Run with `DATABASE_URL=postgresql://...`: on SQLite every write transaction holds the
file's lock and these hold by construction.
"""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from roster import config, migrations
from roster.database import make_engine
from roster.errors import NotFound, RosterError, ValidationFailed
from roster.events import envelope
from roster.testing import as_handler
from roster.uow import UnitOfWork
from services.contacts import commands
from services.contacts.models import UNIQUE_RULES, Base, Contact, bookkeeping

DS = "ds_11111111-1111-1111-1111-111111111111"
ROUNDS = 15


class GatedCustomers:
    """`get_customer` that answers only once `parties` callers are waiting for it (then `delay` later)."""

    def __init__(self, parties: int, delay: float = 0.0):
        self.gate = threading.Barrier(parties)
        self.delay = delay

    def get_survivor(self, uuid):
        raise NotFound(f"Customer {uuid} was not merged", param="uuid")

    def get_customer(self, uuid):
        self.gate.wait()
        time.sleep(self.delay)
        return {"uuid": uuid, "external_id": f"ext-{uuid}", "data_source_uuid": DS, "data_source_uuids": [DS]}


class NoBilling:
    def get_data_source(self, uuid):
        raise AssertionError("not asked: every contact here is in its customer's data source")


@pytest.fixture
def sessions(own_database):
    engine = make_engine(config.database_url("contacts"), config.database_schema("contacts"))
    migrations.upgrade(engine, "contacts", Base.metadata)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def new_uow(sessions) -> UnitOfWork:
    """A UnitOfWork like the one each worker gets."""
    return UnitOfWork(sessions, bookkeeping, unique_rules=UNIQUE_RULES)


def at_once(*calls) -> list:
    """Run the calls concurrently, released together; return each result or the RosterError it raised."""
    start = threading.Barrier(len(calls))

    def run(call):
        start.wait()
        try:
            return call()
        except RosterError as refused:
            return refused

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def count(sessions, **filters) -> int:
    with sessions() as session:
        query = select(func.count(Contact.id))
        for name, value in filters.items():
            query = query.where(getattr(Contact, name) == value)
        return session.scalar(query)


def create(sessions, customers, customer_uuid="cus_a", **fields):
    data = {"customer_uuid": customer_uuid, "data_source_uuid": DS, **fields}
    return commands.create_contact(new_uow(sessions), data, customers=customers, billing=NoBilling())


def test_concurrent_creates_with_one_external_id_store_exactly_one(sessions):
    customers = GatedCustomers(20)

    results = at_once(*[lambda: create(sessions, customers, external_id="c-1")] * 20)

    refused = [result for result in results if isinstance(result, RosterError)]
    assert len(refused) == 19 and {(type(r), r.param) for r in refused} == {(ValidationFailed, "external_id")}
    assert count(sessions, external_id="c-1") == 1


def test_concurrent_custom_updates_of_different_keys_lose_none(sessions):
    contact = create(sessions, GatedCustomers(1), custom={"kept": "yes"})

    results = at_once(*[
        (lambda n=n: commands.update_contact(new_uow(sessions), contact["uuid"], {"custom": {f"k{n}": n}}))
        for n in range(20)
    ])

    assert not [result for result in results if isinstance(result, RosterError)]
    assert commands.get_contact(new_uow(sessions), contact["uuid"])["custom"] == {
        "kept": "yes", **{f"k{n}": n for n in range(20)}}


def test_a_contact_created_while_its_customer_is_deleted_never_outlives_it(sessions):
    """Both orders happen: the create's transaction starts with, or a little after, the deletion's;
    the customer has a contact already (as most have) or not yet."""
    created = 0
    for attempt in range(ROUNDS * 2):
        customer_uuid = f"cus_{attempt}"
        if attempt % 2:
            create(sessions, GatedCustomers(1), customer_uuid)
        customers = GatedCustomers(2, delay=(attempt % 3) * 0.003)
        deletion = envelope(uuid=customer_uuid, external_ids=[], data_source_uuids=[DS])

        def delete_after_the_lookup():
            customers.gate.wait()  # the create has just been told the customer exists
            handler = as_handler(new_uow(sessions), "handle_customer_deleted", deletion)
            return commands.on_customer_deleted(handler, deletion)

        results = at_once(lambda: create(sessions, customers, customer_uuid), delete_after_the_lookup)

        created += isinstance(results[0], dict)
        assert count(sessions, customer_uuid=customer_uuid) == 0, f"orphan in attempt {attempt}: {results}"
    if sessions.kw["bind"].dialect.name == "postgresql":
        assert 0 < created < ROUNDS * 2  # both orders were tried


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_opposite_merges_one_wins_the_other_is_refused(sessions, round_):
    first = create(sessions, GatedCustomers(1), custom={"first": 1})["uuid"]
    second = create(sessions, GatedCustomers(1), custom={"second": 2})["uuid"]

    results = at_once(lambda: commands.merge_contacts(new_uow(sessions), first, second),
                      lambda: commands.merge_contacts(new_uow(sessions), second, first))

    [won] = [result for result in results if isinstance(result, dict)]
    [lost] = [result for result in results if not isinstance(result, dict)]
    assert 400 <= lost.status < 500, lost
    assert count(sessions) == 1
    assert commands.get_contact(new_uow(sessions), won["uuid"])["custom"] == {"first": 1, "second": 2}


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_chain_merges_keep_everything(sessions, round_):
    a, b, c = (create(sessions, GatedCustomers(1), custom={key: key})["uuid"] for key in "abc")

    results = at_once(lambda: commands.merge_contacts(new_uow(sessions), b, a),
                      lambda: commands.merge_contacts(new_uow(sessions), c, b))

    assert all(isinstance(result, dict) or 400 <= result.status < 500 for result in results), results
    merged = sum(isinstance(result, dict) for result in results)
    assert merged >= 1 and count(sessions) == 3 - merged
    with sessions() as session:
        keys = sorted(key for custom in session.scalars(select(Contact.custom)) for key in custom)
    assert keys == ["a", "b", "c"]
