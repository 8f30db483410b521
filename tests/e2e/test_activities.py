"""Notes, call logs, tasks, opportunities and email threads end to end: the official client against
the gateway, raw HTTP for the feed, the threads and every error."""
import chartmogul
import pytest

from tests.e2e.activities_support import feed
from tests.e2e.support import eventually, status_of, unique


@pytest.fixture(scope="module")
def data_source(owner):
    return chartmogul.DataSource.create(owner, data={"name": unique("activities-e2e")}).get()


@pytest.fixture
def new_customer(owner, data_source):
    def make(**fields):
        data = {"data_source_uuid": data_source.uuid, "external_id": unique("cus"), "name": "Acme", **fields}
        return chartmogul.Customer.create(owner, data=data).get()

    return make


@pytest.fixture
def new_contact(owner, data_source):
    def make(customer, **fields):
        data = {"customer_uuid": customer.uuid, "data_source_uuid": data_source.uuid, "first_name": "Jane",
                "email": "jane@acme.example", **fields}
        return chartmogul.Contact.create(owner, data=data).get()

    return make


# ---- notes and call logs ------------------------------------------------------------------------

def test_a_merged_or_deleted_contacts_calls_follow_the_survivor_or_stay_with_the_customer(owner, new_customer,
                                                                                          new_contact):
    customer, other = new_customer(), new_customer()
    jane, john, bob = new_contact(customer), new_contact(customer, first_name="John"), new_contact(other)
    call = chartmogul.Contact.createEntityNote(owner, uuid=jane.uuid, data={"type": "call", "text": "Pricing"}).get()
    contact_calls = lambda contact: [n.uuid for n in chartmogul.Contact.entityNotes(owner, uuid=contact.uuid).get().entries]  # noqa: E731

    chartmogul.Contact.merge(owner, into_uuid=john.uuid, from_uuid=jane.uuid).get()
    eventually(lambda: contact_calls(john) == [call.uuid])
    chartmogul.Contact.merge(owner, into_uuid=bob.uuid, from_uuid=john.uuid).get()  # onto another customer
    eventually(lambda: contact_calls(bob) == [call.uuid])
    chartmogul.Contact.destroy(owner, uuid=bob.uuid).get()
    eventually(lambda: [n.uuid for n in chartmogul.Customer.entityNotes(owner, uuid=other.uuid).get().entries]
               == [call.uuid])


def test_entity_notes_with_the_official_client(owner, http, new_customer, new_contact):
    customer = new_customer()
    contact = new_contact(customer)

    note = chartmogul.Customer.createEntityNote(owner, uuid=customer.uuid, data={
        "type": "note", "text": "Renewal next month", "author_email": "sam@us.example"}).get()
    assert isinstance(note, chartmogul.EntityNote) and note.uuid.startswith("note_")
    assert (note.customer_uuid, note.associated_object, note.associated_object_uuid) == \
        (customer.uuid, "customer", customer.uuid)
    assert (note.type, note.text, note.author, note.call_duration) == ("note", "Renewal next month",
                                                                       "sam@us.example", 0)

    call = chartmogul.Contact.createEntityNote(owner, uuid=contact.uuid, data={
        "type": "call", "text": "Pricing call", "call_duration": 300}).get()
    assert (call.customer_uuid, call.associated_object, call.associated_object_uuid) == (None, "contact", contact.uuid)
    assert call.call_duration == 300

    listed = chartmogul.Customer.entityNotes(owner, uuid=customer.uuid).get()
    assert [n.uuid for n in listed.entries] == [note.uuid] and listed.has_more is False
    assert [n.uuid for n in chartmogul.Contact.entityNotes(owner, uuid=contact.uuid).get().entries] == [call.uuid]
    assert [n.uuid for n in chartmogul.EntityNote.all(owner, contact_uuid=contact.uuid, type="call").get().entries] \
        == [call.uuid]

    fetched = chartmogul.EntityNote.retrieve(owner, uuid=note.uuid).get()
    assert (fetched.uuid, fetched.text) == (note.uuid, note.text)
    patched = chartmogul.EntityNote.patch(owner, uuid=note.uuid, data={"text": "Renewal in June"}).get()
    assert patched.text == "Renewal in June" and patched.updated_at >= note.updated_at
    assert chartmogul.EntityNote.patch(owner, uuid=note.uuid, data={}).get() is None  # 304: nothing changed

    assert chartmogul.EntityNote.destroy(owner, uuid=call.uuid).get() is None  # 202
    with pytest.raises(chartmogul.APIError) as missing:
        chartmogul.EntityNote.retrieve(owner, uuid=call.uuid).get()
    assert status_of(missing.value) == 404
    assert [e["source_id"] for e in feed(http, customer.uuid, types="note,call")] == [note.uuid]


