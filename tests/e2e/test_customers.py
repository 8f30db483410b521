"""Customers through the gateway, as a user of the official chartmogul client sees them."""
import time

import chartmogul
import pytest
from tests.e2e.support import status_of, unique

ERR = chartmogul.APIError


@pytest.fixture(scope="module")
def data_source(owner):
    return chartmogul.DataSource.create(owner, data={"name": unique("Customers source")}).get()


def new_customer(config, data_source, **fields):
    data = {"data_source_uuid": data_source.uuid, "external_id": unique(), "name": "Acme", **fields}
    return chartmogul.Customer.create(config, data=data).get()


def test_create_then_retrieve_returns_every_field(owner, data_source):
    created = new_customer(
        owner, data_source, email="Bob@Example.com", company="Acme Inc", country="US", state="NY", city="New York",
        zip="10001", website_url="acme.example", lead_created_at="2024-01-02 10:00:00",
        free_trial_started_at="2024-02-01", status="Working_Lead",
        attributes={"tags": ["vip", "beta"], "custom": [
            {"type": "Integer", "key": "seats", "value": 12},
            {"type": "Boolean", "key": "pro", "value": True},
            {"type": "Timestamp", "key": "renewal", "value": "2025-01-01T00:00:00Z"},
        ]},
    )

    fetched = chartmogul.Customer.retrieve(owner, uuid=created.uuid).get()

    assert fetched.uuid.startswith("cus_") and fetched.uuid == created.uuid
    assert isinstance(fetched.id, int)
    assert fetched.external_ids == [created.external_id]
    assert fetched.data_source_uuid == data_source.uuid and fetched.data_source_uuids == [data_source.uuid]
    assert (fetched.name, fetched.email, fetched.company) == ("Acme", "Bob@Example.com", "Acme Inc")
    assert fetched.status == "Working Lead"
    assert fetched.website_url == "https://acme.example"
    assert fetched.lead_created_at.year == 2024 and fetched.free_trial_started_at.month == 2
    assert fetched.address.city == "New York" and fetched.address.country == "US"
    assert fetched.attributes.tags == ["vip", "beta"]
    assert fetched.attributes.custom == {"seats": 12, "pro": True, "renewal": "2025-01-01T00:00:00Z"}
    assert (fetched.mrr, fetched.arr, fetched.customer_since) == (0, 0, None)
    assert fetched.billing_system_type == "Import API" and fetched.currency == "USD"


def test_list_pages_with_an_opaque_cursor_and_filters(owner, cm_config):
    source = chartmogul.DataSource.create(owner, data={"name": unique("Paging")}).get()
    made = [new_customer(owner, source, name=f"P{i}") for i in range(5)]

    first = chartmogul.Customer.all(owner, data_source_uuid=source.uuid, per_page=2).get()
    second = chartmogul.Customer.all(owner, data_source_uuid=source.uuid, per_page=2, cursor=first.cursor).get()
    third = chartmogul.Customer.all(owner, data_source_uuid=source.uuid, per_page=2, cursor=second.cursor).get()

    seen = [c.uuid for page in (first, second, third) for c in page.entries]
    assert seen == [c.uuid for c in made]
    assert first.has_more and second.has_more and not third.has_more
    by_external = chartmogul.Customer.all(cm_config("read_only"), external_id=made[3].external_id).get()
    assert [c.uuid for c in by_external.entries] == [made[3].uuid]
    leads = chartmogul.Customer.all(owner, data_source_uuid=source.uuid, status="New_Lead").get()
    assert len(leads.entries) == 5
    assert chartmogul.Customer.all(owner, data_source_uuid=source.uuid, status="Active").get().entries == []
    imported = chartmogul.Customer.all(owner, data_source_uuid=source.uuid, system="Import API").get()
    assert len(imported.entries) == 5


def test_search_by_email_is_case_insensitive(owner, data_source):
    email = f"{unique('find')}@example.com"
    customer = new_customer(owner, data_source, email=email)

    found = chartmogul.Customer.search(owner, email=email.upper()).get()

    assert [c.uuid for c in found.entries] == [customer.uuid]
    assert chartmogul.Customer.search(owner, email="nobody-" + email).get().entries == []


