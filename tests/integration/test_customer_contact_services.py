"""The real customers, contacts and billing_sync services as nameko containers on the real broker
and database (nothing faked): commands over RPC, their events driving the contacts service, a
redelivered event changing nothing, and an event that can never be handled dead-lettered."""

import pytest
from kombu import Connection
from nameko.standalone.events import event_dispatcher

import roster.handlers
from roster.errors import NotFound, ValidationFailed
from tests.integration.support import eventually, running
from services.billing_sync.service import BillingSyncService
from services.contacts.service import ContactsService
from services.customers.service import CustomersService


@pytest.fixture()
def cluster(amqp_uri, own_database, monkeypatch):
    monkeypatch.setattr(roster.handlers, "RETRY_BASE_SECONDS", 0.1)
    with running(amqp_uri, BillingSyncService, CustomersService, ContactsService, timeout=15) as proxy:
        yield proxy


def contacts_of(cluster, customer_uuid):
    return [contact["uuid"] for contact in cluster.contacts.list_contacts({"customer_uuid": customer_uuid})["entries"]]


def test_contacts_follow_their_customer_through_a_merge_and_a_deletion(cluster):
    source = cluster.billing_sync.create_data_source({"name": "Real services"})["uuid"]
    into = cluster.customers.create_customer({"data_source_uuid": source, "external_id": "into", "name": "Into"})
    merged = cluster.customers.create_customer({"data_source_uuid": source, "external_id": "from", "name": "From"})
    kept = cluster.contacts.create_contact({"customer_uuid": into["uuid"], "data_source_uuid": source,
                                            "email": "kept@example.com"})
    moved = cluster.contacts.create_contact({"customer_uuid": merged["uuid"], "data_source_uuid": source,
                                             "email": "moved@example.com", "external_id": "c-from"})

    cluster.customers.merge_customers({"customer_uuid": merged["uuid"]}, {"customer_uuid": into["uuid"]})

    def moved_over():
        assert sorted(contacts_of(cluster, into["uuid"])) == sorted([kept["uuid"], moved["uuid"]])
        assert cluster.contacts.get_contact(moved["uuid"])["customer_external_id"] == "into"
    eventually(moved_over)

    cluster.customers.delete_customer(into["uuid"])

    def deleted():
        assert contacts_of(cluster, into["uuid"]) == []
    eventually(deleted)
    with pytest.raises(NotFound):
        cluster.contacts.get_contact(kept["uuid"])
    with pytest.raises(ValidationFailed):  # a contact cannot be created for the deleted customer
        cluster.contacts.create_contact({"customer_uuid": into["uuid"], "data_source_uuid": source})


def test_a_redelivered_deletion_changes_nothing_and_an_impossible_event_is_dead_lettered(cluster, amqp_uri):
    source = cluster.billing_sync.create_data_source({"name": "Redelivery"})["uuid"]
    first = cluster.customers.create_customer({"data_source_uuid": source, "external_id": "a"})
    second = cluster.customers.create_customer({"data_source_uuid": source, "external_id": "b"})
    contact = cluster.contacts.create_contact({"customer_uuid": second["uuid"], "data_source_uuid": source})
    dispatch = event_dispatcher({"AMQP_URI": amqp_uri})
    deletion = {"event_id": "deleted-once", "occurred_at": "2024-01-01T00:00:00Z", "version": 1,
                "uuid": first["uuid"], "external_ids": ["a"], "data_source_uuids": [source], "reason": "deleted"}
    for _ in range(3):
        dispatch("customers", "customer_deleted", deletion)
    dispatch("customers", "customer_deleted", {"event_id": "poison", "version": 1})  # no uuid: never handleable

    def dead_lettered():
        with Connection(amqp_uri) as connection:
            queue = connection.default_channel.queue_declare("dead_letters.contacts", passive=True)
        assert queue.message_count == 1
    eventually(dead_lettered, timeout=15)
    assert contacts_of(cluster, second["uuid"]) == [contact["uuid"]]  # the other customer's contact is untouched
    with pytest.raises(ValidationFailed):
        cluster.contacts.create_contact({"customer_uuid": first["uuid"], "data_source_uuid": source})
