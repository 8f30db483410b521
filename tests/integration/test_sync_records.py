"""sync_customer, sync_contacts and the background duplicate merge under concurrency, on the real
database (SQLite, or PostgreSQL with DATABASE_URL): threads released together on the service layer,
and RPC calls racing into real customers/contacts containers (two customers containers) on the broker."""
import threading
from concurrent.futures import ThreadPoolExecutor

import eventlet
import pytest
from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

import roster.handlers
from roster import config, migrations
from roster.database import make_engine
from roster.errors import RosterError
from roster.uow import UnitOfWork
from tests.integration.support import eventually, running
from services.billing_sync.service import BillingSyncService
from services.contacts.service import ContactsService
from services.customers import commands
from services.customers.models import UNIQUE_RULES, Base, Customer, ExternalId, bookkeeping
from services.customers.service import CustomersService

STRIPE = "ds_stripe_source"


class GatedBilling:
    """`get_data_source` that answers once `parties` callers wait, so all of them then race into
    their write transactions together."""

    def __init__(self, parties: int):
        self.gate = threading.Barrier(parties)

    def get_data_source(self, uuid):
        self.gate.wait(timeout=30)
        return {"uuid": uuid, "system": "Stripe"}


@pytest.fixture
def sessions(own_database):
    engine = make_engine(config.database_url("customers"), config.database_schema("customers"))
    migrations.upgrade(engine, "customers", Base.metadata)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def at_once(calls) -> list:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
    results = []
    for future in futures:
        try:
            results.append(future.result())
        except RosterError as refused:
            results.append(refused)
    return results


def record(external_id="cus_race", **fields):
    return {"data_source_uuid": STRIPE, "external_id": external_id, "name": "Race", "email": "race@acme.io",
            **fields}


def test_concurrent_first_syncs_of_one_customer_make_one(sessions):
    billing = GatedBilling(8)
    results = at_once([lambda n=n: commands.sync_customer(UnitOfWork(sessions, bookkeeping, unique_rules=UNIQUE_RULES),
                                                          record(name=f"Race {n % 2}"), billing=billing)
                       for n in range(8)])
    assert not [r for r in results if isinstance(r, RosterError)], results
    assert len({r["uuid"] for r in results}) == 1
    assert [r["sync_outcome"] for r in results].count("created") == 1
    with sessions() as session:
        assert session.scalar(select(func.count(Customer.id))) == 1
        assert session.scalar(select(func.count(ExternalId.id))) == 1


def test_concurrent_duplicate_merges_make_one_merge_per_pair(sessions):
    uow = UnitOfWork(sessions, bookkeeping, unique_rules=UNIQUE_RULES)
    stripe = commands.sync_customer(uow, record(billing_system_type="Stripe"), billing=None)
    duplicates = [commands.sync_customer(uow, {"data_source_uuid": "ds_imports", "external_id": f"dup{n}",
                                               "email": "RACE@acme.io", "billing_system_type": "Import API"},
                                         billing=None) for n in range(3)]
    payloads = [{"customer": stripe}] * 3 + [{"customer": duplicate} for duplicate in duplicates] * 2
    results = at_once([lambda p=p: commands.merge_duplicates(UnitOfWork(sessions, bookkeeping,
                                                                        unique_rules=UNIQUE_RULES), p)
                       for p in payloads])
    assert not [r for r in results if isinstance(r, RosterError)], results
    merged = [merge["from_uuid"] for result in results for merge in result]
    assert sorted(merged) == sorted(duplicate["uuid"] for duplicate in duplicates)
    with sessions() as session:
        assert session.scalars(select(Customer.uuid)).all() == [stripe["uuid"]]


# ---- real containers ------------------------------------------------------------------------

@pytest.fixture()
def cluster(amqp_uri, own_database, monkeypatch):
    monkeypatch.setattr(roster.handlers, "RETRY_BASE_SECONDS", 0.1)
    with running(amqp_uri, BillingSyncService, CustomersService, CustomersService, ContactsService, timeout=20) as proxy:
        yield proxy


def racing_calls(amqp_uri, call, count: int) -> list:
    """Run `call(proxy, n)` from `count` green threads, each with its own RPC connection."""
    def run(n):
        with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=20) as proxy:
            return call(proxy, n)
    pool = eventlet.GreenPool(count)
    return list(pool.imap(run, range(count)))


def test_racing_rpc_syncs_of_one_customer_and_its_contacts_make_one_of_each(cluster, amqp_uri):
    source = cluster.billing_sync.create_data_source({"name": "Stripe-like"})["uuid"]
    data = {**record(), "data_source_uuid": source, "billing_system_type": "Stripe",
            "attributes": {"stripe": {"plan": "pro"}}}
    synced = racing_calls(amqp_uri, lambda proxy, n: proxy.customers.sync_customer(data), 6)
    assert len({customer["uuid"] for customer in synced}) == 1
    assert [customer["sync_outcome"] for customer in synced].count("created") == 1
    assert len(cluster.customers.list_customers({"data_source_uuid": source})["entries"]) == 1
    customer = synced[0]["uuid"]

    contacts = [{"external_id": "cus_race", "customer_external_id": "cus_race", "first_name": "Ada",
                 "last_name": "L", "email": "ada@acme.io", "phone": None, "title": None, "position": 1}]
    answers = racing_calls(amqp_uri, lambda proxy, n: proxy.contacts.sync_contacts(customer, source, contacts), 6)
    assert len({answer[0]["uuid"] for answer in answers}) == 1
    assert len(cluster.contacts.list_contacts({"customer_uuid": customer})["entries"]) == 1


def test_a_custom_source_duplicate_is_merged_into_the_stripe_record_with_its_contact(cluster):
    stripe_source = cluster.billing_sync.create_data_source({"name": "Stripe-like"})["uuid"]
    custom_source = cluster.billing_sync.create_data_source({"name": "Custom"})["uuid"]
    # The CRM record and its contact come first: with the Stripe record already there, the merge
    # (run from customer_created) could win the race against the contact's create.
    duplicate = cluster.customers.create_customer({"data_source_uuid": custom_source, "external_id": "crm-1",
                                                   "email": "Dup@Acme.io", "name": "From the CRM"})
    contact = cluster.contacts.create_contact({"customer_uuid": duplicate["uuid"],
                                               "data_source_uuid": custom_source, "email": "jo@acme.io"})
    stripe = cluster.customers.sync_customer({**record("cus_dup"), "data_source_uuid": stripe_source,
                                              "billing_system_type": "Stripe", "email": "dup@acme.io"})

    def one_customer_with_the_contact():
        customers = cluster.customers.list_customers({"email": "dup@acme.io"})["entries"]
        assert [c["uuid"] for c in customers] == [stripe["uuid"]]
        assert set(customers[0]["external_ids"]) == {"cus_dup", "crm-1"}
        assert cluster.contacts.get_contact(contact["uuid"])["customer_uuid"] == stripe["uuid"]
    eventually(one_customer_with_the_contact, timeout=20)
