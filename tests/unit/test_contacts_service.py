"""The contacts service with nameko's worker_factory: a real SQLite database behind a real unit
of work, hand-written fakes for the customers and billing_sync services; events are read back
from the outbox."""
import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import func, select

from roster.errors import BadRequest, NotFound, ServiceUnavailable, ValidationFailed
from roster.events import envelope
from roster.testing import recorded, unit_of_work
from services.contacts.models import UNIQUE_RULES, Base, Contact, bookkeeping
from services.contacts.service import ContactsService

DS = "ds_11111111-1111-1111-1111-111111111111"
OTHER_DS = "ds_22222222-2222-2222-2222-222222222222"


class FakeCustomers:
    """The customers service's `get_customer`, over a dict of known customers."""

    def __init__(self):
        self.customers = {}
        self.calls = 0
        self.down = False

    def add(self, uuid, external_id, data_source_uuid=DS):
        self.customers[uuid] = {"uuid": uuid, "external_id": external_id, "external_ids": [external_id],
                                "data_source_uuid": data_source_uuid, "data_source_uuids": [data_source_uuid]}

    def get_survivor(self, uuid):
        raise NotFound(f"Customer {uuid} was not merged", param="uuid")

    def get_customer(self, uuid):
        self.calls += 1
        if self.down:
            raise ServiceUnavailable("The customers service is not running")
        if uuid not in self.customers:
            raise NotFound(f"Customer {uuid} not found", param="uuid")
        return self.customers[uuid]


class FakeBilling:
    def __init__(self, data_sources=()):
        self.data_sources = set(data_sources)

    def get_data_source(self, uuid):
        if uuid not in self.data_sources:
            raise NotFound(f"Data source {uuid} not found", param="uuid")
        return {"uuid": uuid, "name": "other", "system": "Import API"}


@pytest.fixture
def uow(tmp_path):
    return unit_of_work(Base, bookkeeping, tmp_path, unique_rules=UNIQUE_RULES)


@pytest.fixture
def sessions(uow):
    return uow.sessions


@pytest.fixture
def customers():
    fake = FakeCustomers()
    fake.add("cus_a", "ext-a")
    fake.add("cus_b", "ext-b")
    return fake


class Outbox:
    """Reads back the events the service committed to its outbox."""

    def __init__(self, uow):
        self.uow = uow

    def of_type(self, event_type):
        return recorded(self.uow, event_type)

    @property
    def events(self):
        return recorded(self.uow)


@pytest.fixture
def outbox(uow):
    return Outbox(uow)


@pytest.fixture
def service(uow, customers):
    return worker_factory(ContactsService, uow=uow, customers_rpc=customers, billing_rpc=FakeBilling({OTHER_DS}))


def contact_count(sessions, **filters):
    with sessions() as session:
        query = select(func.count(Contact.id))
        for name, value in filters.items():
            query = query.where(getattr(Contact, name) == value)
        return session.scalar(query)


def new_contact(service, customer_uuid="cus_a", **fields):
    return service.create_contact({"customer_uuid": customer_uuid, "data_source_uuid": DS, **fields})


def test_health(service):
    assert service.health() == {"service": "contacts", "status": "ok", "database": "ok"}


def test_create_stores_the_contact_and_records_contact_created(service, outbox):
    created = new_contact(service, first_name="Jane", email="Jane@Example.com", position=1,
                          custom=[{"key": "Facebook", "value": "fb.com/jane"}])
    assert created["uuid"].startswith("con_")
    assert created["customer_uuid"] == "cus_a"
    assert created["customer_external_id"] == "ext-a"
    assert created["custom"] == {"Facebook": "fb.com/jane"}
    assert service.get_contact(created["uuid"]) == created
    [event] = outbox.of_type("contact_created")
    assert event["uuid"] == created["uuid"] and event["contact"] == created


def test_create_for_an_unknown_customer_is_a_422_and_stores_nothing(service, sessions, outbox):
    with pytest.raises(ValidationFailed) as caught:
        new_contact(service, customer_uuid="cus_nobody")
    assert caught.value.param == "customer_uuid"
    assert contact_count(sessions) == 0 and outbox.events == []


def test_create_checks_the_fields_before_asking_for_the_customer(service, customers, sessions):
    with pytest.raises(ValidationFailed) as caught:
        new_contact(service, twitter="https://example.com/jane")
    assert caught.value.param == "twitter"
    assert customers.calls == 0 and contact_count(sessions) == 0


