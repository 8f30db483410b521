"""Contacts end to end: the official client against the gateway, raw HTTP for every error, and
contacts following their customer through merges and deletions, also across a restart."""
import time
from collections import Counter

import chartmogul
import pytest
from kombu import Connection, Exchange, Queue
from tests.e2e.support import eventually, unique

class EventTap:
    """An exclusive queue bound to every event the contacts service publishes."""

    def __init__(self, amqp_uri: str):
        self.connection = Connection(amqp_uri)
        exchange = Exchange("contacts.events", type="topic", durable=True)
        queue = Queue(unique("test-contacts-tap"), exchange=exchange, routing_key="#",
                      exclusive=True, auto_delete=True, durable=False)
        self.queue = queue(self.connection.channel())
        self.queue.declare()
        self.events: list[tuple[str, dict]] = []

    def drain(self) -> list[tuple[str, dict]]:
        """Collect every event waiting in the queue; return all collected so far."""
        while True:
            message = self.queue.get(no_ack=True)
            if message is None:
                return self.events
            self.events.append((message.delivery_info["routing_key"], message.payload))

    def about(self, contact_uuids) -> list[tuple[str, dict]]:
        wanted = set(contact_uuids)
        return [(kind, payload) for kind, payload in self.drain()
                if payload.get("uuid") in wanted or payload.get("from_uuid") in wanted]

    def close(self):
        self.connection.release()


@pytest.fixture
def tap(amqp_uri):
    listener = EventTap(amqp_uri)
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def data_source(owner):
    return chartmogul.DataSource.create(owner, data={"name": unique("contacts-e2e")}).get()


@pytest.fixture
def new_customer(owner, data_source):
    def make(**fields):
        data = {"data_source_uuid": data_source.uuid, "external_id": unique("cus"), "name": "Acme",
                "email": "billing@acme.example", **fields}
        return chartmogul.Customer.create(owner, data=data).get()

    return make


@pytest.fixture
def new_contact(owner, data_source):
    def make(customer, **fields):
        data = {"customer_uuid": customer.uuid, "data_source_uuid": data_source.uuid, **fields}
        return chartmogul.Contact.create(owner, data=data).get()

    return make


def contacts_of(cfg, customer_uuid: str) -> list:
    return list(chartmogul.Contact.all(cfg, customer_uuid=customer_uuid, per_page=200).get().entries)


# --- the official client ------------------------------------------------------------------

def test_create_retrieve_list_modify_and_destroy_with_the_official_client(owner, new_customer, new_contact,
                                                                          data_source):
    customer = new_customer()
    external_id = unique("con")
    created = new_contact(customer, first_name="Jane", last_name="Doe", position=1, title="CTO",
                          email="jane@acme.example", phone="+1 555 0100", external_id=external_id,
                          linked_in="https://www.linkedin.com/in/jane-doe", twitter="@janedoe",
                          notes="Met at the fair", custom=[{"key": "Facebook", "value": "fb.com/jane"}])

    assert created.uuid.startswith("con_")
    assert (created.customer_uuid, created.data_source_uuid) == (customer.uuid, data_source.uuid)
    assert created.customer_external_id == customer.external_id
    assert (created.first_name, created.position, created.twitter) == ("Jane", 1, "@janedoe")
    assert created.custom == {"Facebook": "fb.com/jane"}

    fetched = chartmogul.Contact.retrieve(owner, uuid=created.uuid).get()
    assert (fetched.uuid, fetched.email, fetched.external_id) == (created.uuid, "jane@acme.example", external_id)

    for filters in ({"customer_uuid": customer.uuid}, {"email": "JANE@acme.example", "customer_uuid": customer.uuid},
                    {"customer_external_id": customer.external_id}, {"external_id": external_id},
                    {"data_source_uuid": data_source.uuid, "external_id": external_id}):
        page = chartmogul.Contact.all(owner, **filters).get()
        assert [c.uuid for c in page.entries] == [created.uuid], filters
        assert page.has_more is False and page.cursor is None

    modified = chartmogul.Contact.modify(owner, uuid=created.uuid, data={
        "title": "CEO", "last_seen": "2024-05-01T10:00:00Z", "custom": [{"key": "channel", "value": "Twitter"}]
    }).get()
    assert (modified.title, modified.first_name) == ("CEO", "Jane")
    assert modified.last_seen.year == 2024
    assert modified.custom == {"Facebook": "fb.com/jane", "channel": "Twitter"}

    destroyed = chartmogul.Contact.destroy(owner, uuid=created.uuid).get()
    assert isinstance(destroyed, chartmogul.Contact)  # 200 {} is what the client expects
    with pytest.raises(chartmogul.APIError) as missing:
        chartmogul.Contact.retrieve(owner, uuid=created.uuid).get()
    assert missing.value.__cause__.response.status_code == 404