def test_modify_and_put_change_fields_and_replace_tags(owner, data_source):
    customer = new_customer(owner, data_source, attributes={"tags": ["old"]})

    modified = chartmogul.Customer.modify(owner, uuid=customer.uuid, data={
        "name": "Renamed", "country": "DE", "status": "Qualified Lead", "website_url": "http://renamed.example",
        "attributes": {"tags": ["new"], "custom": {"channel": "Twitter"}},
    }).get()
    updated = chartmogul.Customer.update(owner, uuid=customer.uuid, data={"company": "Put Inc"}).get()

    assert modified.name == "Renamed" and modified.address.country == "DE"
    assert modified.status == "Qualified Lead" and modified.website_url == "http://renamed.example"
    assert modified.attributes.tags == ["new"] and modified.attributes.custom == {"channel": "Twitter"}
    assert updated.company == "Put Inc" and updated.name == "Renamed"
    assert chartmogul.Customer.retrieve(owner, uuid=customer.uuid).get().company == "Put Inc"


def test_destroy_removes_the_customer(owner, cm_config, data_source):
    customer = new_customer(owner, data_source)

    assert chartmogul.Customer.destroy(cm_config("admin"), uuid=customer.uuid).get() is None

    with pytest.raises(ERR) as missing:
        chartmogul.Customer.retrieve(owner, uuid=customer.uuid).get()
    assert status_of(missing.value) == 404


def test_merge_moves_external_ids_tags_and_custom_attributes(owner, data_source):
    survivor = new_customer(owner, data_source, attributes={
        "tags": ["a"], "custom": [{"type": "Integer", "key": "seats", "value": 5}]})
    merged = new_customer(owner, data_source, attributes={
        "tags": ["a", "b"], "custom": [{"type": "Integer", "key": "seats", "value": 9},
                                       {"type": "String", "key": "channel", "value": "ads"}]})

    result = chartmogul.Customer.merge(owner, data={
        "from": {"data_source_uuid": data_source.uuid, "external_id": merged.external_id},
        "into": {"customer_uuid": survivor.uuid},
    }).get()

    assert result is None
    after = chartmogul.Customer.retrieve(owner, uuid=survivor.uuid).get()
    assert after.external_ids == [survivor.external_id, merged.external_id]
    assert after.attributes.tags == ["a", "b"]
    assert after.attributes.custom == {"seats": 5, "channel": "ads"}
    with pytest.raises(ERR) as gone:
        chartmogul.Customer.retrieve(owner, uuid=merged.uuid).get()
    assert status_of(gone.value) == 404
    found = chartmogul.Customer.all(owner, external_id=merged.external_id).get()
    assert [c.uuid for c in found.entries] == [survivor.uuid]


def test_tags_add_and_remove_by_uuid_and_by_email(owner, data_source):
    email = f"{unique('tags')}@example.com"
    one, two = new_customer(owner, data_source, email=email), new_customer(owner, data_source, email=email)

    added = chartmogul.Tags.add(owner, uuid=one.uuid, data={"tags": ["x", "y"]}).get()
    removed = chartmogul.Tags.remove(owner, uuid=one.uuid, data={"tags": ["x"]}).get()
    by_email = chartmogul.Tags.add(owner, data={"email": email, "tags": ["team"]}).get()

    assert added.tags == ["x", "y"] and removed.tags == ["y"]
    assert sorted(c.uuid for c in by_email.entries) == sorted([one.uuid, two.uuid])
    assert all("team" in c.attributes.tags for c in by_email.entries)