def test_create_in_an_unknown_data_source_is_a_422(service):
    with pytest.raises(ValidationFailed) as caught:
        service.create_contact({"customer_uuid": "cus_a", "data_source_uuid": "ds_nope"})
    assert caught.value.param == "data_source_uuid"
    assert service.create_contact({"customer_uuid": "cus_a", "data_source_uuid": OTHER_DS})["uuid"]


def test_an_external_id_names_one_contact_per_data_source(service):
    new_contact(service, external_id="c-1")
    with pytest.raises(ValidationFailed) as caught:
        new_contact(service, customer_uuid="cus_b", external_id="c-1")
    assert caught.value.param == "external_id"


def test_validate_contact_names_the_field_with_the_prefix(service):
    service.validate_contact({"email": "jane@example.com"}, "primary_contact.")
    with pytest.raises(ValidationFailed) as caught:
        service.validate_contact({"position": 0}, "primary_contact.")
    assert caught.value.param == "primary_contact.position"


def test_list_filters_and_pages_with_a_cursor(service):
    made = [new_contact(service, email=f"p{n}@example.com") for n in range(5)]
    other = new_contact(service, customer_uuid="cus_b", email="P0@example.com")
    first = service.list_contacts({"customer_uuid": "cus_a"}, None, 2)
    assert [c["uuid"] for c in first["entries"]] == [c["uuid"] for c in made[:2]]
    assert first["has_more"] is True and first["cursor"]
    rest = service.list_contacts({"customer_uuid": "cus_a"}, first["cursor"], 10)
    assert [c["uuid"] for c in rest["entries"]] == [c["uuid"] for c in made[2:]]
    assert rest == {**rest, "has_more": False, "cursor": None}
    by_email = service.list_contacts({"email": "p0@EXAMPLE.com"})
    assert {c["uuid"] for c in by_email["entries"]} == {made[0]["uuid"], other["uuid"]}
    assert service.list_contacts({"customer_external_id": "ext-b"})["entries"] == [other]


def test_a_forged_cursor_is_a_400(service):
    with pytest.raises(BadRequest) as caught:
        service.list_contacts({}, "not-a-cursor!", None)
    assert caught.value.param == "cursor"


def test_update_sets_fields_and_merges_custom_attributes(service, outbox):
    contact = new_contact(service, first_name="Jane", custom={"a": 1, "b": 2})
    updated = service.update_contact(contact["uuid"], {"title": "CTO", "custom": {"b": None, "c": 3},
                                                       "last_seen": "2024-05-01 10:00:00"})
    assert updated["title"] == "CTO" and updated["first_name"] == "Jane"
    assert updated["custom"] == {"a": 1, "c": 3}
    assert updated["last_seen"] == "2024-05-01T10:00:00Z"
    [event] = outbox.of_type("contact_updated")
    assert set(event["changes"]) == {"title", "custom", "last_seen"}


def test_an_invalid_update_changes_nothing(service):
    contact = new_contact(service, first_name="Jane")
    with pytest.raises(ValidationFailed):
        service.update_contact(contact["uuid"], {"first_name": "Janet", "linked_in": "https://example.com"})
    assert service.get_contact(contact["uuid"])["first_name"] == "Jane"


def test_delete_removes_the_contact_and_records_contact_deleted(service, outbox):
    contact = new_contact(service)
    service.delete_contact(contact["uuid"])
    with pytest.raises(NotFound):
        service.get_contact(contact["uuid"])
    [event] = outbox.of_type("contact_deleted")
    assert event["uuid"] == contact["uuid"] and event["reason"] == "deleted"


def test_merge_keeps_into_fills_its_gaps_and_deletes_from(service, outbox):
    into = new_contact(service, first_name="Jane", custom={"plan": "pro"})
    merged_from = new_contact(service, first_name="Janet", last_name="Doe", external_id="c-9",
                              custom={"plan": "free", "channel": "Twitter"})
    merged = service.merge_contacts(into["uuid"], merged_from["uuid"])
    assert merged["uuid"] == into["uuid"]
    assert (merged["first_name"], merged["last_name"], merged["external_id"]) == ("Jane", "Doe", "c-9")
    assert merged["custom"] == {"plan": "pro", "channel": "Twitter"}
    with pytest.raises(NotFound):
        service.get_contact(merged_from["uuid"])
    [event] = outbox.of_type("contact_merged")
    assert (event["into_uuid"], event["from_uuid"]) == (into["uuid"], merged_from["uuid"])
    assert event["customer_uuid"] == event["from_customer_uuid"] == into["customer_uuid"]