def test_listing_pages_with_a_cursor(owner, new_customer, new_contact):
    customer = new_customer()
    made = [new_contact(customer, first_name=f"P{n}").uuid for n in range(3)]

    first = chartmogul.Contact.all(owner, customer_uuid=customer.uuid, per_page=2).get()
    assert [c.uuid for c in first.entries] == made[:2]
    assert first.has_more is True and first.cursor
    rest = chartmogul.Contact.all(owner, customer_uuid=customer.uuid, per_page=2, cursor=first.cursor).get()
    assert [c.uuid for c in rest.entries] == made[2:]
    assert rest.has_more is False and rest.cursor is None


def test_merge_with_the_official_client(owner, new_customer, new_contact):
    customer = new_customer()
    into = new_contact(customer, first_name="Jane", custom=[{"key": "plan", "value": "pro"}])
    merged_from = new_contact(customer, first_name="Janet", last_name="Doe", email="jd@acme.example",
                              custom=[{"key": "plan", "value": "free"}, {"key": "seats", "value": 3}])

    merged = chartmogul.Contact.merge(owner, into_uuid=into.uuid, from_uuid=merged_from.uuid).get()

    assert merged.uuid == into.uuid
    assert (merged.first_name, merged.last_name, merged.email) == ("Jane", "Doe", "jd@acme.example")
    assert merged.custom == {"plan": "pro", "seats": 3}
    assert [c.uuid for c in contacts_of(owner, customer.uuid)] == [into.uuid]


def test_a_customers_contacts_through_the_customer(owner, new_customer, data_source):
    customer = new_customer()

    created = chartmogul.Customer.createContact(owner, uuid=customer.uuid, data={
        "data_source_uuid": data_source.uuid, "first_name": "Sam", "email": "sam@acme.example",
    }).get()
    listed = chartmogul.Customer.contacts(owner, uuid=customer.uuid).get()

    assert created.customer_uuid == customer.uuid
    assert [c.uuid for c in listed.entries] == [created.uuid]
    assert listed.has_more is False and listed.cursor is None


def test_creating_a_customer_with_a_primary_contact_creates_the_contact(owner, new_customer):
    customer = new_customer(primary_contact={"first_name": "Pat", "last_name": "Lee", "email": "pat@acme.example",
                                             "title": "CFO"})

    [contact] = contacts_of(owner, customer.uuid)
    assert (contact.first_name, contact.email, contact.title) == ("Pat", "pat@acme.example", "CFO")
    assert contact.customer_external_id == customer.external_id


def test_a_customer_with_an_invalid_primary_contact_is_not_created(http, owner, data_source):
    external_id = unique("cus")
    response = http.post("/v1/customers", json={
        "data_source_uuid": data_source.uuid, "external_id": external_id, "name": "Bad",
        "primary_contact": {"first_name": "Pat", "email": "not-an-email"},
    })

    assert response.status_code == 422, response.text
    assert response.json()["param"].endswith("email")
    assert list(chartmogul.Customer.all(owner, external_id=external_id).get().entries) == []


# --- errors, over raw HTTP ----------------------------------------------------------------

@pytest.mark.parametrize("fields, param", [
    ({"customer_uuid": None}, "customer_uuid"),
    ({"data_source_uuid": None}, "data_source_uuid"),
    ({"customer_uuid": "cus_00000000-0000-4000-8000-000000000000"}, "customer_uuid"),
    ({"data_source_uuid": "ds_00000000-0000-4000-8000-000000000000"}, "data_source_uuid"),
    ({"email": "jane-at-acme"}, "email"),
    ({"linked_in": "https://example.com/in/jane"}, "linked_in"),
    ({"twitter": "https://facebook.com/jane"}, "twitter"),
    ({"position": 0}, "position"),
    ({"position": "first"}, "position"),
    ({"first_name": 12}, "first_name"),
    ({"custom": "Facebook"}, "custom"),
])
def test_an_invalid_create_is_a_422_naming_the_field_and_stores_nothing(http, owner, new_customer, data_source,
                                                                       fields, param):
    customer = new_customer()
    body = {"customer_uuid": customer.uuid, "data_source_uuid": data_source.uuid, "first_name": "Jane", **fields}
    body = {key: value for key, value in body.items() if value is not None}

    response = http.post("/v1/contacts", json=body)

    assert response.status_code == 422, response.text
    error = response.json()
    assert (error["code"], error["param"]) == (422, param)
    assert param in error["message"]
    assert contacts_of(owner, customer.uuid) == []


