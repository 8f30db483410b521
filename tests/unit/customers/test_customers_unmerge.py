"""Unmerges in the customers service: the pure rules (services/customers/merges.py) and the
command on a real SQLite database, events read back from the outbox."""
from datetime import datetime, timezone

import pytest
from sqlalchemy import delete, select

from roster.errors import Conflict, NotFound, ValidationFailed
from roster.testing import recorded_fields, unit_of_work, with_idempotency_key
from roster.uow import Replay
from services.customers import commands, merges
from services.customers.domain import Attribute
from services.customers.models import UNIQUE_RULES, Base, MergedCustomer, bookkeeping
from tests.unit.customers.fakes import SOURCE, FakeBilling


def create(service, external_id, **fields):
    return service.create_customer({"data_source_uuid": SOURCE, "external_id": external_id, **fields})


def merge(service, from_customer, into_customer):
    return service.merge_customers({"customer_uuid": from_customer["uuid"]},
                                   {"customer_uuid": into_customer["uuid"]})["into"]


def unmerge(service, customer, external_id, kinds=None, source=SOURCE):
    return service.unmerge_customer({"customer_uuid": customer["uuid"], "data_source_uuid": source,
                                     "external_id": external_id, "move_to_new_customer": kinds})


# ---- the pure rules ----------------------------------------------------------------------------

def test_an_unmerge_request_is_checked_field_by_field():
    asked = merges.unmerge_request({"customer_uuid": "cus_1", "data_source_uuid": "ds_1", "external_id": "x",
                                    "move_to_new_customer": ["notes", "tasks", "notes"]})
    assert asked == merges.UnmergeRequest("cus_1", "ds_1", "x", ["tasks", "notes"])
    assert merges.unmerge_request({"customer_uuid": "c", "data_source_uuid": "d", "external_id": "x"}) \
        .move_to_new_customer == []
    for data, field in (({"data_source_uuid": "d", "external_id": "x"}, "customer_uuid"),
                        ({"customer_uuid": "c", "external_id": "x"}, "data_source_uuid"),
                        ({"customer_uuid": "c", "data_source_uuid": "d", "external_id": ""}, "external_id"),
                        ({"customer_uuid": "c", "data_source_uuid": "d", "external_id": "x",
                          "move_to_new_customer": ["invoices"]}, "move_to_new_customer"),
                        ({"customer_uuid": "c", "data_source_uuid": "d", "external_id": "x",
                          "move_to_new_customer": "tasks"}, "move_to_new_customer")):
        with pytest.raises(ValidationFailed) as failure:
            merges.unmerge_request(data)
        assert failure.value.param == field


def test_only_an_id_a_merge_brought_can_be_unmerged():
    held = [("ds", "own", None), ("ds", "came", "cus_a")]
    assert merges.former_customer(held, data_source_uuid="ds", external_id="came", customer_uuid="c") == "cus_a"
    for external_id, why in (("own", "own external id"), ("nope", "is not an external id")):
        with pytest.raises(ValidationFailed) as failure:
            merges.former_customer(held, data_source_uuid="ds", external_id=external_id, customer_uuid="c")
        assert failure.value.param == "external_id" and why in failure.value.message
    with pytest.raises(ValidationFailed) as failure:  # the own id went with its data source
        merges.former_customer([("ds", "came", "cus_a")], data_source_uuid="ds", external_id="came", customer_uuid="c")
    assert "only external id" in failure.value.message


def test_a_snapshot_restores_the_profile_tags_and_attributes_it_kept():
    columns = {field: None for field in merges.SNAPSHOT_FIELDS + merges.SNAPSHOT_TIMES}
    columns.update(name="Acme", email="Bob@Acme.io", lead_status="Working Lead", billing_system_type="Stripe",
                   currency="EUR", country="DE")
    columns["lead_created_at"] = datetime(2024, 1, 2, 14, 0, tzinfo=timezone.utc)
    kept = merges.snapshot(columns, ["vip"], {"seats": Attribute("Integer", 4, "API")})

    new = merges.restored(kept, billing_system_type="Import API")

    assert new.profile["name"] == "Acme" and new.profile["email_lower"] == "bob@acme.io"
    assert new.profile["status"] == new.profile["lead_status"] == "Working Lead"
    assert new.profile["billing_system_type"] == "Stripe" and new.profile["country"] == "DE"
    assert new.profile["lead_created_at"] == columns["lead_created_at"]
    assert new.tags == ["vip"] and new.custom == {"seats": Attribute("Integer", 4, "API")}
    assert merges.restored(None, billing_system_type="Import API") == merges.Restored(
        {"billing_system_type": "Import API"}, [], {})


