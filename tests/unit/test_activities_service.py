"""The activities service layer on a real SQLite database behind a real unit of work, with
hand-written fakes for the customers and contacts services; events are read back from the outbox."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from roster import pagination
from roster.errors import BadRequest, NotFound, ServiceUnavailable, UnprocessableEvent, ValidationFailed
from roster.events import envelope
from roster.testing import as_handler, recorded, unit_of_work
from roster.uow import AlreadyHandled
from services.activities import commands
from services.activities.models import Base, Customer, FeedEntry, MrrActivity, Note, Task, Thread, ThreadMessage, bookkeeping

ACME, GLOBEX, INITECH = "cus_acme", "cus_globex", "cus_initech"
JANE = "con_jane"


class FakeCustomers:
    """The customers service's `get_customer` over a dict; `down` makes it unreachable."""

    def __init__(self, *uuids):
        self.customers = {uuid: {"uuid": uuid, "name": uuid.removeprefix("cus_").title()} for uuid in uuids}
        self.down = False
        self.calls = 0

    def get_customer(self, uuid):
        self.calls += 1
        if self.down:
            raise ServiceUnavailable("The customers service is not running")
        if uuid not in self.customers:
            raise NotFound(f"Customer {uuid} not found", param="uuid")
        return self.customers[uuid]


class FakeContacts:
    def __init__(self, contacts: dict):
        self.contacts = contacts  # contact uuid -> customer uuid

    def get_contact(self, uuid):
        if uuid not in self.contacts:
            raise NotFound(f"Contact {uuid} not found", param="uuid")
        return {"uuid": uuid, "customer_uuid": self.contacts[uuid]}


@pytest.fixture
def uow(tmp_path):
    return unit_of_work(Base, bookkeeping, tmp_path)


@pytest.fixture
def customers():
    return FakeCustomers(ACME, GLOBEX, INITECH)


@pytest.fixture
def contacts():
    return FakeContacts({JANE: ACME})


@pytest.fixture
def ports(customers, contacts):
    return {"customers": customers, "contacts": contacts}


def count(uow, model, **where) -> int:
    with uow.read() as session:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return session.scalar(query)


def feed_of(uow, customer_uuid, **options) -> list[dict]:
    return commands.feed(uow, customer_uuid, **options)["entries"]


def handle(uow, handler, payload):
    """Run an event handler the way its nameko entrypoint does (deduped on the event id)."""
    getattr(commands, handler)(as_handler(uow, handler, payload), payload)


def movement_event(uuid="mov_1", customer_uuid=ACME, **overrides):
    movement = {"uuid": uuid, "type": "new_biz", "date": "2024-03-01T00:00:00Z", "mrr_movement": 4900, "mrr": 4900,
                "arr": 58800, "currency": "USD", "description": "purchased the Silver Monthly plan",
                "subscription_external_id": "sub_1", "plan_external_id": "silver", "data_source_uuid": "ds_1",
                "causes": []}
    movement.update(overrides)
    return envelope(customer_uuid=customer_uuid, movement=movement)


def transaction_event(uuid="tr_1", customer_uuid=ACME, **overrides):
    transaction = {"uuid": uuid, "external_id": "t-1", "type": "payment", "result": "successful",
                   "date": "2024-03-02T10:00:00Z", "amount_in_cents": 4900, "currency": "USD"}
    transaction.update(overrides)
    return envelope(customer_uuid=customer_uuid, invoice_uuid="inv_1", transaction=transaction)


def customer_created_event(uuid, name="Acme Inc", created_at="2024-01-01T09:00:00Z"):
    return envelope(customer={"uuid": uuid, "name": name, "external_id": f"ext-{uuid}", "company": "",
                              "email": "", "created_at": created_at})


# ---- notes and calls ----------------------------------------------------------------------------

def test_a_note_on_a_customer_is_stored_shown_in_the_feed_and_announced(uow, ports):
    note = commands.create_note(uow, {"customer_uuid": ACME, "type": "note", "text": "Renewal  next\nmonth",
                                      "author_email": "sam@example.com"}, **ports)

    assert note["uuid"].startswith("note_")
    assert (note["customer_uuid"], note["associated_object"], note["associated_object_uuid"]) == (ACME, "customer", ACME)
    assert note["call_duration"] == 0 and note["author"] == "sam@example.com"
    [entry] = feed_of(uow, ACME)
    assert (entry["type"], entry["source_id"], entry["date"]) == ("note", note["uuid"], note["created_at"])
    assert entry["description"] == "Note by sam@example.com: Renewal next month"
    [announced] = recorded(uow, "activity_recorded")
    assert announced["customer_uuid"] == ACME
    assert announced["activity"] == {key: entry[key] for key in ("uuid", "type", "kind", "date", "description",
                                                                  "source_id")}


@pytest.mark.parametrize("kind", ["notes", "tasks", "opportunities"])
def test_a_list_page_stops_at_its_byte_budget_and_the_cursor_resumes_after_it(uow, ports, customers, monkeypatch,
                                                                              kind):
    big = "😀" * 5_000  # 20 KB of JSON
    if kind == "notes":
        made = [commands.create_note(uow, {"customer_uuid": ACME, "type": "note", "text": big}, **ports)["uuid"]
                for _ in range(5)]
    elif kind == "tasks":
        made = [commands.create_task(uow, {**TASK, "task_details": big[:1000]}, **ports)["task_uuid"]
                for _ in range(5)]
        big = big[:1000]
    else:
        made = [commands.create_opportunity(uow, {"customer_uuid": ACME, "owner": "a@b.co", "pipeline": "P",
                                                  "pipeline_stage": "S", "estimated_close_date": "2030-01-01",
                                                  "currency": "USD", "amount_in_cents": 1, "custom": {"k": big}},
                                            customers=customers)["uuid"] for _ in range(5)]
    page_bytes = len(big.encode()) * 2 + 2000  # about two of these
    monkeypatch.setattr(pagination, "PAGE_BYTES", page_bytes)
    listing = {"notes": commands.list_notes, "tasks": commands.list_tasks,
               "opportunities": commands.list_opportunities}[kind]

    seen, cursor, pages = [], None, 0
    while True:
        page = listing(uow, {}, cursor, 200)
        seen += [entry.get("task_uuid") or entry["uuid"] for entry in page["entries"]]
        pages += 1
        if not page["has_more"]:
            break
        cursor = page["cursor"]

    assert seen == made and pages >= 3


