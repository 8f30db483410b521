"""The contacts service's sync_contacts RPC and contact overrides, on a real SQLite database."""
import pytest
from nameko.testing.services import worker_factory

from roster.errors import ValidationFailed
from roster.testing import recorded, unit_of_work
from services.contacts import domain
from services.contacts.models import UNIQUE_RULES, Base, bookkeeping
from services.contacts.service import ContactsService
from tests.unit.test_contacts_service import DS, FakeBilling, FakeCustomers


@pytest.fixture
def service(tmp_path):
    customers = FakeCustomers()
    customers.add("cus_a", "cus_stripe_a")
    uow = unit_of_work(Base, bookkeeping, tmp_path, unique_rules=UNIQUE_RULES)
    return worker_factory(ContactsService, uow=uow, customers_rpc=customers, billing_rpc=FakeBilling())


def billing_contact(**fields):
    return {"external_id": "cus_stripe_a", "customer_external_id": "cus_stripe_a", "first_name": "Ada",
            "last_name": "Lovelace", "email": "ada@acme.io", "phone": None, "title": None, "position": 1, **fields}


def test_missing_contacts_are_created_and_a_resync_changes_nothing(service):
    first = service.sync_contacts("cus_a", DS, [billing_contact()])
    assert [c["email"] for c in first] == ["ada@acme.io"] and first[0]["position"] == 1
    again = service.sync_contacts("cus_a", DS, [billing_contact()])
    assert again == first
    assert len(recorded(service.uow, "contact_created")) == 1 and recorded(service.uow, "contact_updated") == []


def test_changes_upstream_update_the_contact_but_not_overridden_fields(service):
    contact = service.sync_contacts("cus_a", DS, [billing_contact()])[0]
    service.update_contact(contact["uuid"], {"first_name": "Augusta", "overrides": {"first_name": True}})
    synced = service.sync_contacts("cus_a", DS, [billing_contact(last_name="King", first_name="Ada")])[0]
    assert synced["uuid"] == contact["uuid"]
    assert synced["first_name"] == "Augusta" and synced["last_name"] == "King"
    assert service.get_contact(contact["uuid"], True)["overrides"] == {"first_name": True}
    assert "overrides" not in service.get_contact(contact["uuid"])


def test_a_contact_never_synced_is_not_deleted_and_a_taken_position_moves_the_new_one_after(service):
    own = service.create_contact({"customer_uuid": "cus_a", "data_source_uuid": DS, "first_name": "Mine"})
    synced = service.sync_contacts("cus_a", DS, [billing_contact()])[0]
    assert own["position"] == 1 and synced["position"] == 2
    assert service.get_contact(own["uuid"])["first_name"] == "Mine"


def test_bad_contacts_are_a_422_naming_the_contact_and_field(service):
    with pytest.raises(ValidationFailed) as failure:
        service.sync_contacts("cus_a", DS, [billing_contact(), billing_contact(external_id="x", email="nope")])
    assert failure.value.param == "contacts[1].email"
    with pytest.raises(ValidationFailed) as failure:
        service.sync_contacts("cus_a", DS, [billing_contact(external_id=None)])
    assert failure.value.param == "contacts[0].external_id"
    assert service.list_contacts({})["entries"] == []


def test_contact_overrides_on_create_and_unknown_keys():
    assert domain.contact_overrides({"email": True}, {"email": False, "phone": True}) == {"phone": True}
    with pytest.raises(ValidationFailed) as failure:
        domain.contact_overrides({}, {"shoe_size": True})
    assert failure.value.param == "overrides.shoe_size"


def test_create_with_overrides_marks_the_fields(service):
    created = service.create_contact({"customer_uuid": "cus_a", "data_source_uuid": DS, "external_id": "cus_stripe_a",
                                      "email": "hand@acme.io", "overrides": {"email": True}})
    synced = service.sync_contacts("cus_a", DS, [billing_contact()])[0]
    assert synced["uuid"] == created["uuid"] and synced["email"] == "hand@acme.io"


def test_a_contact_for_a_customer_merged_away_lands_on_the_survivor(tmp_path):
    """A duplicate merged in the background between its create and its contact's create."""
    class Merged(FakeCustomers):
        def get_survivor(self, uuid):
            if uuid == "cus_gone":
                return self.customers["cus_a"]
            return super().get_survivor(uuid)

    customers = Merged()
    customers.add("cus_a", "ext-a")
    uow = unit_of_work(Base, bookkeeping, tmp_path, unique_rules=UNIQUE_RULES)
    service = worker_factory(ContactsService, uow=uow, customers_rpc=customers, billing_rpc=FakeBilling())
    contact = service.create_contact({"customer_uuid": "cus_gone", "data_source_uuid": DS, "first_name": "Late"})
    assert contact["customer_uuid"] == "cus_a"
    with pytest.raises(ValidationFailed) as failure:
        service.create_contact({"customer_uuid": "cus_never", "data_source_uuid": DS})
    assert failure.value.param == "customer_uuid"