def test_a_taken_external_id_is_a_422(http, new_customer, new_contact, data_source):
    customer = new_customer()
    taken = new_contact(customer, external_id=unique("con"))
    response = http.post("/v1/contacts", json={"customer_uuid": customer.uuid, "data_source_uuid": data_source.uuid,
                                               "external_id": taken.external_id})
    assert response.status_code == 422 and response.json()["param"] == "external_id"


def test_an_invalid_update_is_a_422_and_changes_nothing(http, owner, new_customer, new_contact):
    contact = new_contact(new_customer(), first_name="Jane")

    response = http.patch(f"/v1/contacts/{contact.uuid}", json={"first_name": "Janet", "twitter": "not a handle!"})

    assert response.status_code == 422 and response.json()["param"] == "twitter"
    assert chartmogul.Contact.retrieve(owner, uuid=contact.uuid).get().first_name == "Jane"
    bad_time = http.patch(f"/v1/contacts/{contact.uuid}", json={"last_seen": "yesterday"})
    assert bad_time.status_code == 422 and bad_time.json()["param"] == "last_seen"


def test_unknown_contacts_and_customers_are_404s(http):
    missing = "con_00000000-0000-4000-8000-000000000000"
    nobody = "cus_00000000-0000-4000-8000-000000000000"
    for method, path in (("GET", f"/v1/contacts/{missing}"), ("PATCH", f"/v1/contacts/{missing}"),
                         ("DELETE", f"/v1/contacts/{missing}"), ("GET", f"/v1/customers/{nobody}/contacts"),
                         ("POST", f"/v1/customers/{nobody}/contacts")):
        kwargs = {"json": {"data_source_uuid": "ds_x"}} if method in ("PATCH", "POST") else {}
        response = http.request(method, path, **kwargs)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["code"] == 404


def test_merge_errors(http, new_customer, new_contact):
    contact = new_contact(new_customer())
    missing = "con_00000000-0000-4000-8000-000000000000"

    into_missing = http.post(f"/v1/contacts/{missing}/merge/{contact.uuid}")
    from_missing = http.post(f"/v1/contacts/{contact.uuid}/merge/{missing}")
    itself = http.post(f"/v1/contacts/{contact.uuid}/merge/{contact.uuid}")

    assert (into_missing.status_code, into_missing.json()["param"]) == (404, "into_uuid")
    assert (from_missing.status_code, from_missing.json()["param"]) == (404, "from_uuid")
    assert (itself.status_code, itself.json()["param"]) == (422, "from_uuid")
    assert http.get(f"/v1/contacts/{contact.uuid}").status_code == 200


def test_bad_paging_is_refused(http):
    out_of_range = http.get("/v1/contacts", params={"per_page": "0"})  # as on every list route: 1..200 or a 422
    assert out_of_range.status_code == 422 and out_of_range.json()["param"] == "per_page"
    assert http.get("/v1/contacts", params={"per_page": "many"}).status_code == 400
    forged = http.get("/v1/contacts", params={"cursor": "%%%"})
    assert forged.status_code == 400 and forged.json()["param"] == "cursor"


def test_keys_and_roles(http, new_customer, data_source):
    customer = new_customer()
    body = {"customer_uuid": customer.uuid, "data_source_uuid": data_source.uuid}
    assert http.get("/v1/contacts", role=None).status_code == 401
    assert http.post("/v1/contacts", role="read_only", json=body).status_code == 403
    assert http.get("/v1/contacts", role="read_only", params={"customer_uuid": customer.uuid}).status_code == 200
    assert http.post("/v1/contacts", role="staff", json=body).status_code == 201


def test_a_list_always_carries_has_more_and_cursor(http):
    body = http.get("/v1/contacts", params={"customer_uuid": "cus_none"}).json()
    assert body == {"entries": [], "has_more": False, "cursor": None}


