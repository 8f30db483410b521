"""Overrides (ChartMogul 4.11) through the official client, a billing sync (the customers service's
`sync_customer` RPC, as billing_sync's job runner calls it) that leaves overridden fields alone, and a
custom-source duplicate of a Stripe customer merged into it in the background with its contact."""
import chartmogul
import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from tests.e2e.support import eventually, status_of, unique

ERR = chartmogul.APIError


@pytest.fixture(scope="module")
def source(owner):
    return chartmogul.DataSource.create(owner, data={"name": unique("overrides")}).get()


@pytest.fixture(scope="module")
def rpc(amqp_uri):
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=20) as proxy:
        yield proxy


def stripe_record(source_uuid, external_id, **fields):
    """What the Stripe connector's customer_record() gives the job runner, with its data source."""
    return {"data_source_uuid": source_uuid, "external_id": external_id, "name": "Billing Name",
            "email": f"{external_id}@billing.example", "company": "Billing Co", "country": "DE", "state": None,
            "city": "Berlin", "zip": "10115", "website_url": None, "lead_created_at": "2024-01-02T03:04:05Z",
            "billing_system_type": "Stripe", "billing_system_url": f"https://dashboard.stripe.com/customers/{external_id}",
            "attributes": {"stripe": {"plan": "pro"}}, **fields}


def test_attribute_history_with_the_official_client(owner, source, http):
    customer = chartmogul.Customer.create(owner, data={
        "data_source_uuid": source.uuid, "external_id": unique("cus"), "name": "History",
        "attributes": {"custom": [{"type": "String", "key": "salesRep", "value": "Ann"}]}}).get()
    chartmogul.CustomAttributes.update(owner, uuid=customer.uuid, data={"custom": {"salesRep": "Bob"}}).get()

    retrieved = chartmogul.Customer.retrieve(owner, uuid=customer.uuid, with_overrides=True,
                                             attributes_with_history="custom.salesRep").get()
    values = retrieved.historical_values["custom"]["salesRep"]
    assert [(v["value"], v["update_performed_by"], v["initial"]) for v in values] == [("Ann", "API", True),
                                                                                    ("Bob", "API", False)]
    assert retrieved.overrides == {} and chartmogul.Customer.retrieve(owner, uuid=customer.uuid).get() \
        .historical_values is None  # only when asked
    attributes = chartmogul.Attributes.retrieve(owner, uuid=customer.uuid, attributes_with_history="custom.salesRep").get()
    assert attributes.custom == {"salesRep": "Bob"} and len(attributes.historical_values["custom"]["salesRep"]) == 2
    bad = http.get(f"/v1/customers/{customer.uuid}", params={"attributes_with_history": "tags"})
    assert bad.status_code == 422 and bad.json()["param"] == "attributes_with_history"


def test_overrides_round_trip_through_the_client_and_a_sync_respects_them(owner, source, rpc):
    external_id = unique("cus")
    synced = rpc.customers.sync_customer(stripe_record(source.uuid, external_id))
    uuid = synced["uuid"]
    assert synced["sync_outcome"] == "created"

    chartmogul.Customer.modify(owner, uuid=uuid, data={
        "company": "Hand Made", "city": "Paris", "overrides": {"company": True, "address": True}}).get()
    chartmogul.CustomAttributes.add(owner, uuid=uuid, data={
        "custom": [{"type": "String", "key": "channel", "value": "Twitter"}],
        "overrides": {"attributes": {"custom": {"channel": True}}}}).get()

    customer = chartmogul.Customer.retrieve(owner, uuid=uuid, with_overrides=True).get()
    assert customer.overrides == {"company": True, "address": True, "attributes": {"custom": {"channel": True}}}
    assert chartmogul.Customer.retrieve(owner, uuid=uuid).get().overrides is None  # only when asked
    attributes = chartmogul.Attributes.retrieve(owner, uuid=uuid, with_overrides=True).get()
    assert attributes.overrides["company"] is True and attributes.stripe == {"plan": "pro"}

    resynced = rpc.customers.sync_customer(stripe_record(source.uuid, external_id, name="Renamed Upstream"))
    assert resynced["sync_outcome"] == "updated"
    def renamed():  # a change made behind the gateway reaches its record cache by broadcast
        after = chartmogul.Customer.retrieve(owner, uuid=uuid).get()
        return (after.company, after.city, after.zip, after.name)
    eventually(lambda: renamed() == ("Hand Made", "Paris", "10115", "Renamed Upstream"))

    removed = chartmogul.CustomAttributes.remove(owner, uuid=uuid, data={"custom": ["channel"]}).get()
    assert removed.custom == {"channel": "Twitter"} and "channel" in removed.message

    chartmogul.Customer.modify(owner, uuid=uuid, data={"overrides": {"address": False}}).get()
    assert rpc.customers.sync_customer(stripe_record(source.uuid, external_id,
                                                     name="Renamed Upstream"))["city"] == "Berlin"