def test_tags_and_custom_attributes_change_by_email_over_raw_http(http, data_source):
    email = f"{unique('mail')}@example.com"
    for _ in range(2):
        http.post("/v1/customers", json={"data_source_uuid": data_source.uuid, "external_id": unique(), "email": email,
                                         "attributes": {"tags": ["keep", "drop"], "custom": [
                                             {"type": "Integer", "key": "seats", "value": 1},
                                             {"type": "String", "key": "gone", "value": "x"}]}})

    untagged = http.delete("/v1/customers/attributes/tags", json={"email": email, "tags": ["drop"]})
    updated = http.put("/v1/customers/attributes/custom", json={"email": email, "custom": {"seats": 9}})
    removed = http.delete("/v1/customers/attributes/custom", json={"email": email, "custom": ["gone"]})

    assert [c["attributes"]["tags"] for c in untagged.json()["entries"]] == [["keep"], ["keep"]]
    assert [c["attributes"]["custom"]["seats"] for c in updated.json()["entries"]] == [9, 9]
    assert [c["attributes"]["custom"] for c in removed.json()["entries"]] == [{"seats": 9}, {"seats": 9}]
    missing = http.put("/v1/customers/attributes/custom", json={"email": "no-one@example.com", "custom": {"a": 1}})
    assert missing.status_code == 404


def test_custom_attributes_add_update_remove_and_attributes_retrieve(owner, data_source):
    customer = new_customer(owner, data_source, email=f"{unique('ca')}@example.com")

    added = chartmogul.CustomAttributes.add(owner, uuid=customer.uuid, data={"custom": [
        {"type": "String", "key": "channel", "value": "Facebook", "source": "integration"},
        {"type": "Decimal", "key": "cac", "value": 213.5},
        {"type": "Integer", "key": "age", "value": 8},
    ]}).get()
    updated = chartmogul.CustomAttributes.update(owner, uuid=customer.uuid,
                                                 data={"custom": {"age": 20, "channel": "Twitter"}}).get()
    removed = chartmogul.CustomAttributes.remove(owner, uuid=customer.uuid, data={"custom": ["cac"]}).get()
    attributes = chartmogul.Attributes.retrieve(owner, uuid=customer.uuid).get()
    by_email = chartmogul.CustomAttributes.add(owner, data={
        "email": customer.email, "custom": [{"type": "Boolean", "key": "pro", "value": True}]}).get()

    # Decimal values are exact decimal strings (docs/events.md)
    assert added.custom == {"channel": "Facebook", "cac": "213.5", "age": 8}
    assert updated.custom == {"channel": "Twitter", "cac": "213.5", "age": 20}
    assert removed.custom == {"channel": "Twitter", "age": 20}
    assert attributes.custom == {"channel": "Twitter", "age": 20} and attributes.tags == []
    assert by_email.entries[0].attributes.custom["pro"] is True


def test_ping_through_the_official_client(owner):
    assert chartmogul.Ping.ping(owner).get().data == "pong!"


def test_openapi_document_describes_the_customer_routes(http):
    document = http.get("/v1/openapi.json", role=None).json()

    assert document["openapi"].startswith("3.")
    assert {"get", "patch", "put", "delete"} <= set(document["paths"]["/v1/customers/{uuid}"])
    create = document["paths"]["/v1/customers"]["post"]
    schema_name = create["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    required = document["components"]["schemas"][schema_name]["required"]
    assert {"data_source_uuid", "external_id"} <= set(required)


def test_a_change_made_behind_the_gateway_reaches_its_cached_copy(http, amqp_uri, data_source):
    """The gateway caches rendered customers; a change that did not pass through it (here an
    RPC straight to the customers service, as another gateway process would) still shows,
    because the customer_updated event evicts the copy, long before the cache's TTL."""
    from nameko.standalone.rpc import ClusterRpcProxy

    customer = http.post("/v1/customers", json={"data_source_uuid": data_source.uuid, "external_id": unique(),
                                                "name": "Cached"}).json()
    assert http.get(f"/v1/customers/{customer['uuid']}").json()["name"] == "Cached"  # now cached

    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=10) as cluster:
        cluster.customers.update_customer(customer["uuid"], {"name": "Changed elsewhere"})

    deadline = time.monotonic() + 5
    while http.get(f"/v1/customers/{customer['uuid']}").json()["name"] != "Changed elsewhere":
        assert time.monotonic() < deadline, "the gateway kept serving its stale copy"
        time.sleep(0.05)