# --- contacts follow their customer -------------------------------------------------------

def test_contacts_follow_customer_merges_and_deletions(owner, new_customer, new_contact):
    merged_away, survivor, deleted = new_customer(), new_customer(), new_customer()
    moving = new_contact(merged_away, first_name="Mo")
    staying = new_contact(survivor, first_name="Stay")
    doomed = new_contact(deleted, first_name="Doom")

    chartmogul.Customer.merge(owner, data={"from": {"customer_uuid": merged_away.uuid},
                                           "into": {"customer_uuid": survivor.uuid}}).get()
    chartmogul.Customer.destroy(owner, uuid=deleted.uuid).get()

    eventually(lambda: len(contacts_of(owner, survivor.uuid)) == 2)
    moved = chartmogul.Contact.retrieve(owner, uuid=moving.uuid).get()
    assert (moved.customer_uuid, moved.customer_external_id) == (survivor.uuid, survivor.external_id)
    assert {c.uuid for c in contacts_of(owner, survivor.uuid)} == {moving.uuid, staying.uuid}
    eventually(lambda: chartmogul.Contact.all(owner, customer_uuid=deleted.uuid).get().entries == [])
    with pytest.raises(chartmogul.APIError):
        chartmogul.Contact.retrieve(owner, uuid=doomed.uuid).get()


def test_events_published_while_contacts_is_down_are_handled_once_it_is_back(stack, tap, owner, new_customer,
                                                                             new_contact):
    merged_away, survivor, deleted = new_customer(), new_customer(), new_customer()
    moving = [new_contact(merged_away, first_name=f"Mo{n}").uuid for n in range(2)]
    staying = new_contact(survivor, first_name="Stay").uuid
    doomed = [new_contact(deleted, first_name=f"Doom{n}").uuid for n in range(2)]
    everyone = moving + [staying] + doomed
    eventually(lambda: len(tap.about(everyone)) == 5)  # the five contact_created
    tap.events.clear()

    stack.stop_service("contacts")
    try:
        chartmogul.Customer.merge(owner, data={"from": {"customer_uuid": merged_away.uuid},
                                               "into": {"customer_uuid": survivor.uuid}}).get()
        chartmogul.Customer.destroy(owner, uuid=deleted.uuid).get()
        time.sleep(1)
        assert tap.about(everyone) == []  # nothing handled while the service is away
    finally:
        stack.start_service("contacts")
        stack.wait_ready(timeout=60)

    eventually(lambda: len(tap.about(everyone)) >= 4)
    time.sleep(3)  # room for any duplicate to show up
    events = tap.about(everyone)
    counted = Counter((kind, payload["uuid"]) for kind, payload in events)
    assert counted == Counter({("contact_updated", uuid): 1 for uuid in moving}
                              | {("contact_deleted", uuid): 1 for uuid in doomed})
    assert all(payload["reason"] == "customer_merged" for kind, payload in events if kind == "contact_updated")
    assert all(payload["reason"] == "customer_deleted" for kind, payload in events if kind == "contact_deleted")

    assert sorted(c.uuid for c in contacts_of(owner, survivor.uuid)) == sorted(moving + [staying])
    assert contacts_of(owner, merged_away.uuid) == []
    assert contacts_of(owner, deleted.uuid) == []
    for uuid in moving:
        moved = chartmogul.Contact.retrieve(owner, uuid=uuid).get()
        assert moved.customer_external_id == survivor.external_id


# --- positions, the primary contact of a customer update ---------------------------------

def test_positions_are_1_for_the_primary_contact_then_in_creation_order(owner, new_customer, new_contact):
    customer = new_customer(primary_contact={"first_name": "Pat"})
    second = new_contact(customer, first_name="Sam")
    chosen = new_contact(customer, first_name="Lee", position=9)
    third = new_contact(customer, first_name="Kim")

    listed = {c.first_name: c.position for c in contacts_of(owner, customer.uuid)}

    assert listed == {"Pat": 1, "Sam": 2, "Lee": 9, "Kim": 10}
    assert (second.position, chosen.position, third.position) == (2, 9, 10)