def test_a_call_keeps_its_duration_and_a_contact_note_belongs_to_the_contacts_customer(uow, ports):
    call = commands.create_note(uow, {
        "associated_object_identifier": {"associated_object": "contact", "method": "uuid", "value": JANE},
        "type": "call", "text": "Discussed pricing", "call_duration": 330}, **ports)

    assert (call["associated_object"], call["associated_object_uuid"], call["customer_uuid"]) == ("contact", JANE, ACME)
    assert call["call_duration"] == 330
    [entry] = feed_of(uow, ACME)
    assert entry["type"] == "call" and entry["description"] == "Call of 6 min: Discussed pricing"
    assert commands.list_notes(uow, {"contact_uuid": JANE})["entries"] == [call]
    assert commands.list_notes(uow, {"customer_uuid": ACME})["entries"] == []  # not on the customer itself
    assert commands.list_notes(uow, {"any_customer_uuid": ACME})["entries"] == [call]


@pytest.mark.parametrize("data, field", [
    ({"customer_uuid": "cus_nobody", "type": "note", "text": "x"}, "customer_uuid"),
    ({"associated_object_identifier": {"associated_object": "contact", "value": "con_nobody"}, "type": "note"},
     "associated_object_identifier.value"),
    ({"customer_uuid": ACME, "type": "call", "call_duration": -1}, "call_duration"),
    ({"customer_uuid": ACME, "type": "call", "call_duration": 1.5}, "call_duration"),
    ({"customer_uuid": ACME, "type": "call", "call_duration": "60"}, "call_duration"),
    ({"customer_uuid": ACME, "type": "call", "call_duration": True}, "call_duration"),
    ({"customer_uuid": ACME, "type": "note", "call_duration": 60}, "call_duration"),
    ({"customer_uuid": ACME, "type": "meeting"}, "type"),
    ({"customer_uuid": ACME}, "type"),
    ({"type": "note"}, "customer_uuid"),
    ({"customer_uuid": ACME, "type": "note", "author_email": "not-an-email"}, "author_email"),
    ({"customer_uuid": ACME, "type": "note", "created_at": "2999-01-01"}, "created_at"),
])
def test_a_bad_note_is_a_422_naming_the_field_and_stores_nothing(uow, ports, data, field):
    with pytest.raises(ValidationFailed) as failure:
        commands.create_note(uow, data, **ports)

    assert failure.value.param == field and failure.value.message.startswith(f"{field}: ")
    assert count(uow, Note) == 0 and count(uow, FeedEntry) == 0 and recorded(uow) == []


def test_a_whole_number_given_as_a_float_is_a_duration(uow, ports):
    call = commands.create_note(uow, {"customer_uuid": ACME, "type": "call", "call_duration": 60.0}, **ports)
    assert call["call_duration"] == 60


def test_the_customers_service_being_down_is_its_503_and_nothing_is_stored(uow, ports, customers):
    customers.down = True
    with pytest.raises(ServiceUnavailable):
        commands.create_note(uow, {"customer_uuid": ACME, "type": "note"}, **ports)
    assert count(uow, Note) == 0


def test_a_customer_deleted_between_the_check_and_the_write_is_refused(uow, ports):
    handle(uow, "on_customer_deleted", envelope(uuid=ACME))  # the fake still answers for it

    with pytest.raises(ValidationFailed, match="was deleted"):
        commands.create_note(uow, {"customer_uuid": ACME, "type": "note"}, **ports)
    assert count(uow, Note) == 0


def test_editing_a_note_updates_its_feed_entry_and_an_empty_edit_changes_nothing(uow, ports):
    note = commands.create_note(uow, {"customer_uuid": ACME, "type": "note", "text": "draft"}, **ports)

    same = commands.update_note(uow, note["uuid"], {})
    assert same == {"note": note, "changed": False}
    changed = commands.update_note(uow, note["uuid"], {"type": "call", "call_duration": 120, "text": "called"})
    assert changed["changed"] and changed["note"]["type"] == "call" and changed["note"]["call_duration"] == 120
    [entry] = feed_of(uow, ACME)
    assert (entry["type"], entry["description"]) == ("call", "Call of 2 min: called")
    back = commands.update_note(uow, note["uuid"], {"type": "note"})["note"]
    assert back["call_duration"] == 0  # a note has no duration
    assert len(recorded(uow, "activity_recorded")) == 1  # one fact, announced once


def test_deleting_a_note_takes_it_out_of_the_feed(uow, ports):
    note = commands.create_note(uow, {"customer_uuid": ACME, "type": "note", "text": "x"}, **ports)
    commands.delete_note(uow, note["uuid"])

    assert feed_of(uow, ACME) == []
    with pytest.raises(NotFound):
        commands.get_note(uow, note["uuid"])


def test_notes_page_by_cursor(uow, ports):
    made = [commands.create_note(uow, {"customer_uuid": ACME, "type": "note", "text": str(n)}, **ports)["uuid"]
            for n in range(5)]
    first = commands.list_notes(uow, {"any_customer_uuid": ACME}, per_page=2)
    second = commands.list_notes(uow, {"any_customer_uuid": ACME}, cursor=first["cursor"], per_page=2)
    third = commands.list_notes(uow, {"any_customer_uuid": ACME}, cursor=second["cursor"], per_page=2)

    assert [n["uuid"] for page in (first, second, third) for n in page["entries"]] == made
    assert (first["has_more"], third["has_more"], third["cursor"]) == (True, False, None)