def test_legacy_customer_notes_with_the_official_client(owner, new_customer, http):
    customer = new_customer()
    with pytest.warns(DeprecationWarning):
        created = chartmogul.Customer.createNote(owner, uuid=customer.uuid, data={
            "type": "call", "text": "Intro call", "author_email": "sam@us.example", "call_duration": 65}).get()
    assert isinstance(created, chartmogul.CustomerNote)
    assert (created.customer_uuid, created.type, created.call_duration) == (customer.uuid, "call", 65)
    note = chartmogul.CustomerNote.create(owner, data={"customer_uuid": customer.uuid, "type": "note",
                                                       "text": "Sent the deck"}).get()
    assert note.call_duration == 0 and note.author == ""  # never null

    page = chartmogul.Customer.notes(owner, uuid=customer.uuid).get()
    assert [n.uuid for n in page.entries] == [created.uuid, note.uuid] and page.has_more is False
    assert [n.uuid for n in chartmogul.CustomerNote.all(owner, customer_uuid=customer.uuid, type="note",
                                                        per_page=1).get().entries] == [note.uuid]
    raw = http.get("/v1/customer_notes", params={"customer_uuid": customer.uuid, "per_page": 1}).json()
    assert set(raw) == {"entries", "has_more", "cursor"} and raw["has_more"] is True and raw["cursor"]
    last = http.get("/v1/customer_notes", params={"customer_uuid": customer.uuid, "cursor": raw["cursor"]}).json()
    assert last["has_more"] is False and last["cursor"] is None and "cursor" in last  # both keys, always

    assert chartmogul.CustomerNote.retrieve(owner, uuid=note.uuid).get().text == "Sent the deck"
    modified = chartmogul.CustomerNote.modify(owner, uuid=note.uuid, data={"text": "Sent the deck v2"}).get()
    assert modified.text == "Sent the deck v2"
    assert isinstance(chartmogul.CustomerNote.destroy(owner, uuid=note.uuid).get(), chartmogul.CustomerNote)
    assert [n.uuid for n in chartmogul.Customer.notes(owner, uuid=customer.uuid).get().entries] == [created.uuid]


@pytest.mark.parametrize("body, field", [
    ({"type": "call", "call_duration": -5}, "call_duration"),
    ({"type": "call", "call_duration": 1.5}, "call_duration"),
    ({"type": "call", "call_duration": "sixty"}, "call_duration"),
    ({"type": "note", "call_duration": 60}, "call_duration"),
    ({"type": "meeting"}, "type"),
    ({"type": "note", "author_email": "sam"}, "author_email"),
])
def test_a_bad_note_is_a_422_naming_the_field_and_nothing_is_stored(http, new_customer, body, field):
    customer = new_customer()
    for path in ("/v1/notes", "/v1/customer_notes"):
        response = http.post(path, json={"customer_uuid": customer.uuid, "text": "x", **body})
        assert response.status_code == 422, response.text
        assert response.json()["param"] == field and response.json()["message"].startswith(f"{field}: ")
    assert http.get("/v1/notes", params={"customer_uuid": customer.uuid}).json()["entries"] == []
    assert http.get(f"/v1/customers/{customer.uuid}/feed", params={"types": "note,call"}).json()["entries"] == []


def test_an_unknown_customer_or_contact_is_a_422(http, owner):
    for path, body in (("/v1/notes", {"type": "note"}), ("/v1/customer_notes", {"type": "note"}),
                       ("/v1/tasks", {"task_details": "x", "assignee": "a@b.co", "due_date": "2024-01-01"}),
                       ("/v1/opportunities", {"owner": "a@b.co", "pipeline": "P", "pipeline_stage": "S",
                                              "estimated_close_date": "2024-01-01", "currency": "USD",
                                              "amount_in_cents": 1})):
        response = http.post(path, json={"customer_uuid": "cus_nobody", **body})
        assert response.status_code == 422, (path, response.text)
        assert response.json()["param"] == "customer_uuid"
    response = http.post("/v1/notes", json={"type": "note", "associated_object_identifier": {
        "associated_object": "contact", "method": "uuid", "value": "con_nobody"}})
    assert (response.status_code, response.json()["param"]) == (422, "associated_object_identifier.value")
    with pytest.raises(chartmogul.APIError) as refused:
        chartmogul.EntityNote.create(owner, data={"customer_uuid": "cus_nobody", "type": "note"}).get()
    assert status_of(refused.value) == 422