def test_a_customer_update_with_a_primary_contact_creates_then_updates_it(owner, new_customer, new_contact):
    customer = new_customer()

    chartmogul.Customer.modify(owner, uuid=customer.uuid, data={
        "name": "Acme Inc", "primary_contact": {"first_name": "Pat", "email": "pat@acme.example", "title": "CFO"}}).get()
    [created] = contacts_of(owner, customer.uuid)
    assert (created.position, created.first_name, created.email, created.title) == (1, "Pat", "pat@acme.example",
                                                                                    "CFO")
    assert created.customer_external_id == customer.external_id

    new_contact(customer, first_name="Sam")
    modified = chartmogul.Customer.modify(owner, uuid=customer.uuid, data={
        "primary_contact": {"title": "CEO", "phone": "+1 555 0100", "linked_in": "https://www.linkedin.com/in/pat",
                            "twitter": "@pat", "notes": "promoted", "last_name": "Lee"}}).get()

    assert modified.name == "Acme Inc"
    contacts = {c.first_name: c for c in contacts_of(owner, customer.uuid)}
    assert set(contacts) == {"Pat", "Sam"}
    primary = contacts["Pat"]
    assert (primary.uuid, primary.position, primary.title, primary.last_name, primary.notes) == (
        created.uuid, 1, "CEO", "Lee", "promoted")
    assert contacts["Sam"].position == 2


def test_a_bad_primary_contact_field_is_a_422_naming_it_and_changes_nothing(http, owner, new_customer, new_contact):
    customer = new_customer()
    new_contact(customer, first_name="Pat")

    response = http.patch(f"/v1/customers/{customer.uuid}", json={
        "name": "Renamed", "primary_contact": {"first_name": "Patricia", "email": "not-an-email"}})

    assert response.status_code == 422, response.text
    assert response.json()["param"] == "primary_contact.email"
    assert chartmogul.Customer.retrieve(owner, uuid=customer.uuid).get().name == "Acme"
    assert [c.first_name for c in contacts_of(owner, customer.uuid)] == ["Pat"]


# --- timestamps, filters, data sources -----------------------------------------------------

@pytest.mark.parametrize("sent", ["2024-01-02T10:00:00-04:00", "2024-01-02T19:30:00+05:30"])
def test_last_seen_with_an_offset_round_trips_in_utc_and_the_event_agrees(http, tap, new_customer, new_contact,
                                                                         sent):
    contact = new_contact(new_customer())

    patched = http.patch(f"/v1/contacts/{contact.uuid}", json={"last_seen": sent})
    fetched = http.get(f"/v1/contacts/{contact.uuid}")

    assert patched.status_code == 200, patched.text
    assert patched.json()["last_seen"] == fetched.json()["last_seen"] == "2024-01-02T14:00:00Z"
    [update] = eventually(lambda: [p for kind, p in tap.about([contact.uuid]) if kind == "contact_updated"])
    assert update["contact"]["last_seen"] == update["changes"]["last_seen"] == "2024-01-02T14:00:00Z"


def test_the_gateway_passes_every_filter_to_the_service(http, new_customer, new_contact):
    customer = new_customer()
    mine = new_contact(customer, email="Kim@Acme.example", external_id=unique("con"))
    new_contact(customer, email="other@acme.example")

    by_email = http.get("/v1/contacts", params={"email": "kim@ACME.example", "customer_uuid": customer.uuid,
                                                "not_a_filter": "ignored"})
    by_id = http.get("/v1/contacts", params={"external_id": mine.external_id, "per_page": "1"})

    assert [c["uuid"] for c in by_email.json()["entries"]] == [mine.uuid]
    assert [c["uuid"] for c in by_id.json()["entries"]] == [mine.uuid]


def test_deleting_a_data_source_deletes_its_contacts(owner, tap, new_customer, new_contact):
    customer = new_customer()
    elsewhere = chartmogul.DataSource.create(owner, data={"name": unique("contacts-doomed")}).get()
    kept = new_contact(customer, first_name="Kept")
    doomed = chartmogul.Contact.create(owner, data={"customer_uuid": customer.uuid,
                                                    "data_source_uuid": elsewhere.uuid, "first_name": "Doomed"}).get()

    chartmogul.DataSource.destroy(owner, uuid=elsewhere.uuid).get()

    eventually(lambda: [c.uuid for c in contacts_of(owner, customer.uuid)] == [kept.uuid])
    [deleted] = eventually(lambda: [p for kind, p in tap.about([doomed.uuid]) if kind == "contact_deleted"])
    assert (deleted["reason"], deleted["data_source_uuid"]) == ("data_source_deleted", elsewhere.uuid)
