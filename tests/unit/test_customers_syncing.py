"""sync_customer, overrides and the duplicate-merge rule of the customers service, on a real
SQLite database (services/customers/syncing.py and commands.sync_customer / merge_duplicates)."""
import pytest
from nameko.testing.services import worker_factory

from roster.errors import NotFound, ValidationFailed
from roster.testing import recorded, recorded_fields, unit_of_work
from services.customers import commands, syncing
from services.customers.models import UNIQUE_RULES, Base, bookkeeping
from services.customers.service import CustomersService

STRIPE = "ds_stripe"
IMPORTS = "ds_imports"


class FakeBilling:
    def get_data_source(self, uuid):
        systems = {STRIPE: "Stripe", IMPORTS: "Import API"}
        if uuid not in systems:
            raise NotFound(f"Data source {uuid} not found")
        return {"uuid": uuid, "system": systems[uuid]}


@pytest.fixture()
def service(tmp_path):
    return worker_factory(CustomersService, uow=unit_of_work(Base, bookkeeping, tmp_path, unique_rules=UNIQUE_RULES),
                          billing_rpc=FakeBilling())


def record(external_id="cus_1", **fields):
    """A Stripe connector's customer_record() with its data source."""
    base = {"data_source_uuid": STRIPE, "external_id": external_id, "name": "Acme", "email": "ops@acme.io",
            "company": "Acme Inc", "country": "DE", "state": None, "city": "Berlin", "zip": "10115",
            "website_url": None, "lead_created_at": "2024-01-02T03:04:05Z", "billing_system_type": "Stripe",
            "billing_system_url": f"https://dashboard.stripe.com/customers/{external_id}",
            "attributes": {"stripe": {"plan": "pro"}}}
    return {**base, **fields}


def events(service, event_type):
    return recorded_fields(service.uow, event_type)


# ---- sync_customer --------------------------------------------------------------------------

def test_a_new_customer_is_created_with_its_stripe_attributes(service):
    synced = service.sync_customer(record())
    assert synced["sync_outcome"] == "created"
    stored = service.get_customer(synced["uuid"])
    assert {**stored, "sync_outcome": "created"} == synced
    assert stored["billing_system_type"] == "Stripe" and stored["attributes"]["stripe"] == {"plan": "pro"}
    assert stored["city"] == "Berlin" and stored["external_id"] == "cus_1"
    assert [event["reason"] for event in events(service, "customer_created")] == ["synced"]


def test_a_resync_without_change_writes_nothing_and_records_nothing(service):
    first = service.sync_customer(record())
    again = service.sync_customer(record())
    assert again["sync_outcome"] == "unchanged" and again["updated_at"] == first["updated_at"]
    assert events(service, "customer_updated") == []


def test_a_change_upstream_updates_the_fields_and_replaces_stripe_attributes(service):
    first = service.sync_customer(record(attributes={"stripe": {"plan": "pro", "seats": 3}}))
    service.add_tags(first["uuid"], ["vip"])
    changed = service.sync_customer(record(name="Acme 2", attributes={"stripe": {"tier": "gold"}}))
    assert changed["sync_outcome"] == "updated" and changed["uuid"] == first["uuid"]
    assert changed["name"] == "Acme 2" and changed["attributes"]["stripe"] == {"tier": "gold"}
    assert changed["attributes"]["tags"] == ["vip"]  # sync never touches tags
    updates = events(service, "customer_updated")
    assert len(updates) == 2 and set(updates[-1]["changes"]) >= {"name", "attributes"}


def test_overridden_fields_are_not_overwritten_by_a_sync(service):
    first = service.sync_customer(record())
    service.update_customer(first["uuid"], {"company": "Hand Made", "city": "Paris",
                                            "overrides": {"company": True, "address": True}})
    synced = service.sync_customer(record(name="Renamed"))
    assert synced["company"] == "Hand Made" and synced["city"] == "Paris" and synced["zip"] == "10115"
    assert synced["name"] == "Renamed"
    service.update_customer(first["uuid"], {"overrides": {"address": False}})
    assert service.sync_customer(record())["city"] == "Berlin"


def test_a_hand_edit_without_overrides_is_overwritten_by_the_next_sync(service):
    first = service.sync_customer(record())
    service.update_customer(first["uuid"], {"company": "Hand Made"})
    assert service.sync_customer(record())["company"] == "Acme Inc"


def test_a_customer_deleted_in_roster_is_created_again(service):
    first = service.sync_customer(record())
    service.delete_customer(first["uuid"])
    again = service.sync_customer(record())
    assert again["sync_outcome"] == "created" and again["uuid"] != first["uuid"]