def test_merge_errors_name_the_missing_side(service):
    contact = new_contact(service)
    with pytest.raises(NotFound) as caught:
        service.merge_contacts(contact["uuid"], "con_missing")
    assert caught.value.param == "from_uuid"
    with pytest.raises(ValidationFailed):
        service.merge_contacts(contact["uuid"], contact["uuid"])


def test_customer_merged_moves_contacts_once(service, sessions, outbox, customers):
    moved = [new_contact(service, customer_uuid="cus_a") for _ in range(2)]
    event = envelope(from_uuid="cus_a", into_uuid="cus_b", moved_external_ids=[])
    service.handle_customer_merged(event)
    service.handle_customer_merged(event)  # a redelivery
    assert contact_count(sessions, customer_uuid="cus_b", customer_external_id="ext-b") == 2
    assert contact_count(sessions, customer_uuid="cus_a") == 0
    updates = outbox.of_type("contact_updated")
    assert sorted(u["uuid"] for u in updates) == sorted(c["uuid"] for c in moved)
    assert all(u["reason"] == "customer_merged" for u in updates)


def test_customer_merged_takes_the_survivors_external_id_from_its_contacts(service, sessions, customers):
    new_contact(service, customer_uuid="cus_a")
    new_contact(service, customer_uuid="cus_b")
    customers.down = True  # no RPC needed: the survivor's contacts know its external id
    service.handle_customer_merged(envelope(from_uuid="cus_a", into_uuid="cus_b"))
    assert contact_count(sessions, customer_uuid="cus_b", customer_external_id="ext-b") == 2


def test_customer_merged_waits_for_the_customers_service_when_it_must_ask(service, sessions, customers):
    new_contact(service, customer_uuid="cus_a")
    customers.down = True
    event = envelope(from_uuid="cus_a", into_uuid="cus_b")
    with pytest.raises(ServiceUnavailable):  # the message goes back on the queue
        service.handle_customer_merged(event)
    assert contact_count(sessions, customer_uuid="cus_a") == 1
    customers.down = False
    service.handle_customer_merged(event)
    assert contact_count(sessions, customer_uuid="cus_b") == 1


def test_customer_deleted_deletes_its_contacts_once(service, sessions, outbox):
    gone = [new_contact(service, customer_uuid="cus_a") for _ in range(2)]
    kept = new_contact(service, customer_uuid="cus_b")
    event = envelope(uuid="cus_a", external_ids=["ext-a"], data_source_uuids=[DS])
    service.handle_customer_deleted(event)
    service.handle_customer_deleted(event)  # a redelivery
    assert contact_count(sessions) == 1
    assert service.get_contact(kept["uuid"])["uuid"] == kept["uuid"]
    deletions = outbox.of_type("contact_deleted")
    assert sorted(d["uuid"] for d in deletions) == sorted(c["uuid"] for c in gone)
    assert all(d["reason"] == "customer_deleted" for d in deletions)


def test_a_merge_into_a_customer_deleted_meanwhile_deletes_the_contacts(service, sessions):
    """The survivor's deletion handled before the merge (they travel on different queues)."""
    new_contact(service, customer_uuid="cus_a")
    new_contact(service, customer_uuid="cus_b")
    service.handle_customer_deleted(envelope(uuid="cus_b", external_ids=["ext-b"], data_source_uuids=[DS]))
    service.handle_customer_merged(envelope(from_uuid="cus_a", into_uuid="cus_b"))
    assert contact_count(sessions) == 0


def test_merges_handled_out_of_order_land_contacts_on_the_last_survivor(service, sessions, customers):
    customers.add("cus_c", "ext-c")
    new_contact(service, customer_uuid="cus_a")
    new_contact(service, customer_uuid="cus_b")
    service.handle_customer_merged(envelope(from_uuid="cus_b", into_uuid="cus_c"))  # second merge first
    service.handle_customer_merged(envelope(from_uuid="cus_a", into_uuid="cus_b"))
    assert contact_count(sessions, customer_uuid="cus_c", customer_external_id="ext-c") == 2