def test_an_unknown_override_is_a_422_naming_it(owner, source):
    customer = chartmogul.Customer.create(owner, data={"data_source_uuid": source.uuid,
                                                       "external_id": unique("cus")}).get()
    with pytest.raises(ERR) as failure:
        chartmogul.Customer.modify(owner, uuid=customer.uuid, data={"overrides": {"colour": True}}).get()
    assert status_of(failure.value) == 422 and "overrides.colour" in str(failure.value.__cause__.response.text)


def test_contact_overrides_round_trip_and_a_contact_sync_respects_them(owner, source, rpc):
    customer = chartmogul.Customer.create(owner, data={"data_source_uuid": source.uuid,
                                                       "external_id": unique("cus")}).get()
    contact_id = unique("con")
    contact = chartmogul.Contact.create(owner, data={
        "customer_uuid": customer.uuid, "data_source_uuid": source.uuid, "external_id": contact_id,
        "email": "hand@example.com", "first_name": "Hand", "overrides": {"email": True}}).get()
    assert chartmogul.Contact.retrieve(owner, uuid=contact.uuid, with_overrides=True).get().overrides == {"email": True}

    synced = rpc.contacts.sync_contacts(customer.uuid, source.uuid, [{
        "external_id": contact_id, "customer_external_id": customer.external_id, "first_name": "Upstream",
        "last_name": None, "email": "upstream@example.com", "phone": None, "title": None, "position": 1}])
    assert synced[0]["uuid"] == contact.uuid
    assert (synced[0]["email"], synced[0]["first_name"]) == ("hand@example.com", "Upstream")

    chartmogul.Contact.modify(owner, uuid=contact.uuid, data={"overrides": {"email": False}}).get()
    assert chartmogul.Contact.retrieve(owner, uuid=contact.uuid, with_overrides=True).get().overrides == {}


def test_a_custom_source_duplicate_of_a_stripe_customer_is_merged_in_the_background(owner, source, rpc, http):
    stripe_source = chartmogul.DataSource.create(owner, data={"name": unique("stripe-like")}).get()
    external_id = unique("cus")
    email = f"{external_id}@billing.example"
    stripe = rpc.customers.sync_customer(stripe_record(stripe_source.uuid, external_id))

    duplicate = chartmogul.Customer.create(owner, data={
        "data_source_uuid": source.uuid, "external_id": unique("crm"), "email": email.upper(), "name": "CRM copy",
        "primary_contact": {"first_name": "Jo", "email": "jo@example.com"}}).get()
    assert duplicate.uuid != stripe["uuid"]

    def one_customer_with_the_contact():
        found = chartmogul.Customer.search(owner, email=email).get().entries
        if [customer.uuid for customer in found] != [stripe["uuid"]]:
            return None
        contacts = http.get(f"/v1/customers/{stripe['uuid']}/contacts").json()["entries"]
        return [contact["email"] for contact in contacts] == ["jo@example.com"]
    eventually(one_customer_with_the_contact)
    merged = chartmogul.Customer.retrieve(owner, uuid=stripe["uuid"]).get()
    assert merged.billing_system_type == "Stripe" and duplicate.external_id in merged.external_ids