# ---- threads ------------------------------------------------------------------------------------

THREAD = {
    "subject": "Renewal",
    "participants": ["jane@acme.example", "JANE@acme.example", "bob@acme.example"],
    "messages": [
        {"direction": "inbound", "sender": "jane@acme.example", "sent_at": "2024-02-01T10:00:00Z", "body": "Hi"},
        {"direction": "outbound", "sender": "sam@us.example", "sent_at": "2024-02-01T09:00:00Z", "body": "Offer"},
    ],
}


def test_logging_an_email_thread_puts_it_in_the_feed_at_its_last_message(uow, customers):
    thread = commands.create_thread(uow, ACME, THREAD, customers=customers)

    assert thread["participants"] == ["jane@acme.example", "bob@acme.example"]
    assert [m["body"] for m in thread["messages"]] == ["Offer", "Hi"]  # oldest first
    [entry] = feed_of(uow, ACME)
    assert (entry["type"], entry["date"], entry["source_id"]) == ("thread", "2024-02-01T10:00:00Z", thread["uuid"])
    assert entry["description"] == "Email thread “Renewal” with jane@acme.example, bob@acme.example (2 messages)"

    replied = commands.add_thread_messages(uow, ACME, thread["uuid"], {"messages": [
        {"direction": "outbound", "sender": "sam@us.example", "sent_at": "2024-02-02T08:00:00Z", "body": "Sure"}]})
    assert replied["message_count"] == 3
    [entry] = feed_of(uow, ACME)
    assert entry["date"] == "2024-02-02T08:00:00Z" and entry["description"].endswith("(3 messages)")
    assert commands.list_threads(uow, ACME)["entries"] == [replied]


@pytest.mark.parametrize("change, field", [
    ({"subject": ""}, "subject"),
    ({"participants": []}, "participants"),
    ({"participants": ["jane"]}, "participants.0"),
    ({"messages": []}, "messages"),
    ({"messages": [{"direction": "sideways", "sender": "a@b.co", "sent_at": "2024-01-01"}]}, "messages.0.direction"),
    ({"messages": [{"direction": "inbound", "sender": "a@b.co"}]}, "messages.0.sent_at"),
])
def test_a_bad_thread_is_a_422_naming_the_field(uow, customers, change, field):
    with pytest.raises(ValidationFailed) as failure:
        commands.create_thread(uow, ACME, {**THREAD, **change}, customers=customers)
    assert failure.value.param == field
    assert count(uow, Thread) == 0


# ---- tasks and opportunities --------------------------------------------------------------------

TASK = {"customer_uuid": ACME, "task_details": "Send the renewal quote", "assignee": "sam@us.example",
        "due_date": "2024-05-01"}


def test_completing_a_task_is_an_event_in_the_feed_and_reopening_it_takes_it_out(uow, ports):
    task = commands.create_task(uow, TASK, **ports)
    assert task["completed_at"] is None and feed_of(uow, ACME) == []

    done = commands.update_task(uow, task["task_uuid"], {"completed_at": "2024-04-20T12:00:00Z"})
    assert done["changed"]
    [entry] = feed_of(uow, ACME)
    assert (entry["type"], entry["kind"], entry["date"]) == ("event", "task_completed", "2024-04-20T12:00:00Z")
    assert entry["description"] == "Task completed: Send the renewal quote (assigned to sam@us.example)"

    assert commands.update_task(uow, task["task_uuid"], {"completed_at": "2024-04-20T12:00:00Z"})["changed"] is False
    commands.update_task(uow, task["task_uuid"], {"completed_at": None})
    assert feed_of(uow, ACME) == []
    assert commands.list_tasks(uow, {"completed": "false"})["entries"][0]["task_uuid"] == task["task_uuid"]
    assert commands.list_tasks(uow, {"completed": "TRUE"})["entries"] == []


def test_a_task_filter_with_a_bad_value_is_a_400(uow):
    with pytest.raises(BadRequest) as failure:
        commands.list_tasks(uow, {"completed": "maybe"})
    assert failure.value.param == "completed"


def test_creating_an_opportunity_is_an_event_in_the_feed(uow, customers):
    opportunity = commands.create_opportunity(uow, {
        "customer_uuid": ACME, "owner": "sam@us.example", "pipeline": "New business", "pipeline_stage": "Discovery",
        "estimated_close_date": "2024-12-22", "currency": "usd", "amount_in_cents": 120000,
        "custom": [{"key": "from_campaign", "value": True}]}, customers=customers)

    assert (opportunity["type"], opportunity["forecast_category"], opportunity["currency"]) == \
        ("recurring", "pipeline", "USD")
    assert opportunity["custom"] == {"from_campaign": True}
    [entry] = feed_of(uow, ACME)
    assert entry["kind"] == "opportunity_created"
    assert entry["description"] == "Opportunity created: $1,200.00 in New business at Discovery, closing 2024-12-22"
    updated = commands.update_opportunity(uow, opportunity["uuid"], {"pipeline_stage": "Won",
                                                                     "custom": {"from_campaign": None, "x": 1}})
    assert updated["pipeline_stage"] == "Won" and updated["custom"] == {"x": 1}