def test_no_contact_is_created_for_a_customer_this_service_knows_is_gone(service, customers, sessions):
    """The customer was fetched before its deletion or merge was handled here."""
    service.handle_customer_deleted(envelope(uuid="cus_a", external_ids=["ext-a"], data_source_uuids=[DS]))
    service.handle_customer_merged(envelope(from_uuid="cus_b", into_uuid="cus_c"))
    for customer_uuid in ("cus_a", "cus_b"):  # the fake still answers for both
        with pytest.raises(ValidationFailed) as caught:
            new_contact(service, customer_uuid=customer_uuid)
        assert caught.value.param == "customer_uuid"
    assert contact_count(sessions) == 0


# --- positions ------------------------------------------------------------------------------

def test_positions_are_1_for_the_first_contact_then_in_creation_order_unless_sent(service):
    first, second = new_contact(service), new_contact(service)
    chosen = new_contact(service, position=7)
    after = new_contact(service)
    other_customer = new_contact(service, customer_uuid="cus_b")
    assert [c["position"] for c in (first, second, chosen, after, other_customer)] == [1, 2, 7, 8, 1]


def test_an_update_with_a_null_position_keeps_the_position(service):
    contact = new_contact(service)
    assert service.update_contact(contact["uuid"], {"position": None, "title": "CTO"})["position"] == 1
    assert service.update_contact(contact["uuid"], {"position": 3})["position"] == 3


def test_contacts_moved_by_a_customer_merge_follow_the_survivors_own(service, outbox):
    survivors = [new_contact(service, customer_uuid="cus_b") for _ in range(2)]
    moved = [new_contact(service, customer_uuid="cus_a") for _ in range(2)]
    service.handle_customer_merged(envelope(from_uuid="cus_a", into_uuid="cus_b", into_external_id="ext-b"))
    positions = {c["uuid"]: service.get_contact(c["uuid"])["position"] for c in survivors + moved}
    assert [positions[c["uuid"]] for c in survivors + moved] == [1, 2, 3, 4]
    assert {u["changes"]["position"] for u in outbox.of_type("contact_updated")} == {3, 4}


# --- the primary contact of a customer update ------------------------------------------------

def test_set_primary_contact_creates_it_at_position_1_when_the_customer_has_none(service, outbox):
    created = service.set_primary_contact("cus_a", {"first_name": "Pat", "email": "pat@example.com",
                                                    "external_id": "ignored", "position": 9})
    assert (created["position"], created["first_name"], created["email"]) == (1, "Pat", "pat@example.com")
    assert (created["customer_external_id"], created["data_source_uuid"], created["external_id"]) == ("ext-a", DS, None)
    assert [e["uuid"] for e in outbox.of_type("contact_created")] == [created["uuid"]]


def test_set_primary_contact_updates_the_contact_at_position_1(service, outbox):
    primary = new_contact(service, first_name="Pat", title="CFO")
    other = new_contact(service, first_name="Sam")
    updated = service.set_primary_contact("cus_a", {"title": "CEO", "phone": "+1 555"})
    assert updated["uuid"] == primary["uuid"]
    assert (updated["first_name"], updated["title"], updated["phone"]) == ("Pat", "CEO", "+1 555")
    assert service.get_contact(other["uuid"]) == other
    [event] = outbox.of_type("contact_updated")
    assert event["changes"] == {"title": "CEO", "phone": "+1 555"}


def test_a_bad_primary_contact_field_is_named_and_changes_nothing(service, sessions, outbox):
    new_contact(service, first_name="Pat")
    for check in (service.check_primary_contact, lambda fields: service.set_primary_contact("cus_b", fields)):
        with pytest.raises(ValidationFailed) as caught:
            check({"first_name": "Patricia", "email": "not-an-email"})
        assert caught.value.param == "primary_contact.email"
        assert caught.value.message.startswith("primary_contact.email: ")
    assert contact_count(sessions) == 1 and outbox.of_type("contact_updated") == []


def test_no_primary_contact_for_a_customer_known_to_be_deleted(service, sessions):
    service.handle_customer_deleted(envelope(uuid="cus_a", external_ids=["ext-a"], data_source_uuids=[DS]))
    with pytest.raises(ValidationFailed) as caught:
        service.set_primary_contact("cus_a", {"first_name": "Pat"})
    assert caught.value.param == "customer_uuid"
    assert contact_count(sessions) == 0


