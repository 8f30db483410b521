"""The activities service's side of customer unmerges: the records and feed entries that came
with the unmerged external id go to the new customer (those `move_to_new_customer` names, and
the customer's own history), in either order of the merge and unmerge events, once."""
import pytest

from roster.events import envelope
from roster.testing import as_handler, recorded, unit_of_work
from roster.uow import AlreadyHandled
from services.activities import commands, domain
from services.activities.models import Base, FeedEntry, Note, Opportunity, Task, bookkeeping
from tests.unit.test_activities_service import (
    FakeContacts, FakeCustomers, customer_created_event, feed_of, handle, movement_event, transaction_event,
)

SURVIVOR, GONE, NEW, EARLIER = "cus_survivor", "cus_gone", "cus_new", "cus_earlier"
JANE = "con_jane"


@pytest.fixture
def uow(tmp_path):
    return unit_of_work(Base, bookkeeping, tmp_path)


@pytest.fixture
def ports():
    return {"customers": FakeCustomers(SURVIVOR, GONE, NEW, EARLIER), "contacts": FakeContacts({JANE: GONE})}


def merged(from_uuid=GONE, into_uuid=SURVIVOR):
    return envelope(from_uuid=from_uuid, into_uuid=into_uuid, into_external_id="s", moved_external_ids=[])


def unmerged(kinds=(), former=GONE, new_uuid=NEW, from_uuid=SURVIVOR):
    return envelope(from_uuid=from_uuid, new_uuid=new_uuid, former_uuid=former, data_source_uuid="ds_1",
                    external_id="g", move_to_new_customer=list(kinds),
                    new_customer={"uuid": new_uuid, "name": "Gone Co", "external_id": "g"})


def note(uow, ports, customer_uuid, text="x", **extra):
    return commands.create_note(uow, {"customer_uuid": customer_uuid, "type": "note", "text": text, **extra}, **ports)


def task(uow, ports, customer_uuid, **extra):
    return commands.create_task(uow, {"customer_uuid": customer_uuid, "task_details": "Call back",
                                      "assignee": "sam@us.example", "due_date": "2024-05-01",
                                      "completed_at": "2024-04-01T00:00:00Z", **extra}, **ports)


def opportunity(uow, ports, customer_uuid):
    return commands.create_opportunity(uow, {
        "customer_uuid": customer_uuid, "owner": "sam@us.example", "pipeline": "New business",
        "pipeline_stage": "Discovery", "estimated_close_date": "2024-12-22", "currency": "USD",
        "amount_in_cents": 1000}, customers=ports["customers"])


def owner_of(uow, model, uuid):
    with uow.read() as session:
        return session.query(model).filter_by(uuid=uuid).one().customer_uuid


def kinds_in(uow, customer_uuid):
    return sorted(entry["kind"] for entry in feed_of(uow, customer_uuid))


# ---- the rules ---------------------------------------------------------------------------------------

def test_what_follows_an_unmerge():
    assert domain.follows_unmerge("notes", moved_kinds=["notes"])
    assert not domain.follows_unmerge("notes", moved_kinds=["tasks"])
    assert domain.follows_unmerge("tasks", moved_kinds=[], of_contact=True)
    assert not domain.follows_unmerge("opportunities", moved_kinds=[], of_contact=True)
    with pytest.raises(ValueError):
        domain.follows_unmerge("threads", moved_kinds=["threads"])
    moved = {"note_1"}
    assert domain.entry_follows_unmerge(type="note", kind="note", source_id="note_1", moved_sources=moved)
    assert not domain.entry_follows_unmerge(type="note", kind="note", source_id="note_2", moved_sources=moved)
    for type_, kind in (("event", "customer_created"), ("event", "contact_created"), ("transaction", "refund")):
        assert domain.entry_follows_unmerge(type=type_, kind=kind, source_id="x", moved_sources=moved)
    for type_, kind in (("mrr_movement", "new_biz"), ("thread", "thread"), ("event", "task_completed")):
        assert not domain.entry_follows_unmerge(type=type_, kind=kind, source_id="x", moved_sources=moved)


# ---- the handler -------------------------------------------------------------------------------------

def test_the_named_kinds_and_the_customers_own_history_go_to_the_new_customer(uow, ports):
    handle(uow, "on_customer_created", customer_created_event(GONE, name="Gone Co"))
    moved_note, kept_task, moved_opportunity = note(uow, ports, GONE), task(uow, ports, GONE), \
        opportunity(uow, ports, GONE)
    handle(uow, "on_transaction_recorded", transaction_event(customer_uuid=GONE))
    handle(uow, "on_mrr_movement_recorded", movement_event(customer_uuid=GONE))
    own_note = note(uow, ports, SURVIVOR, text="the survivor's")
    handle(uow, "on_customer_merged", merged())
    after_merge = note(uow, ports, SURVIVOR, text="written after the merge")

    handle(uow, "on_customer_unmerged", unmerged(kinds=["notes", "opportunities"]))

    assert owner_of(uow, Note, moved_note["uuid"]) == NEW and owner_of(uow, Opportunity, moved_opportunity["uuid"]) \
        == NEW
    assert owner_of(uow, Task, kept_task["task_uuid"]) == SURVIVOR
    assert owner_of(uow, Note, own_note["uuid"]) == owner_of(uow, Note, after_merge["uuid"]) == SURVIVOR
    assert kinds_in(uow, NEW) == ["customer_created", "note", "opportunity_created", "payment"]
    assert kinds_in(uow, SURVIVOR) == ["customer_merged", "customer_unmerged", "new_biz", "note", "note",
                                       "task_completed"]
    unmerge_entry = next(e for e in feed_of(uow, SURVIVOR) if e["kind"] == "customer_unmerged")
    assert unmerge_entry["description"] == "Customer unmerged: Gone Co was split off into a customer of its own"
    assert recorded(uow, "activity_recorded")[-1]["activity"]["kind"] == "customer_unmerged"