def test_a_read_only_key_reads_but_does_not_write(http, new_customer):
    customer = new_customer()
    assert http.post("/v1/notes", role="read_only", json={"customer_uuid": customer.uuid,
                                                          "type": "note"}).status_code == 403
    assert http.get("/v1/notes", role="read_only").status_code == 200
    assert http.get(f"/v1/customers/{customer.uuid}/feed", role=None).status_code == 401


# ---- tasks --------------------------------------------------------------------------------------

def test_tasks_with_the_official_client_and_completion_in_the_feed(owner, http, new_customer, new_contact):
    customer = new_customer()
    contact = new_contact(customer)
    task = chartmogul.Customer.createTask(owner, uuid=customer.uuid, data={
        "task_details": "Send the renewal quote", "assignee": "sam@us.example",
        "due_date": "2025-04-30T00:00:00Z"}).get()
    assert isinstance(task, chartmogul.Task) and task.task_uuid and task.completed_at is None
    assert (task.customer_uuid, task.associated_object) == (customer.uuid, "customer")
    contact_task = chartmogul.Contact.createTask(owner, uuid=contact.uuid, data={
        "task_details": "Call Jane", "assignee": "sam@us.example", "due_date": "2025-05-01"}).get()
    assert (contact_task.customer_uuid, contact_task.associated_object_uuid) == (None, contact.uuid)

    listed = chartmogul.Customer.tasks(owner, uuid=customer.uuid).get()
    assert [t.task_uuid for t in listed.entries] == [task.task_uuid] and listed.cursor is None
    assert [t.task_uuid for t in chartmogul.Contact.tasks(owner, uuid=contact.uuid).get().entries] == \
        [contact_task.task_uuid]
    assert chartmogul.Task.all(owner, customer_uuid=customer.uuid, completed=True).get().entries == []
    assert chartmogul.Task.retrieve(owner, uuid=task.task_uuid).get().task_details == "Send the renewal quote"

    done = chartmogul.Task.patch(owner, uuid=task.task_uuid, data={"completed_at": "2025-04-20T00:00:00Z"}).get()
    assert done.completed_at.year == 2025
    assert chartmogul.Task.patch(owner, uuid=task.task_uuid, data={"completed_at": "2025-04-20"}).get() is None
    assert [t.task_uuid for t in chartmogul.Task.all(owner, customer_uuid=customer.uuid,
                                                     completed=True).get().entries] == [task.task_uuid]
    [entry] = [e for e in feed(http, customer.uuid, types="event") if e["kind"] == "task_completed"]
    assert (entry["kind"], entry["source_id"], entry["date"]) == ("task_completed", task.task_uuid,
                                                                  "2025-04-20T00:00:00Z")
    assert entry["description"] == "Task completed: Send the renewal quote (assigned to sam@us.example)"

    assert isinstance(chartmogul.Task.destroy(owner, uuid=task.task_uuid).get(), chartmogul.Task)
    assert all(e["source_id"] != task.task_uuid for e in feed(http, customer.uuid))
    bad = http.post("/v1/tasks", json={"customer_uuid": customer.uuid, "task_details": "x",
                                       "assignee": "sam@us.example", "due_date": "soon"})
    assert (bad.status_code, bad.json()["param"]) == (422, "due_date")


# ---- opportunities ------------------------------------------------------------------------------

def test_opportunities_with_the_official_client_and_creation_in_the_feed(owner, http, new_customer):
    customer = new_customer()
    created = chartmogul.Customer.createOpportunity(owner, uuid=customer.uuid, data={
        "owner": "sam@us.example", "pipeline": "New business", "pipeline_stage": "Discovery",
        "estimated_close_date": "2025-12-22", "currency": "USD", "amount_in_cents": 120000, "type": "recurring",
        "forecast_category": "pipeline", "win_likelihood": 3, "custom": [{"key": "from_campaign", "value": True}],
    }).get()
    assert isinstance(created, chartmogul.Opportunity)
    assert (created.customer_uuid, created.amount_in_cents, created.win_likelihood) == (customer.uuid, 120000, 3)
    assert created.estimated_close_date.isoformat() == "2025-12-22" and created.custom == {"from_campaign": True}

    page = chartmogul.Customer.opportunities(owner, uuid=customer.uuid).get()
    assert [o.uuid for o in page.entries] == [created.uuid] and page.has_more is False and page.cursor is None
    assert [o.uuid for o in chartmogul.Opportunity.all(owner, pipeline="New business",
                                                       customer_uuid=customer.uuid).get().entries] == [created.uuid]
    patched = chartmogul.Opportunity.patch(owner, uuid=created.uuid,
                                           data={"estimated_close_date": "2026-01-15"}).get()
    assert patched.estimated_close_date.isoformat() == "2026-01-15"
    assert chartmogul.Opportunity.retrieve(owner, uuid=created.uuid).get().pipeline_stage == "Discovery"
    [entry] = [e for e in feed(http, customer.uuid, types="event") if e["kind"] == "opportunity_created"]
    assert entry["kind"] == "opportunity_created" and entry["source_id"] == created.uuid
    assert entry["description"] == \
        "Opportunity created: $1,200.00 in New business at Discovery, closing 2025-12-22"

    assert isinstance(chartmogul.Opportunity.destroy(owner, uuid=created.uuid).get(), chartmogul.Opportunity)
    assert chartmogul.Opportunity.all(owner, customer_uuid=customer.uuid).get().entries == []