# --- data sources ---------------------------------------------------------------------------

def test_data_source_deleted_deletes_its_contacts_once(service, sessions, outbox):
    gone = [new_contact(service, data_source_uuid=OTHER_DS), new_contact(service, customer_uuid="cus_b",
                                                                          data_source_uuid=OTHER_DS)]
    kept = new_contact(service)
    event = envelope(uuid=OTHER_DS, name="other", system="Import API")
    service.handle_data_source_deleted(event)
    service.handle_data_source_deleted(event)  # a redelivery
    assert [c["uuid"] for c in service.list_contacts({})["entries"]] == [kept["uuid"]]
    deletions = outbox.of_type("contact_deleted")
    assert sorted(d["uuid"] for d in deletions) == sorted(c["uuid"] for c in gone)
    assert {(d["reason"], d["data_source_uuid"]) for d in deletions} == {("data_source_deleted", OTHER_DS)}


# --- external ids, filters, odd input -------------------------------------------------------

def test_a_blank_external_id_is_no_external_id(service):
    first, second = new_contact(service, external_id=""), new_contact(service, external_id="  ")
    assert first["external_id"] is None and second["external_id"] is None


def test_an_external_id_taken_by_an_update_is_a_422_naming_it(service):
    new_contact(service, external_id="c-1")
    other = new_contact(service, external_id="c-2")
    with pytest.raises(ValidationFailed) as caught:
        service.update_contact(other["uuid"], {"external_id": "c-1"})
    assert caught.value.param == "external_id"
    assert service.get_contact(other["uuid"])["external_id"] == "c-2"


def test_the_list_applies_only_the_filters_it_knows(service):
    made = new_contact(service, email="Jane@Example.com")
    assert service.list_contacts({"email": " JANE@example.com ", "unknown": "x"})["entries"] == [made]
    assert service.list_contacts({"email": ""})["entries"] == [made]
    with pytest.raises(ValidationFailed) as caught:
        service.list_contacts({"external_id": "a\x00b"})
    assert caught.value.param == "external_id"


def test_a_uuid_that_cannot_exist_is_a_404(service):
    for call in (service.get_contact, service.delete_contact, lambda uuid: service.update_contact(uuid, {})):
        with pytest.raises(NotFound):
            call("con_\x00")
    with pytest.raises(NotFound) as caught:
        service.merge_contacts(new_contact(service)["uuid"], "x" * 500)
    assert caught.value.param == "from_uuid"


@pytest.mark.parametrize("value", ["2024-01-02T10:00:00-04:00", "2024-01-02T19:30:00+05:30"])
def test_last_seen_with_an_offset_is_stored_answered_and_announced_in_utc(service, outbox, value):
    contact = new_contact(service)
    updated = service.update_contact(contact["uuid"], {"last_seen": value})
    assert updated["last_seen"] == service.get_contact(contact["uuid"])["last_seen"] == "2024-01-02T14:00:00Z"
    [event] = outbox.of_type("contact_updated")
    assert event["contact"]["last_seen"] == event["changes"]["last_seen"] == "2024-01-02T14:00:00Z"


def test_a_second_merge_of_the_same_pair_is_refused(service):
    first, second = new_contact(service, first_name="A"), new_contact(service, first_name="B")
    service.merge_contacts(first["uuid"], second["uuid"])
    with pytest.raises(NotFound) as caught:
        service.merge_contacts(second["uuid"], first["uuid"])
    assert caught.value.param == "into_uuid"
    assert service.get_contact(first["uuid"])["first_name"] == "A"


def test_a_customer_merge_uses_the_survivors_external_id_this_service_already_knows(service, sessions, customers):
    new_contact(service, customer_uuid="cus_b")  # cus_b is known to be ext-b from here on
    service.delete_contact(service.list_contacts({"customer_uuid": "cus_b"})["entries"][0]["uuid"])
    new_contact(service, customer_uuid="cus_a")
    customers.down = True
    service.handle_customer_merged(envelope(from_uuid="cus_a", into_uuid="cus_b"))
    assert contact_count(sessions, customer_uuid="cus_b", customer_external_id="ext-b") == 1
