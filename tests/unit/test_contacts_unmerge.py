"""The contacts service's side of customer unmerges: the contacts that came with the unmerged
external id go to the new customer, in either order of the merge and unmerge events, once."""
import pytest
from nameko.testing.services import worker_factory

from roster.errors import NotFound
from roster.events import envelope
from roster.testing import as_handler, recorded, unit_of_work
from roster.uow import AlreadyHandled
from services.contacts import commands
from services.contacts.models import UNIQUE_RULES, Base, bookkeeping
from services.contacts.service import ContactsService
from tests.unit.test_contacts_service import DS, FakeBilling, FakeCustomers


@pytest.fixture
def uow(tmp_path):
    return unit_of_work(Base, bookkeeping, tmp_path, unique_rules=UNIQUE_RULES)


@pytest.fixture
def customers():
    fake = FakeCustomers()
    for name in ("a", "c", "d", "n", "x"):
        fake.add(f"cus_{name}", f"ext-{name}")
    return fake


@pytest.fixture
def service(uow, customers):
    return worker_factory(ContactsService, uow=uow, customers_rpc=customers, billing_rpc=FakeBilling())


def new_contact(service, customer_uuid, **fields):
    return service.create_contact({"customer_uuid": customer_uuid, "data_source_uuid": DS, **fields})


def merged(from_uuid, into_uuid):
    return envelope(from_uuid=from_uuid, into_uuid=into_uuid, into_external_id=f"ext-{into_uuid[4:]}")


def unmerged(former="cus_a", from_uuid="cus_c", new_uuid="cus_n", external_id="ext-a"):
    return envelope(from_uuid=from_uuid, new_uuid=new_uuid, former_uuid=former, data_source_uuid=DS,
                    external_id=external_id, move_to_new_customer=[], new_customer={"uuid": new_uuid})


def where(service, contact):
    found = service.get_contact(contact["uuid"])
    return found["customer_uuid"], found["position"], found["customer_external_id"]


def test_the_contacts_that_came_with_the_id_go_to_the_new_customer_as_its_first(service, uow):
    own = [new_contact(service, "cus_c", first_name=f"C{n}") for n in range(2)]
    came = [new_contact(service, "cus_a", first_name=f"A{n}") for n in range(2)]
    service.handle_customer_merged(merged("cus_a", "cus_c"))
    later = new_contact(service, "cus_c", first_name="after the merge")
    assert [where(service, c)[1] for c in came] == [3, 4]

    service.handle_customer_unmerged(unmerged())

    assert [where(service, c) for c in came] == [("cus_n", 1, "ext-a"), ("cus_n", 2, "ext-a")]
    assert [where(service, c)[0] for c in own + [later]] == ["cus_c"] * 3
    updates = [u for u in recorded(uow, "contact_updated") if u["reason"] == "customer_unmerged"]
    assert [u["uuid"] for u in updates] == [c["uuid"] for c in came]
    assert updates[0]["changes"] == {"customer_uuid": "cus_n", "position": 1, "customer_external_id": "ext-a"}


def test_a_redelivered_unmerge_changes_nothing(service, uow):
    came = new_contact(service, "cus_a")
    service.handle_customer_merged(merged("cus_a", "cus_c"))
    event = unmerged()
    commands.on_customer_unmerged(as_handler(uow, "handle_customer_unmerged", event), event)
    new_contact(service, "cus_n")  # the new customer gains a contact of its own
    before = recorded(uow)

    with pytest.raises(AlreadyHandled):  # what the handler's unit of work does with a redelivery
        commands.on_customer_unmerged(as_handler(uow, "handle_customer_unmerged", event), event)
    commands.on_customer_unmerged(uow, event)  # and were it applied again, it would find nothing to move

    assert recorded(uow) == before and where(service, came)[:2] == ("cus_n", 1)


def test_an_unmerge_handled_before_its_merge_still_ends_with_the_same_contacts(service):
    own_of_a = new_contact(service, "cus_a", first_name="A's own")
    of_d = new_contact(service, "cus_d", first_name="D's, merged into A before")
    service.handle_customer_merged(merged("cus_d", "cus_a"))

    service.handle_customer_unmerged(unmerged())  # the merge of A into C comes late
    service.handle_customer_merged(merged("cus_a", "cus_c"))

    assert where(service, own_of_a)[:2] == ("cus_n", 1)
    assert where(service, of_d)[0] == "cus_c"  # D's external id stays with C: so does its contact


def test_a_chain_of_merges_gives_back_only_what_came_from_the_unmerged_ids_customer(service):
    of_a, of_d = new_contact(service, "cus_a"), new_contact(service, "cus_d")
    service.handle_customer_merged(merged("cus_d", "cus_a"))
    service.handle_customer_merged(merged("cus_a", "cus_c"))

    service.handle_customer_unmerged(unmerged())
    service.handle_customer_unmerged(unmerged(former="cus_d", new_uuid="cus_x", external_id="ext-d"))

    assert where(service, of_a)[0] == "cus_n" and where(service, of_d)[0] == "cus_x"


def test_a_new_customer_deleted_or_merged_before_the_unmerge_is_handled(service):
    gone, kept = new_contact(service, "cus_a"), new_contact(service, "cus_d")
    service.handle_customer_merged(merged("cus_a", "cus_c"))
    service.handle_customer_merged(merged("cus_d", "cus_c"))
    service.handle_customer_deleted(envelope(uuid="cus_n", external_ids=["ext-a"], data_source_uuids=[DS]))
    service.handle_customer_merged(merged("cus_x", "cus_c"))

    service.handle_customer_unmerged(unmerged())
    service.handle_customer_unmerged(unmerged(former="cus_d", new_uuid="cus_x", external_id="ext-d"))

    with pytest.raises(NotFound):
        service.get_contact(gone["uuid"])
    assert where(service, kept)[0] == "cus_c"  # cus_x went into cus_c: its contact follows