# ---- email threads and the feed (our own routes) ------------------------------------------------

def test_logging_an_email_thread_shows_it_in_the_feed(http, new_customer):
    customer = new_customer()
    thread = http.post(f"/v1/customers/{customer.uuid}/threads", json={
        "subject": "Renewal", "participants": ["jane@acme.example"],
        "messages": [{"direction": "outbound", "sender": "sam@us.example", "sent_at": "2024-02-01T09:00:00Z",
                      "body": "Here is the offer"}]})
    assert thread.status_code == 201, thread.text
    thread = thread.json()
    assert thread["uuid"].startswith("thr_") and thread["message_count"] == 1

    reply = http.post(f"/v1/customers/{customer.uuid}/threads/{thread['uuid']}/messages", json={"messages": [
        {"direction": "inbound", "sender": "jane@acme.example", "sent_at": "2024-02-02 10:00:00", "body": "Thanks"}]})
    assert reply.status_code == 201 and reply.json()["message_count"] == 2
    listed = http.get(f"/v1/customers/{customer.uuid}/threads").json()
    assert [t["uuid"] for t in listed["entries"]] == [thread["uuid"]] and listed["cursor"] is None
    one = http.get(f"/v1/customers/{customer.uuid}/threads/{thread['uuid']}").json()
    assert [m["body"] for m in one["messages"]] == ["Here is the offer", "Thanks"]

    [entry] = feed(http, customer.uuid, types="thread")
    assert (entry["type"], entry["source_id"], entry["date"]) == ("thread", thread["uuid"], "2024-02-02T10:00:00Z")
    assert entry["description"] == "Email thread “Renewal” with jane@acme.example (2 messages)"

    bad = http.post(f"/v1/customers/{customer.uuid}/threads", json={
        "subject": "x", "participants": ["jane"], "messages": []})
    assert (bad.status_code, bad.json()["param"]) == (422, "participants.0")
    nobody = http.post("/v1/customers/cus_nobody/threads", json={
        "subject": "x", "participants": ["a@b.co"],
        "messages": [{"direction": "inbound", "sender": "a@b.co", "sent_at": "2024-01-01"}]})
    assert nobody.status_code == 404
    assert http.get("/v1/customers/cus_nobody/threads").status_code == 404
    assert http.get(f"/v1/customers/{customer.uuid}/threads/thr_nothing").status_code == 404


def test_the_feed_pages_newest_first_filters_by_type_and_names_an_unknown_type(http, new_customer):
    customer = new_customer()
    notes = []
    for day in range(1, 6):
        kind = "call" if day % 2 else "note"
        response = http.post("/v1/notes", json={"customer_uuid": customer.uuid, "type": kind, "text": f"day {day}",
                                                "created_at": f"2024-01-0{day}T12:00:00Z"})
        notes.append(response.json()["uuid"])

    everything = feed(http, customer.uuid, types="note,call")
    assert [e["source_id"] for e in everything] == notes[::-1]
    first = http.get(f"/v1/customers/{customer.uuid}/feed", params={"types": "note,call", "per_page": 2}).json()
    assert set(first) == {"entries", "has_more", "cursor"} and first["has_more"] is True
    assert [e["source_id"] for e in first["entries"]] == notes[:2:-1]
    rest = feed(http, customer.uuid, types="note,call", per_page=2)
    assert rest == everything
    assert [e["source_id"] for e in feed(http, customer.uuid, types="call")] == [notes[4], notes[2], notes[0]]
    assert {e["kind"] for e in eventually(lambda: [e for e in feed(http, customer.uuid, types="event")])} == \
        {"customer_created"}  # from the customers service's event

    unknown = http.get(f"/v1/customers/{customer.uuid}/feed", params={"types": "note,meeting"})
    assert unknown.status_code == 400 and unknown.json()["param"] == "types" and "'meeting'" in unknown.json()["message"]
    forged = http.get(f"/v1/customers/{customer.uuid}/feed", params={"cursor": "bm90LWEtY3Vyc29y"})
    assert forged.status_code == 400
    assert http.get("/v1/customers/cus_nobody/feed").status_code == 404