def test_a_merged_away_external_id_answers_the_surviving_customer(service):
    stripe = service.sync_customer(record())
    other = service.create_customer({"data_source_uuid": IMPORTS, "external_id": "imp", "name": "Mine"})
    service.merge_customers({"customer_uuid": stripe["uuid"]}, {"customer_uuid": other["uuid"]})
    synced = service.sync_customer(record(name="Acme 3"))
    assert synced["uuid"] == other["uuid"] and synced["name"] == "Acme 3"
    assert service.list_customers({})["entries"][0]["uuid"] == other["uuid"]
    assert len(service.list_customers({})["entries"]) == 1


def test_two_records_of_one_source_merged_do_not_overwrite_each_other(service):
    a = service.sync_customer(record("cus_a", name="A"))
    b = service.sync_customer(record("cus_b", name="B"))
    service.merge_customers({"customer_uuid": a["uuid"]}, {"customer_uuid": b["uuid"]})
    assert service.sync_customer(record("cus_a", name="A"))["name"] == "B"
    assert service.sync_customer(record("cus_a", name="A"))["sync_outcome"] == "unchanged"


def test_missing_optional_keys_leave_fields_alone_and_the_system_comes_from_the_source(service):
    created = service.sync_customer({"data_source_uuid": IMPORTS, "external_id": "row1", "name": "CSV Co",
                                     "city": "Rome"})
    assert created["billing_system_type"] == "Import API"
    synced = service.sync_customer({"data_source_uuid": IMPORTS, "external_id": "row1", "name": "CSV Co 2"})
    assert synced["city"] == "Rome" and synced["name"] == "CSV Co 2"


@pytest.mark.parametrize("bad, param", [
    ({"external_id": ""}, "external_id"),
    ({"email": "not-an-email"}, "email"),
    ({"country": "Germany"}, "country"),
    ({"attributes": {"stripe": ["x"]}}, "attributes.stripe"),
])
def test_bad_values_are_a_422_naming_the_field_and_store_nothing(service, bad, param):
    with pytest.raises(ValidationFailed) as failure:
        service.sync_customer(record(**bad))
    assert failure.value.param == param
    assert service.list_customers({})["entries"] == []


def test_losing_the_insert_race_updates_the_winners_customer(service, monkeypatch):
    """The second of two concurrent first syncs finds no customer, then the id taken: it must not
    make a second customer (simulated: the look-up misses once, as it would before the winner commits)."""
    winner = service.sync_customer(record())
    real = commands.store.id_by_external_id

    def look_up(session, source, external_id, _misses=[None]):
        if _misses:
            return _misses.pop()
        return real(session, source, external_id)
    monkeypatch.setattr(commands.store, "id_by_external_id", look_up)
    loser = service.sync_customer(record(name="Acme B"))
    assert loser["uuid"] == winner["uuid"] and loser["sync_outcome"] == "updated"
    assert len(service.list_customers({})["entries"]) == 1


# ---- overrides ----------------------------------------------------------------------------

def test_overrides_are_shown_only_when_asked(service):
    customer = service.sync_customer(record())
    service.update_customer(customer["uuid"], {"overrides": {"company": True, "attributes": {"custom": {"ch": True}}}})
    assert "overrides" not in service.get_customer(customer["uuid"])
    assert service.get_customer(customer["uuid"], True)["overrides"] == {"company": True,
                                                                         "attributes": {"custom": {"ch": True}}}


def test_an_unknown_override_is_a_422_naming_it(service):
    customer = service.sync_customer(record())
    with pytest.raises(ValidationFailed) as failure:
        service.update_customer(customer["uuid"], {"name": "X", "overrides": {"colour": True}})
    assert failure.value.param == "overrides.colour"
    assert service.get_customer(customer["uuid"])["name"] == "Acme"


def test_an_overridden_custom_attribute_survives_a_remove_until_unmarked(service):
    customer = service.sync_customer(record())
    service.add_custom_attributes(customer["uuid"], [{"type": "String", "key": "channel", "value": "x"}],
                                  {"attributes": {"custom": {"channel": True}}})
    assert service.remove_custom_attributes(customer["uuid"], ["channel"]) == {"channel": "x"}
    assert service.remove_custom_attributes(customer["uuid"], ["channel"],
                                            {"attributes": {"custom": {"channel": False}}}) == {}


def test_overrides_after_marks_unmarks_and_refuses_non_booleans():
    assert syncing.overrides_after({"name": True}, {"company": True, "name": False}) == {"company": True}
    with pytest.raises(ValidationFailed) as failure:
        syncing.overrides_after({}, {"company": "yes"})
    assert failure.value.param == "overrides.company"
    with pytest.raises(ValidationFailed) as failure:
        syncing.overrides_after({}, {"attributes": {"tags": {}}})
    assert failure.value.param == "overrides.attributes"


