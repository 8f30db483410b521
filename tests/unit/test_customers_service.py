"""The customers service's methods on a real SQLite database, with hand-written fakes for
what lies outside it (the billing_sync service); events are read back from the outbox."""
import pytest
from nameko.testing.services import worker_factory

from roster.testing import recorded_fields, unit_of_work
from roster.errors import NotFound, ValidationFailed
from services.customers.models import UNIQUE_RULES, Base, bookkeeping
from services.customers.service import CustomersService

SOURCE = "ds_known"


class FakeBilling:
    """Knows one data source, like billing_sync would after it was created."""

    def get_data_source(self, uuid):
        if uuid != SOURCE:
            raise NotFound(f"Data source {uuid} not found")
        return {"uuid": SOURCE, "name": "Imports", "system": "Import API"}


@pytest.fixture()
def service(tmp_path):
    return worker_factory(CustomersService, uow=unit_of_work(Base, bookkeeping, tmp_path, unique_rules=UNIQUE_RULES), billing_rpc=FakeBilling())


def events(service, event_type=None):
    return recorded_fields(service.uow, event_type)


def create(service, external_id="e1", **fields):
    return service.create_customer({"data_source_uuid": SOURCE, "external_id": external_id, **fields})


def test_create_stores_the_customer_and_records_customer_created(service):
    customer = create(service, name="Acme", email="A@Acme.io", website_url="acme.io", country="de",
                      attributes={"tags": ["vip"], "custom": [{"type": "Integer", "key": "seats", "value": "4"}]})

    assert service.get_customer(customer["uuid"]) == customer
    assert customer["website_url"] == "https://acme.io" and customer["status"] == "New Lead"
    assert customer["country"] == "DE"
    assert customer["attributes"]["custom"] == {"seats": 4}
    assert events(service, "customer_created") == [{"customer": customer}]


def test_create_in_an_unknown_data_source_is_a_422_that_stores_nothing(service):
    with pytest.raises(ValidationFailed) as failure:
        service.create_customer({"data_source_uuid": "ds_nope", "external_id": "e1"})
    assert failure.value.param == "data_source_uuid"
    assert service.list_customers({})["entries"] == [] and events(service) == []


def test_a_duplicate_external_id_is_refused_and_a_bad_attribute_rolls_back(service):
    create(service, "e1")
    with pytest.raises(ValidationFailed):
        create(service, "e1")
    with pytest.raises(ValidationFailed):
        create(service, "e2", attributes={"custom": [{"type": "Integer", "key": "n", "value": "x"}]})
    assert [c["external_id"] for c in service.list_customers({})["entries"]] == ["e1"]


def test_list_pages_by_keyset_and_filters(service):
    made = [create(service, f"e{i}", email=f"p{i}@x.io") for i in range(5)]
    first = service.list_customers({}, None, 2)
    rest = service.list_customers({}, first["cursor"], 10)
    assert [c["uuid"] for c in first["entries"] + rest["entries"]] == [c["uuid"] for c in made]
    assert first["has_more"] and not rest["has_more"] and rest["cursor"] is None
    assert [c["uuid"] for c in service.list_customers({"email": "P3@X.IO"})["entries"]] == [made[3]["uuid"]]
    assert service.list_customers({"status": "new_lead"})["entries"][0]["uuid"] == made[0]["uuid"]


def test_update_records_only_the_changed_fields(service):
    customer = create(service, name="Old")
    service.update_customer(customer["uuid"], {"name": "New", "company": ""})
    assert events(service, "customer_updated") == [{"uuid": customer["uuid"], "changes": {"name": "New"}}]


def test_merge_moves_ids_tags_and_attributes_and_deletes_the_loser(service):
    into = create(service, "a", attributes={"tags": ["t1"], "custom": [{"type": "String", "key": "k", "value": "a"}]})
    loser = create(service, "b", attributes={"tags": ["t2"], "custom": [{"type": "String", "key": "k", "value": "b"},
                                                                      {"type": "Boolean", "key": "pro", "value": True}]})

    merge = service.merge_customers({"data_source_uuid": SOURCE, "external_id": "b"}, {"customer_uuid": into["uuid"]})

    survivor = merge["into"]
    assert survivor["external_ids"] == ["a", "b"] and survivor["attributes"]["tags"] == ["t1", "t2"]
    assert survivor["attributes"]["custom"] == {"k": "a", "pro": True}
    with pytest.raises(NotFound):
        service.get_customer(loser["uuid"])
    merged_event = events(service, "customer_merged")[0]
    assert (merged_event["from_uuid"], merged_event["into_uuid"]) == (loser["uuid"], into["uuid"])


def test_delete_records_the_ids_subscribers_need(service):
    customer = create(service, "gone")
    service.delete_customer(customer["uuid"])
    assert events(service, "customer_deleted") == [
        {"uuid": customer["uuid"], "external_ids": ["gone"], "data_source_uuids": [SOURCE], "reason": "deleted"}]
    with pytest.raises(NotFound):
        service.delete_customer(customer["uuid"])


def test_tags_and_custom_attributes_by_email_reach_every_customer_with_it(service):
    create(service, "x1", email="team@x.io")
    create(service, "x2", email="Team@X.io")
    tagged = service.add_tags_by_email("team@x.io", ["shared"])
    assert [c["attributes"]["tags"] for c in tagged] == [["shared"], ["shared"]]
    with pytest.raises(NotFound):
        service.add_tags_by_email("nobody@x.io", ["x"])