# ---- the command ---------------------------------------------------------------------------------

def test_unmerge_gives_the_id_back_as_a_customer_with_what_it_had_when_merged(service):
    into = create(service, "into", name="Survivor", attributes={"tags": ["t-into"]})
    gone = create(service, "gone", name="Gone Co", email="x@gone.io", country="fr", status="Qualified Lead",
                  attributes={"tags": ["t-gone"], "custom": [{"type": "Integer", "key": "seats", "value": 3}]})
    merge(service, gone, into)
    service.update_customer(into["uuid"], {"name": "Survivor Inc"})

    answer = unmerge(service, into, "gone", ["notes", "tasks"])

    new, left = answer["customer"], answer["from"]
    assert new["uuid"] not in (into["uuid"], gone["uuid"])
    assert (new["external_ids"], new["data_source_uuid"]) == (["gone"], SOURCE)
    assert (new["name"], new["email"], new["country"], new["status"]) == ("Gone Co", "x@gone.io", "FR",
                                                                         "Qualified Lead")
    assert new["attributes"]["tags"] == ["t-gone"] and new["attributes"]["custom"] == {"seats": 3}
    assert left["uuid"] == into["uuid"] and left["external_ids"] == ["into"] and left["name"] == "Survivor Inc"
    assert service.get_customer(new["uuid"]) == new
    assert service.find_customer(SOURCE, "gone")["uuid"] == new["uuid"]
    assert recorded_fields(service.uow, "customer_created")[-1] == {"customer": new, "reason": "unmerged"}
    updated = recorded_fields(service.uow, "customer_updated")[-1]
    assert updated["uuid"] == into["uuid"] and updated["changes"]["external_ids"] == ["into"]
    assert recorded_fields(service.uow, "customer_unmerged") == [{
        "from_uuid": into["uuid"], "new_uuid": new["uuid"], "former_uuid": gone["uuid"], "data_source_uuid": SOURCE,
        "external_id": "gone", "move_to_new_customer": ["tasks", "notes"], "new_customer": new}]


def test_an_id_merged_along_a_chain_is_unmerged_from_the_last_customer(service):
    a, b, c = create(service, "a", name="A"), create(service, "b", name="B"), create(service, "c", name="C")
    merge(service, a, b)
    merge(service, b, c)

    first = unmerge(service, c, "a")["customer"]
    second = unmerge(service, c, "b")

    assert (first["name"], first["external_ids"]) == ("A", ["a"])
    assert (second["customer"]["name"], second["customer"]["external_ids"]) == ("B", ["b"])
    assert second["from"]["external_ids"] == ["c"]
    assert [e["former_uuid"] for e in recorded_fields(service.uow, "customer_unmerged")] == [a["uuid"], b["uuid"]]


def test_an_unmerged_customer_can_be_merged_and_unmerged_again(service):
    into, gone = create(service, "into"), create(service, "gone", name="Gone")
    merge(service, gone, into)
    again = unmerge(service, into, "gone")["customer"]
    merge(service, again, into)

    last = unmerge(service, into, "gone")["customer"]

    assert last["name"] == "Gone" and last["uuid"] != again["uuid"]
    assert recorded_fields(service.uow, "customer_unmerged")[-1]["former_uuid"] == again["uuid"]