# ---- duplicates -----------------------------------------------------------------------------

def row(id, email, system):
    return {"id": id, "email_lower": email, "billing_system_type": system}


def test_a_custom_duplicate_goes_into_the_oldest_connector_record():
    me = row(5, "a@x.io", "Import API")
    assert syncing.duplicate_merges(me, [me, row(3, "a@x.io", "Stripe"), row(2, "a@x.io", "Stripe")]) == [(5, 2)]


def test_a_connector_record_takes_every_custom_duplicate_but_not_other_connector_records():
    me = row(1, "a@x.io", "Stripe")
    others = [me, row(2, "a@x.io", "Import API"), row(3, "a@x.io", "Stripe"), row(4, "a@x.io", "Custom")]
    assert syncing.duplicate_merges(me, others) == [(2, 1), (4, 1)]


def test_no_email_or_no_connector_means_no_merge():
    assert syncing.duplicate_merges(row(1, "", "Stripe"), [row(2, "", "Import API")]) == []
    assert syncing.duplicate_merges(row(1, "a@x.io", "Import API"), [row(2, "a@x.io", "Import API")]) == []


def test_merge_duplicates_in_both_orders_and_only_once(service):
    custom = service.create_customer({"data_source_uuid": IMPORTS, "external_id": "dup", "email": "OPS@acme.io"})
    stripe = service.sync_customer(record())
    created = events(service, "customer_created")
    merged = commands.merge_duplicates(service.uow, created[0])  # the custom one's event: into Stripe's
    assert [m["from_uuid"] for m in merged] == [custom["uuid"]] and merged[0]["into"]["uuid"] == stripe["uuid"]
    assert commands.merge_duplicates(service.uow, created[1]) == []  # the Stripe one's: nothing left
    assert [c["uuid"] for c in service.list_customers({})["entries"]] == [stripe["uuid"]]
    late = service.create_customer({"data_source_uuid": IMPORTS, "external_id": "dup2", "email": "ops@acme.io"})
    stripe_event = events(service, "customer_created")[1]
    assert [m["from_uuid"] for m in commands.merge_duplicates(service.uow, stripe_event)] == [late["uuid"]]


def test_an_unmerged_customer_is_not_merged_back(service):
    stripe = service.sync_customer(record())
    custom = service.create_customer({"data_source_uuid": IMPORTS, "external_id": "dup", "email": "ops@acme.io"})
    commands.merge_duplicates(service.uow, events(service, "customer_created")[1])
    service.unmerge_customer({"customer_uuid": stripe["uuid"], "data_source_uuid": IMPORTS, "external_id": "dup"})
    unmerged = events(service, "customer_created")[-1]
    assert unmerged["reason"] == "unmerged" and commands.merge_duplicates(service.uow, unmerged) == []
    assert custom["uuid"] != unmerged["customer"]["uuid"]


def test_an_email_change_makes_a_duplicate(service):
    stripe = service.sync_customer(record())
    custom = service.create_customer({"data_source_uuid": IMPORTS, "external_id": "dup", "email": "x@y.io"})
    assert commands.merge_duplicates(service.uow, events(service, "customer_created")[1]) == []
    service.update_customer(custom["uuid"], {"email": "ops@acme.io"})
    update = [e for e in events(service, "customer_updated") if e["uuid"] == custom["uuid"]][-1]
    assert commands.merge_duplicates(service.uow, update)[0]["into"]["uuid"] == stripe["uuid"]


def test_only_a_creation_or_email_change_that_may_call_for_a_merge_cues_a_duplicate_check(service):
    plain = service.create_customer({"data_source_uuid": IMPORTS, "external_id": "plain"})
    service.update_customer(plain["uuid"], {"name": "Renamed"})
    assert events(service, commands.DUPLICATE_CHECK) == []  # no email: nothing for this service to take off the bus

    custom = service.create_customer({"data_source_uuid": IMPORTS, "external_id": "dup", "email": "OPS@acme.io"})
    stripe = service.sync_customer(record())
    service.update_customer(plain["uuid"], {"email": "ops@acme.io"})
    assert events(service, commands.DUPLICATE_CHECK) == [{"uuid": custom["uuid"]}, {"uuid": stripe["uuid"]},
                                                         {"uuid": plain["uuid"]}]

    cue = recorded(service.uow, commands.DUPLICATE_CHECK)[0]  # as the handler gets it, envelope and all
    assert [m["from_uuid"] for m in commands.merge_duplicates(service.uow, cue)] == [custom["uuid"]]
    service.unmerge_customer({"customer_uuid": stripe["uuid"], "data_source_uuid": IMPORTS, "external_id": "dup"})
    assert len(events(service, commands.DUPLICATE_CHECK)) == 3  # the user split them: no cue to merge them back