@pytest.mark.parametrize("change, field", [
    ({"estimated_close_date": "2024-12-22T10:00:00Z"}, "estimated_close_date"),
    ({"amount_in_cents": -5}, "amount_in_cents"),
    ({"win_likelihood": 101}, "win_likelihood"),
    ({"forecast_category": "sure"}, "forecast_category"),
    ({"owner": None}, "owner"),
    ({"customer_uuid": "cus_nobody"}, "customer_uuid"),
])
def test_a_bad_opportunity_is_a_422_naming_the_field(uow, customers, change, field):
    data = {"customer_uuid": ACME, "owner": "sam@us.example", "pipeline": "P", "pipeline_stage": "S",
            "estimated_close_date": "2024-12-22", "currency": "USD", "amount_in_cents": 100, **change}
    with pytest.raises(ValidationFailed) as failure:
        commands.create_opportunity(uow, data, customers=customers)
    assert failure.value.param == field


# ---- the feed -----------------------------------------------------------------------------------

def test_the_feed_is_newest_first_pages_by_keyset_and_filters_by_type(uow, ports):
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    for n in range(7):  # two entries share each date: the id breaks the tie
        when = (start + timedelta(days=n // 2)).isoformat()
        kind = "call" if n % 3 == 0 else "note"
        commands.create_note(uow, {"customer_uuid": ACME, "type": kind, "text": f"n{n}", "created_at": when}, **ports)
    commands.create_note(uow, {"customer_uuid": GLOBEX, "type": "note", "text": "other"}, **ports)

    everything = feed_of(uow, ACME)
    assert [e["description"].split(": ")[1] for e in everything] == ["n6", "n5", "n4", "n3", "n2", "n1", "n0"]
    pages, cursor = [], None
    while True:
        page = commands.feed(uow, ACME, cursor=cursor, per_page=3)
        pages.append(page["entries"])
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    assert [len(p) for p in pages] == [3, 3, 1] and sum(pages, []) == everything
    calls = feed_of(uow, ACME, types="call")
    assert [e["description"].split(": ")[1] for e in calls] == ["n6", "n3", "n0"]
    assert feed_of(uow, ACME, types="call,note") == everything
    assert feed_of(uow, ACME, types=["mrr_movement"]) == []


def test_an_unknown_feed_type_is_a_400_naming_it(uow):
    with pytest.raises(BadRequest) as failure:
        commands.feed(uow, ACME, types="note,meeting")
    assert failure.value.param == "types" and "'meeting'" in failure.value.message


def test_a_forged_feed_cursor_is_a_400(uow):
    with pytest.raises(BadRequest):
        commands.feed(uow, ACME, cursor="not-a-cursor")


# ---- events from other services -----------------------------------------------------------------

def test_billing_events_make_feed_entries_and_mrr_activities(uow):
    handle(uow, "on_customer_created", customer_created_event(ACME))
    handle(uow, "on_mrr_movement_recorded", movement_event())
    handle(uow, "on_transaction_recorded", transaction_event())
    handle(uow, "on_transaction_recorded", transaction_event("tr_2", type="refund", result="failed",
                                                             amount_in_cents=-1250, currency="EUR"))

    descriptions = [(e["type"], e["description"]) for e in feed_of(uow, ACME)]
    assert descriptions == [  # newest first; the two transactions share a date, the later one first
        ("transaction", "Refund of €12.50 failed"),
        ("transaction", "Payment of $49.00 succeeded"),
        ("mrr_movement", "New business: purchased the Silver Monthly plan (+$49.00 MRR)"),
        ("event", "Customer created: Acme Inc"),
    ]
    [activity] = commands.list_activities(uow, {})["entries"]
    assert activity["customer_name"] == "Acme Inc" and activity["customer_external_id"] == f"ext-{ACME}"
    assert (activity["mrr_movement"], activity["mrr"], activity["arr"]) == (4900, 4900, 58800)


def test_a_redelivered_event_changes_nothing_and_the_same_fact_under_a_new_event_id_neither(uow):
    event = movement_event()
    handle(uow, "on_mrr_movement_recorded", event)
    with pytest.raises(AlreadyHandled):
        handle(uow, "on_mrr_movement_recorded", event)
    handle(uow, "on_mrr_movement_recorded", movement_event())  # same movement, new event id
    handle(uow, "on_transaction_recorded", transaction_event())
    handle(uow, "on_transaction_recorded", transaction_event())  # same transaction, new event id
    handle(uow, "on_customer_created", customer_created_event(ACME))
    handle(uow, "on_customer_created", customer_created_event(ACME))

    assert count(uow, FeedEntry) == 3 and count(uow, MrrActivity) == 1
    assert len(recorded(uow, "activity_recorded")) == 3


def test_a_retraction_drops_the_movement_even_when_it_arrives_first(uow):
    handle(uow, "on_mrr_movement_recorded", movement_event("mov_1"))
    handle(uow, "on_mrr_movement_retracted", envelope(customer_uuid=ACME, movement_uuid="mov_1"))
    handle(uow, "on_mrr_movement_retracted", envelope(customer_uuid=ACME, movement_uuid="mov_2"))
    handle(uow, "on_mrr_movement_recorded", movement_event("mov_2"))  # late copy of a retracted movement

    assert count(uow, FeedEntry) == 0 and count(uow, MrrActivity) == 0


def test_a_merge_moves_everything_to_the_survivor_and_says_so(uow, ports, customers):
    handle(uow, "on_customer_created", customer_created_event(GLOBEX, name="Globex"))
    commands.create_note(uow, {"customer_uuid": GLOBEX, "type": "note", "text": "x"}, **ports)
    commands.create_task(uow, {**TASK, "customer_uuid": GLOBEX}, **ports)
    commands.create_thread(uow, GLOBEX, THREAD, customers=customers)
    handle(uow, "on_mrr_movement_recorded", movement_event(customer_uuid=GLOBEX))

    handle(uow, "on_customer_merged", envelope(from_uuid=GLOBEX, into_uuid=ACME, into_external_id="a",
                                               moved_external_ids=[]))

    assert feed_of(uow, GLOBEX) == []
    kinds = sorted(e["kind"] for e in feed_of(uow, ACME))
    assert kinds == ["customer_created", "customer_merged", "new_biz", "note", "thread"]
    merged = next(e for e in feed_of(uow, ACME) if e["kind"] == "customer_merged")
    assert merged["description"] == "Customer merged: Globex was merged into this customer"
    assert count(uow, Task, customer_uuid=ACME) == 1 and count(uow, Thread, customer_uuid=ACME) == 1
    assert commands.customer_activities(uow, ACME)["entries"][0]["customer_uuid"] == ACME
    # A fact about the merged-away customer that arrives late lands on the survivor.
    handle(uow, "on_transaction_recorded", transaction_event(customer_uuid=GLOBEX))
    assert [e["kind"] for e in feed_of(uow, ACME, types="transaction")] == ["payment"]


def test_merges_of_merges_land_on_the_last_survivor_whatever_the_order(uow, ports):
    commands.create_note(uow, {"customer_uuid": GLOBEX, "type": "note", "text": "x"}, **ports)
    # INITECH was merged into ACME after GLOBEX into INITECH, but the later merge is handled first.
    handle(uow, "on_customer_merged", envelope(from_uuid=INITECH, into_uuid=ACME))
    handle(uow, "on_customer_merged", envelope(from_uuid=GLOBEX, into_uuid=INITECH))
    handle(uow, "on_transaction_recorded", transaction_event(customer_uuid=GLOBEX))  # late, two merges away

    assert count(uow, Note, customer_uuid=ACME) == 1
    assert sorted(e["kind"] for e in feed_of(uow, ACME)) == ["customer_merged", "customer_merged", "note", "payment"]
    assert count(uow, FeedEntry, customer_uuid=ACME) == count(uow, FeedEntry)


def test_a_deleted_customer_loses_everything_and_late_facts_about_it_are_dropped(uow, ports, customers):
    handle(uow, "on_customer_created", customer_created_event(ACME))
    commands.create_note(uow, {"customer_uuid": ACME, "type": "note", "text": "x"}, **ports)
    commands.create_thread(uow, ACME, THREAD, customers=customers)
    commands.create_note(uow, {"customer_uuid": GLOBEX, "type": "note", "text": "kept"}, **ports)

    handle(uow, "on_customer_deleted", envelope(uuid=ACME, external_ids=[], data_source_uuids=[]))
    handle(uow, "on_mrr_movement_recorded", movement_event())
    handle(uow, "on_customer_created", customer_created_event(ACME))  # delivered late, on its own queue

    assert feed_of(uow, ACME) == [] and count(uow, Note, customer_uuid=ACME) == 0
    assert count(uow, ThreadMessage) == 0 and count(uow, MrrActivity) == 0
    assert count(uow, Note, customer_uuid=GLOBEX) == 1


def test_a_contact_created_is_an_event_of_its_customer(uow):
    handle(uow, "on_contact_created", envelope(uuid=JANE, customer_uuid=ACME, contact={
        "uuid": JANE, "customer_uuid": ACME, "first_name": "Jane", "last_name": "Doe", "email": "jane@acme.example",
        "created_at": "2024-01-02T00:00:00Z"}))

    [entry] = feed_of(uow, ACME)
    assert (entry["kind"], entry["source_id"], entry["date"]) == ("contact_created", JANE, "2024-01-02T00:00:00Z")
    assert entry["description"] == "Contact created: Jane Doe (jane@acme.example)"


JOHN, BOB = "con_john", "con_bob"


def contact_records(uow, ports, contact=JANE):
    """A call and a completed task on `contact`; return their uuids."""
    of_contact = {"associated_object_identifier": {"associated_object": "contact", "method": "uuid", "value": contact}}
    call = commands.create_note(uow, {**of_contact, "type": "call", "text": "Discussed pricing"}, **ports)
    task = commands.create_task(uow, {**{k: v for k, v in TASK.items() if k != "customer_uuid"}, **of_contact,
                                      "completed_at": "2024-04-01T00:00:00Z"}, **ports)
    return call["uuid"], task["task_uuid"]


def of_contact(uow, contact):
    return ([note["uuid"] for note in commands.list_notes(uow, {"contact_uuid": contact})["entries"]],
            [task["task_uuid"] for task in commands.list_tasks(uow, {"contact_uuid": contact})["entries"]])


def test_a_merged_away_contacts_notes_and_tasks_go_to_the_surviving_contact(uow, ports):
    call, task = contact_records(uow, ports)
    handle(uow, "on_contact_merged", envelope(into_uuid=JOHN, from_uuid=JANE, customer_uuid=ACME, contact={}))

    assert of_contact(uow, JOHN) == ([call], [task]) and of_contact(uow, JANE) == ([], [])
    assert {entry["source_id"] for entry in feed_of(uow, ACME)} == {call, task}  # still on the same customer


def test_a_contact_merged_into_another_customers_contact_takes_its_records_and_their_feed_entries_along(uow, ports):
    call, task = contact_records(uow, ports)
    handle(uow, "on_customer_merged", envelope(from_uuid=GLOBEX, into_uuid=INITECH))  # BOB's customer moved on
    handle(uow, "on_contact_merged", envelope(into_uuid=BOB, from_uuid=JANE, customer_uuid=GLOBEX, contact={}))

    assert of_contact(uow, BOB) == ([call], [task])
    assert feed_of(uow, ACME) == []
    assert {entry["source_id"] for entry in feed_of(uow, INITECH)} >= {call, task}
    assert [note["uuid"] for note in commands.list_notes(uow, {"any_customer_uuid": INITECH})["entries"]] == [call]


def test_a_merge_into_a_contact_merged_on_or_deleted_first_follows_it(uow, ports):
    """The events come on separate queues: a merge may be handled after what happened to its survivor."""
    call, task = contact_records(uow, ports)
    handle(uow, "on_contact_merged", envelope(into_uuid=BOB, from_uuid=JOHN, customer_uuid=GLOBEX, contact={}))
    handle(uow, "on_contact_merged", envelope(into_uuid=JOHN, from_uuid=JANE, customer_uuid=ACME, contact={}))
    assert of_contact(uow, BOB) == ([call], [task]) and of_contact(uow, JOHN) == ([], [])
    assert {entry["source_id"] for entry in feed_of(uow, GLOBEX)} == {call, task}

    handle(uow, "on_contact_deleted", envelope(uuid="con_gone", customer_uuid=GLOBEX))
    handle(uow, "on_contact_merged", envelope(into_uuid="con_gone", from_uuid=BOB, customer_uuid=GLOBEX, contact={}))
    assert of_contact(uow, "con_gone") == ([], []) and of_contact(uow, BOB) == ([], [])
    assert [note["uuid"] for note in commands.list_notes(uow, {"customer_uuid": GLOBEX})["entries"]] == [call]


def test_a_note_or_task_for_a_contact_deleted_or_merged_away_meanwhile_is_refused(uow, ports):
    """The contacts service still knew the contact when asked; its event was handled before the write."""
    handle(uow, "on_contact_merged", envelope(into_uuid=JOHN, from_uuid=JANE, customer_uuid=ACME, contact={}))
    with pytest.raises(ValidationFailed, match=f"contact {JANE} was merged into {JOHN}"):
        contact_records(uow, ports)
    handle(uow, "on_contact_deleted", envelope(uuid=JOHN, customer_uuid=ACME))
    ports["contacts"].contacts[JOHN] = ACME
    with pytest.raises(ValidationFailed, match=f"contact {JOHN} was deleted"):
        contact_records(uow, ports, contact=JOHN)
    assert count(uow, Note) == 0 and count(uow, Task) == 0


def test_a_deleted_contacts_notes_and_tasks_stay_with_its_customer(uow, ports):
    call, task = contact_records(uow, ports)
    payload = envelope(uuid=JANE, customer_uuid=ACME, data_source_uuid="ds_1", external_id=None, reason="deleted")
    handle(uow, "on_contact_deleted", payload)

    assert of_contact(uow, JANE) == ([], [])
    assert [note["uuid"] for note in commands.list_notes(uow, {"customer_uuid": ACME})["entries"]] == [call]
    assert [entry["task_uuid"] for entry in commands.list_tasks(uow, {"customer_uuid": ACME})["entries"]] == [task]
    assert {entry["source_id"] for entry in feed_of(uow, ACME)} == {call, task}
    with pytest.raises(AlreadyHandled):
        handle(uow, "on_contact_deleted", payload)


def test_a_rename_reaches_the_activity_list_even_before_the_creation(uow):
    handle(uow, "on_customer_updated", envelope(uuid=ACME, changes={"name": "Acme Renamed"}))
    handle(uow, "on_customer_created", customer_created_event(ACME, name="Acme Inc"))
    handle(uow, "on_mrr_movement_recorded", movement_event())

    assert commands.list_activities(uow, {})["entries"][0]["customer_name"] == "Acme Renamed"


def test_a_rename_after_the_creation_reaches_the_activity_list(uow):
    handle(uow, "on_customer_created", customer_created_event(ACME, name="Acme Inc"))
    handle(uow, "on_mrr_movement_recorded", movement_event())
    handle(uow, "on_customer_updated", envelope(uuid=ACME, changes={"name": "Acme Renamed"}))
    handle(uow, "on_customer_updated", envelope(uuid=ACME, changes={"email": "x@acme.example"}))  # no name

    [activity] = commands.list_activities(uow, {})["entries"]
    assert (activity["customer_name"], activity["customer_external_id"]) == ("Acme Renamed", f"ext-{ACME}")


def test_a_creation_handled_after_a_rename_keeps_the_name_and_takes_the_external_id(uow):
    handle(uow, "on_customer_updated", envelope(uuid=ACME, changes={"name": "Acme Renamed"}))
    handle(uow, "on_customer_created", customer_created_event(ACME, name="Acme Inc"))
    handle(uow, "on_mrr_movement_recorded", movement_event())

    [activity] = commands.list_activities(uow, {})["entries"]
    assert (activity["customer_name"], activity["customer_external_id"]) == ("Acme Renamed", f"ext-{ACME}")
    assert [e["kind"] for e in feed_of(uow, ACME)] == ["new_biz", "customer_created"]


def test_a_creation_handled_after_a_fact_about_the_customer_names_it(uow):
    handle(uow, "on_mrr_movement_recorded", movement_event())  # billing's queue was faster
    handle(uow, "on_customer_created", customer_created_event(ACME, name="Acme Inc"))

    [activity] = commands.list_activities(uow, {})["entries"]
    assert (activity["customer_name"], activity["customer_external_id"]) == ("Acme Inc", f"ext-{ACME}")
    assert [e["kind"] for e in feed_of(uow, ACME)] == ["new_biz", "customer_created"]


def test_a_creation_handled_after_the_customers_merge_lands_on_the_survivor_and_names_the_merge(uow):
    handle(uow, "on_customer_merged", envelope(from_uuid=GLOBEX, into_uuid=ACME))
    assert [e["description"] for e in feed_of(uow, ACME)] == [
        f"Customer merged: {GLOBEX} was merged into this customer"]  # all it knows of GLOBEX yet
    handle(uow, "on_customer_created", customer_created_event(GLOBEX, name="Globex"))

    assert feed_of(uow, GLOBEX) == []
    assert sorted(e["description"] for e in feed_of(uow, ACME)) == [
        "Customer created: Globex", "Customer merged: Globex was merged into this customer"]
    handle(uow, "on_customer_updated", envelope(uuid=GLOBEX, changes={"name": "Globex Corp"}))
    assert "Customer merged: Globex was merged into this customer" in [  # a later rename leaves history be
        e["description"] for e in feed_of(uow, ACME)]


def test_a_creation_handled_after_the_customers_deletion_records_nothing(uow):
    handle(uow, "on_customer_deleted", envelope(uuid=ACME, external_ids=[], data_source_uuids=[]))
    handle(uow, "on_customer_created", customer_created_event(ACME))

    assert count(uow, FeedEntry) == 0 and recorded(uow, "activity_recorded") == []


@pytest.mark.parametrize("handler, event", [
    ("on_mrr_movement_recorded", movement_event(type="upsell")),
    ("on_mrr_movement_recorded", movement_event(mrr_movement="12.5")),
    ("on_mrr_movement_recorded", envelope(customer_uuid=ACME)),
    ("on_transaction_recorded", transaction_event(result="pending")),
    ("on_customer_merged", envelope(from_uuid=ACME)),
    ("on_customer_updated", envelope(uuid=ACME, changes={"name": 42})),
    ("on_customer_updated", envelope(uuid=ACME, changes={"name": "x" * 501})),
    ("on_customer_updated", envelope(uuid=ACME, changes=["name"])),
    ("on_customer_updated", envelope(uuid="c" * 41, changes={"name": "Acme"})),
    ("on_customer_created", envelope(customer={"uuid": ACME, "name": ["Acme"]})),
    ("on_customer_created", envelope(customer={"uuid": ACME, "external_id": 7})),
    ("on_customer_created", envelope(customer={"uuid": 7})),
    ("on_customer_created", envelope(customer="Acme")),
    ("on_contact_merged", envelope(into_uuid=JOHN, customer_uuid=ACME)),
    ("on_contact_merged", envelope(into_uuid=JOHN, from_uuid=["x"], customer_uuid=ACME)),
    ("on_contact_deleted", envelope(uuid="c" * 61)),
    ("on_contact_merged", envelope(into_uuid=JOHN, from_uuid=JANE, customer_uuid="c" * 41)),
])
def test_a_malformed_event_is_unprocessable(uow, handler, event):
    with pytest.raises(UnprocessableEvent):
        handle(uow, handler, event)
    assert count(uow, FeedEntry) == 0


# ---- the MRR activity lists ---------------------------------------------------------------------

def test_activities_filter_by_dates_and_type_and_page_in_either_order(uow):
    for day, kind in ((1, "new_biz"), (2, "expansion"), (3, "contraction"), (4, "expansion"), (5, "churn")):
        handle(uow, "on_mrr_movement_recorded", movement_event(f"mov_{day}", type=kind,
                                                               date=f"2024-03-0{day}T12:00:00Z"))

    def uuids(query, per_page=None):
        found, cursor = [], None
        while True:
            page = commands.list_activities(uow, query, cursor=cursor, per_page=per_page)
            found += [entry["uuid"] for entry in page["entries"]]
            cursor = page["cursor"]
            if not page["has_more"]:
                return found

    assert uuids({}) == ["mov_5", "mov_4", "mov_3", "mov_2", "mov_1"]
    assert uuids({"order": "date"}, per_page=2) == ["mov_1", "mov_2", "mov_3", "mov_4", "mov_5"]
    assert uuids({"start-date": "2024-03-02", "end-date": "2024-03-04"}, per_page=1) == ["mov_4", "mov_3", "mov_2"]
    assert uuids({"type": "expansion", "order": "date"}) == ["mov_2", "mov_4"]


@pytest.mark.parametrize("query, param", [
    ({"type": "upsell"}, "type"), ({"order": "name"}, "order"), ({"start-date": "yesterday"}, "start-date"),
    ({"start-date": "2024-03-05", "end-date": "2024-03-01"}, "end-date"),
])
def test_a_bad_activities_filter_is_a_400_naming_it(uow, query, param):
    with pytest.raises(BadRequest) as failure:
        commands.list_activities(uow, query)
    assert failure.value.param == param


# ---- a batch of events at once (the handlers' bulk= path) ------------------------------------------

def history(uow) -> dict:
    """What the events left behind, without the uuids this service makes up."""
    with uow.read() as session:
        feed = sorted((e.fact, e.customer_uuid, e.type, e.kind, e.date.isoformat(), e.description, e.source_id)
                      for e in session.scalars(select(FeedEntry)))
        activities = sorted((a.uuid, a.customer_uuid, a.type, a.mrr_movement) for a in session.scalars(select(MrrActivity)))
        customers = sorted((c.uuid, c.name, c.external_id, c.merged_into, c.deleted_at is None)
                           for c in session.scalars(select(Customer)))
    announced = sorted((event["customer_uuid"], event["activity"]["source_id"], event["activity"]["kind"])
                       for event in recorded(uow, "activity_recorded"))
    return {"feed": feed, "mrr_activities": activities, "customers": customers, "announced": announced}


def handled_both_ways(tmp_path, before: list, handler: str, bulk: str, payloads: list) -> tuple[dict, dict]:
    """Handle `before` ((handler, payload), one by one), then `payloads` once one by one with
    `handler` and once in one batch with `bulk`, each on a database of its own; return both histories."""
    from roster.handlers import EventBatch, _batch_runner

    def scene(folder):
        uow = unit_of_work(Base, bookkeeping, folder)
        for name, payload in before:
            handle(uow, name, payload)
        return uow

    one_by_one = scene(tmp_path / "one")
    for payload in payloads:
        handle(one_by_one, handler, payload)

    class Service:
        def __init__(self, uow):
            self.uow = uow

        def handle(self, payload):
            raise AssertionError("the batch goes in bulk")

        def bulk(self, payloads):
            getattr(commands, bulk)(self.uow, payloads)

    at_once = scene(tmp_path / "bulk")
    assert _batch_runner("handle", bulk="bulk")(Service(at_once), EventBatch(payloads)) == [None] * len(payloads)
    return history(one_by_one), history(at_once)


BILLING_SCENE = [("on_customer_created", customer_created_event(uuid)) for uuid in (ACME, GLOBEX, INITECH)] + [
    ("on_customer_merged", envelope(from_uuid=GLOBEX, into_uuid=ACME, into_external_id="a", from_external_id="g")),
    ("on_customer_deleted", envelope(uuid=INITECH, external_ids=[], data_source_uuids=[])),
    ("on_mrr_movement_retracted", envelope(movement_uuid="mov_retracted"))]


def test_a_batch_of_mrr_movements_handled_at_once_leaves_what_handling_them_one_by_one_leaves(tmp_path):
    movements = [movement_event("mov_1"), movement_event("mov_globex", customer_uuid=GLOBEX),
                 movement_event("mov_gone", customer_uuid=INITECH), movement_event("mov_new", customer_uuid="cus_new"),
                 movement_event("mov_1"),  # the same movement under another event id
                 movement_event("mov_retracted"), movement_event("mov_2", type="expansion", mrr_movement=100)]
    expected, at_once = handled_both_ways(tmp_path, BILLING_SCENE, "on_mrr_movement_recorded",
                                          "on_mrr_movements_recorded", movements)
    assert at_once == expected
    billing = sorted((customer, source) for customer, source, kind in expected["announced"]
                     if kind in ("new_biz", "expansion"))
    assert billing == [(ACME, "mov_1"), (ACME, "mov_2"), (ACME, "mov_globex"),
                       ("cus_new", "mov_new")]  # once each; globex's on acme; gone and retracted: none


def test_a_batch_of_transactions_handled_at_once_leaves_what_handling_them_one_by_one_leaves(tmp_path):
    transactions = [transaction_event("tr_1"), transaction_event("tr_gone", customer_uuid=INITECH),
                    transaction_event("tr_globex", customer_uuid=GLOBEX), transaction_event("tr_1")]
    expected, at_once = handled_both_ways(tmp_path, BILLING_SCENE, "on_transaction_recorded",
                                          "on_transactions_recorded", transactions)
    assert at_once == expected
    assert sorted((c, s) for c, s, kind in expected["announced"] if kind == "payment") == [
        (ACME, "tr_1"), (ACME, "tr_globex")]


def test_a_batch_of_created_customers_handled_at_once_leaves_what_handling_them_one_by_one_leaves(tmp_path):
    before = [("on_customer_updated", envelope(uuid=GLOBEX, changes={"name": "Globex Corp"})),
              ("on_customer_merged", envelope(from_uuid=INITECH, into_uuid=ACME, into_external_id="a",
                                              from_external_id="i"))]
    created = [customer_created_event(ACME), customer_created_event(GLOBEX, name="Globex"),
               customer_created_event(INITECH, name="Initech"), customer_created_event("cus_new", name=""),
               customer_created_event(ACME)]  # the same customer under another event id
    expected, at_once = handled_both_ways(tmp_path, before, "on_customer_created", "on_customers_created", created)
    assert at_once == expected
    assert sorted((c, s) for c, s, kind in expected["announced"] if kind == "customer_created") == [
        (ACME, ACME), (ACME, INITECH), (GLOBEX, GLOBEX), ("cus_new", "cus_new")]  # initech's on acme, once each


# ---- reviewer's findings: custom limits on every PATCH, whole-day task bounds, the end of time

def test_an_opportunitys_custom_fields_are_limited_on_every_patch_against_the_merged_result(uow, customers):
    opportunity = commands.create_opportunity(uow, {
        "customer_uuid": ACME, "owner": "sam@us.example", "pipeline": "P", "pipeline_stage": "S",
        "estimated_close_date": "2024-12-22", "currency": "USD", "amount_in_cents": 100,
        "custom": {"a": "x" * 40_000}}, customers=customers)
    with pytest.raises(ValidationFailed) as failure:
        commands.update_opportunity(uow, opportunity["uuid"], {"custom": {"b": "y" * 40_000}})
    assert failure.value.param == "custom"
    assert commands.get_opportunity(uow, opportunity["uuid"])["custom"] == {"a": "x" * 40_000}
    swapped = commands.update_opportunity(uow, opportunity["uuid"], {"custom": {"a": None, "b": "y" * 40_000}})
    assert swapped["custom"] == {"b": "y" * 40_000}  # removing a key makes room


def test_a_date_only_due_date_on_or_before_covers_that_whole_day(uow, ports):
    noon = commands.create_task(uow, {"customer_uuid": ACME, "task_details": "x", "assignee": "sam@us.example",
                                      "due_date": "2024-03-10T12:00:00Z"}, **ports)
    commands.create_task(uow, {"customer_uuid": ACME, "task_details": "y", "assignee": "sam@us.example",
                               "due_date": "2024-03-11T00:00:00Z"}, **ports)

    def due(**filters):
        return [task["task_uuid"] for task in commands.list_tasks(uow, filters)["entries"]]

    assert due(due_date_on_or_before="2024-03-10") == [noon["task_uuid"]]
    assert due(due_date_on_or_before="2024-03-10T12:00:00Z") == [noon["task_uuid"]]
    assert due(due_date_on_or_before="2024-03-10T11:59:59Z") == []
    assert len(due(due_date_on_or_before="9999-12-31")) == 2


@pytest.mark.parametrize("end", ["9999-12-31", "9999-12-31T23:59:59.999999"])
def test_activities_up_to_the_end_of_time(uow, end):
    handle(uow, "on_mrr_movement_recorded", movement_event(uuid="mov_1"))
    entries = commands.list_activities(uow, {"end-date": end})["entries"]
    assert [entry["uuid"] for entry in entries] == ["mov_1"]