def test_notes_and_tasks_of_a_contact_follow_it_whatever_is_named(uow, ports):
    identifier = {"associated_object": "contact", "method": "uuid", "value": JANE}
    contact_note = commands.create_note(uow, {"type": "note", "text": "x", "associated_object_identifier": identifier},
                                        **ports)
    contact_task = commands.create_task(uow, {"associated_object_identifier": identifier, "task_details": "Call",
                                              "assignee": "sam@us.example", "due_date": "2024-05-01"}, **ports)
    handle(uow, "on_customer_merged", merged())
    ports["contacts"].contacts[JANE] = SURVIVOR  # the contacts service moved Jane with her customer
    later_note = commands.create_note(uow, {"type": "note", "text": "after the merge",
                                            "associated_object_identifier": identifier}, **ports)
    later_task = commands.create_task(uow, {"associated_object_identifier": identifier, "task_details": "Later",
                                            "assignee": "sam@us.example", "due_date": "2024-05-01",
                                            "completed_at": "2024-04-01T00:00:00Z"}, **ports)

    handle(uow, "on_customer_unmerged", unmerged(kinds=[]))

    assert owner_of(uow, Note, contact_note["uuid"]) == owner_of(uow, Task, contact_task["task_uuid"]) == NEW
    assert owner_of(uow, Note, later_note["uuid"]) == owner_of(uow, Task, later_task["task_uuid"]) == NEW
    assert kinds_in(uow, NEW) == ["note", "note", "task_completed"]


def test_notes_and_tasks_of_a_contact_created_after_the_merge_follow_it(uow, ports):
    """Jane had nothing before the merge: her contact_created entry says she came with the id."""
    handle(uow, "on_contact_created", envelope(uuid=JANE, customer_uuid=GONE, contact={"uuid": JANE}))
    handle(uow, "on_customer_merged", merged())
    ports["contacts"].contacts[JANE] = SURVIVOR
    identifier = {"associated_object": "contact", "method": "uuid", "value": JANE}
    later_note = commands.create_note(uow, {"type": "call", "text": "x", "associated_object_identifier": identifier},
                                      **ports)
    own_note = note(uow, ports, SURVIVOR, text="the survivor's")

    handle(uow, "on_customer_unmerged", unmerged(kinds=[]))

    assert owner_of(uow, Note, later_note["uuid"]) == NEW
    assert owner_of(uow, Note, own_note["uuid"]) == SURVIVOR
    assert kinds_in(uow, NEW) == ["call", "contact_created"]


def test_a_redelivered_unmerge_changes_nothing(uow, ports):
    note(uow, ports, GONE)
    handle(uow, "on_customer_merged", merged())
    event = unmerged(kinds=["notes"])
    handle(uow, "on_customer_unmerged", event)
    note(uow, ports, NEW, text="the new customer's own")
    before = (recorded(uow), kinds_in(uow, NEW), kinds_in(uow, SURVIVOR))

    with pytest.raises(AlreadyHandled):
        commands.on_customer_unmerged(as_handler(uow, "on_customer_unmerged", event), event)
    commands.on_customer_unmerged(uow, event)  # applied again, it finds nothing more to move

    assert (recorded(uow), kinds_in(uow, NEW), kinds_in(uow, SURVIVOR)) == before


def test_an_unmerge_handled_before_its_merge_still_ends_the_same(uow, ports):
    of_gone = note(uow, ports, GONE, text="gone's own")
    of_earlier = note(uow, ports, EARLIER, text="merged into gone before")
    handle(uow, "on_customer_merged", merged(from_uuid=EARLIER, into_uuid=GONE))

    handle(uow, "on_customer_unmerged", unmerged(kinds=["notes"]))  # the merge of GONE comes late
    handle(uow, "on_customer_merged", merged())

    assert owner_of(uow, Note, of_gone["uuid"]) == NEW
    assert owner_of(uow, Note, of_earlier["uuid"]) == SURVIVOR  # its external id stays with the survivor


def test_a_new_customer_deleted_before_the_unmerge_is_handled_takes_its_records_along(uow, ports):
    gone_note = note(uow, ports, GONE)
    handle(uow, "on_customer_merged", merged())
    handle(uow, "on_customer_deleted", envelope(uuid=NEW, external_ids=["g"], data_source_uuids=["ds_1"]))

    handle(uow, "on_customer_unmerged", unmerged(kinds=["notes"]))

    with uow.read() as session:
        assert session.query(Note).filter_by(uuid=gone_note["uuid"]).count() == 0
        assert session.query(FeedEntry).filter_by(source_id=gone_note["uuid"]).count() == 0