def test_the_own_or_only_id_or_a_foreign_one_is_a_422_and_changes_nothing(service):
    into, gone = create(service, "into"), create(service, "gone")
    alone = create(service, "alone")
    merge(service, gone, into)
    before = recorded_fields(service.uow)

    for customer, external_id in ((into, "into"), (alone, "alone"), (into, "alone"), (into, "nope")):
        with pytest.raises(ValidationFailed) as failure:
            unmerge(service, customer, external_id)
        assert failure.value.param == "external_id"
    with pytest.raises(ValidationFailed):
        unmerge(service, into, "gone", source="ds_other")
    with pytest.raises(NotFound):
        unmerge(service, {"uuid": "cus_nobody"}, "gone")

    assert recorded_fields(service.uow) == before
    assert service.get_customer(into["uuid"])["external_ids"] == ["into", "gone"]


def test_a_second_unmerge_of_the_same_id_is_refused(service):
    into, gone = create(service, "into"), create(service, "gone")
    merge(service, gone, into)
    unmerge(service, into, "gone")
    with pytest.raises(ValidationFailed) as failure:
        unmerge(service, into, "gone")
    assert "is not an external id" in failure.value.message  # it names the new customer now
    assert len(recorded_fields(service.uow, "customer_unmerged")) == 1


def test_an_unmerge_from_a_customer_deleted_while_it_waited_for_the_lock_is_a_409(tmp_path, monkeypatch):
    uow = unit_of_work(Base, bookkeeping, tmp_path, unique_rules=UNIQUE_RULES)
    into = commands.create_customer(uow, {"data_source_uuid": SOURCE, "external_id": "into"}, billing=FakeBilling())
    gone = commands.create_customer(uow, {"data_source_uuid": SOURCE, "external_id": "gone"}, billing=FakeBilling())
    commands.merge_customers(uow, {"customer_uuid": gone["uuid"]}, {"customer_uuid": into["uuid"]})
    real_lock = commands.store.lock

    def lock_after_a_concurrent_merge(session, ids):  # what a merge committed meanwhile leaves behind
        return {}

    monkeypatch.setattr(commands.store, "lock", lock_after_a_concurrent_merge)
    with pytest.raises(Conflict) as failure:
        commands.unmerge_customer(uow, {"customer_uuid": into["uuid"], "data_source_uuid": SOURCE,
                                        "external_id": "gone"})
    assert failure.value.param == "customer_uuid"
    monkeypatch.setattr(commands.store, "lock", real_lock)
    assert commands.get_customer(uow, into["uuid"])["external_ids"] == ["into", "gone"]


def test_an_id_merged_before_snapshots_were_kept_comes_back_with_an_empty_profile(service):
    into, gone = create(service, "into", name="Into"), create(service, "gone", name="Gone")
    merge(service, gone, into)
    with service.uow.write() as tx:  # as if merged before migration 0004
        tx.session.execute(delete(MergedCustomer))

    new = unmerge(service, into, "gone")["customer"]

    assert (new["name"], new["external_ids"], new["billing_system_type"]) == ("", ["gone"], "Import API")


def test_a_retry_with_the_same_idempotency_key_answers_the_first_unmerge(tmp_path):
    uow = unit_of_work(Base, bookkeeping, tmp_path, unique_rules=UNIQUE_RULES)
    into = commands.create_customer(uow, {"data_source_uuid": SOURCE, "external_id": "into"}, billing=FakeBilling())
    gone = commands.create_customer(uow, {"data_source_uuid": SOURCE, "external_id": "gone"}, billing=FakeBilling())
    commands.merge_customers(uow, {"customer_uuid": gone["uuid"]}, {"customer_uuid": into["uuid"]})
    data = {"customer_uuid": into["uuid"], "data_source_uuid": SOURCE, "external_id": "gone"}

    first = commands.unmerge_customer(with_idempotency_key(uow, "k1", command="unmerge_customer"), data)
    with pytest.raises(Replay) as replay:
        commands.unmerge_customer(with_idempotency_key(uow, "k1", command="unmerge_customer"), data)

    assert replay.value.result == first
    assert len(recorded_fields(uow, "customer_unmerged")) == 1


def test_deleting_the_merged_customer_drops_the_snapshots_it_kept(service):
    into, gone = create(service, "into"), create(service, "gone")
    merge(service, gone, into)
    service.delete_customer(into["uuid"])
    with service.uow.read() as session:
        assert session.scalars(select(MergedCustomer)).all() == []
