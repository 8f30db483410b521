"""The activities service layer: one function per command, query or event, no nameko.

Each takes a `roster.uow.UnitOfWork` and, where it needs another service, a port for it
(`customers` with `get_customer(uuid)`, `contacts` with `get_contact(uuid)`), always asked
before the write transaction opens.

The feed is written in the same transaction as what it tells about: a note and its feed
entry commit together. Facts from other services arrive as events; each fact is one entry
(`FeedEntry.fact` is unique), so a redelivered event (skipped by the unit of work) and the
same fact under a new event id both leave one entry. Every new entry is announced as
`activity_recorded`.
"""
import uuid as uuid_lib
from datetime import datetime

from roster import tracing
from roster.errors import BadRequest, NotFound, UnprocessableEvent, ValidationFailed, invalid
from roster.pagination import decode_cursor, json_bytes, keyset_page, page_size, within_budget
from roster.timestamps import parse, render, utcnow
from roster.uow import Transaction, UnitOfWork
from services.activities import descriptions, domain, store
from services.activities.models import Customer, FeedEntry, Note, Opportunity, Task, Thread, ThreadMessage
from services.activities.schemas import (
    dump_entry,
    dump_mrr_activity,
    dump_note,
    dump_opportunity,
    dump_task,
    dump_thread,
)


def _new_uuid(prefix: str = "") -> str:
    return f"{prefix}{uuid_lib.uuid4()}"


def _budgeted_page(rows: list, size: int, dump) -> dict:
    """Return {entries, has_more, cursor} of `size + 1` fetched rows (keyed by id), stopping early
    at roster.pagination.PAGE_BYTES: a note's text may be 400 KB, and 90 of them were a reply
    over the bus's limit."""
    dumped = [(row.id, dump(row)) for row in rows]
    dumped, size = within_budget(dumped, size, lambda pair: json_bytes(pair[1]))
    page, has_more, cursor = keyset_page(dumped, size, lambda pair: {"after_id": pair[0]})
    return {"entries": [entry for _, entry in page], "has_more": has_more, "cursor": cursor}


# ---- customers and contacts, asked before writing ---------------------------------------------

def _owner_customer(target: domain.Association, *, customers, contacts) -> str:
    """Return the customer a note or task will belong to; a 422 naming the field when the
    customer (or contact) does not exist."""
    if target.kind == "customer":
        _existing_customer(customers, target.uuid, target.field)
        return target.uuid
    try:
        contact = contacts.get_contact(target.uuid)
    except NotFound:
        raise invalid(target.field, f"no contact {target.uuid} exists")
    return contact["customer_uuid"]


def _existing_customer(customers, customer_uuid: str, field: str = "customer_uuid") -> None:
    try:
        customers.get_customer(customer_uuid)
    except NotFound:
        raise invalid(field, f"no customer {customer_uuid} exists")


def _check_still_there(session, customer_uuid: str, field: str = "customer_uuid",
                       contact_uuid: str | None = None) -> None:
    """Refuse a customer (or contact) deleted or merged away since it was asked about (its event
    already handled). The customer's row lock orders this with the handlers of those events."""
    now = store.survivor(session, customer_uuid)
    if now is None:
        raise invalid(field, f"customer {customer_uuid} was deleted")
    if now != customer_uuid:
        raise invalid(field, f"customer {customer_uuid} was merged into {now}")
    if contact_uuid is not None:
        contact, _ = store.contact_survivor(session, contact_uuid, customer_uuid)
        if contact is None:
            raise invalid(field, f"contact {contact_uuid} was deleted")
        if contact != contact_uuid:
            raise invalid(field, f"contact {contact_uuid} was merged into {contact}")


# ---- the feed's entries --------------------------------------------------------------------------

def _record_entry(tx: Transaction, **fields) -> bool:
    """Add the feed entry of one fact and announce it; False (and nothing recorded) if it is there already."""
    entry = _entry_row(**fields)
    if not store.add_entry(tx.session, entry):
        return False
    _announce_entry(tx, entry)
    return True


def _record_entries(tx: Transaction, entries: list[tuple[dict, dict]]) -> None:
    """`_record_entry` for many (event payload, entry fields) at once: one insert; each entry that
    went in is announced, bound to the request of the event it came from."""
    rows = [(payload, _entry_row(**fields)) for payload, fields in entries]
    added = set(store.add_entries(tx.session, [row for _, row in rows]))
    for payload, row in rows:
        if row["fact"] in added:
            added.discard(row["fact"])  # a fact twice in the batch: its first entry went in
            with tracing.event_bound(payload):
                _announce_entry(tx, row)


def _entry_row(*, fact: str, customer_uuid: str, type: str, kind: str, date: datetime, description: str,
               source_id: str) -> dict:
    return {"uuid": _new_uuid("act_"), "fact": fact, "customer_uuid": customer_uuid, "type": type, "kind": kind,
            "date": date, "description": description, "source_id": source_id, "merged_from": None}


def _announce_entry(tx: Transaction, entry: dict) -> None:
    tx.record("activity_recorded", customer_uuid=entry["customer_uuid"], activity={
        "uuid": entry["uuid"], "type": entry["type"], "kind": entry["kind"], "date": render(entry["date"]),
        "description": entry["description"], "source_id": entry["source_id"],
    })


def _note_entry(note: Note) -> dict:
    author = note.author_email or ""
    if note.type == "call":
        description = descriptions.call(note.text, note.call_duration, author)
    else:
        description = descriptions.note(note.text, author)
    return {"fact": f"note:{note.uuid}", "customer_uuid": note.customer_uuid, "type": note.type, "kind": note.type,
            "date": note.created_at, "description": description, "source_id": note.uuid}


def _refresh_entry(tx: Transaction, fields: dict) -> None:
    """Bring an entry in line with its source (after an edit), or record it if it is missing."""
    entry = store.entry(tx.session, fields["fact"])
    if entry is None:
        _record_entry(tx, **fields)
        return
    for name in ("type", "kind", "date", "description"):
        setattr(entry, name, fields[name])


# ---- notes and calls -----------------------------------------------------------------------------

def create_note(uow: UnitOfWork, data: dict, *, customers, contacts) -> dict:
    """Create a note or call log on a customer or a contact; return it."""
    fields = domain.new_note(data)
    target = domain.association(data)
    customer_uuid = _owner_customer(target, customers=customers, contacts=contacts)
    with uow.write() as tx:
        _check_still_there(tx.session, customer_uuid, target.field, target.uuid if target.kind == "contact" else None)
        now = utcnow()
        note = Note(uuid=_new_uuid("note_"), customer_uuid=customer_uuid,
                    contact_uuid=target.uuid if target.kind == "contact" else None,
                    type=fields["type"], text=fields["text"], author_email=fields.get("author_email"),
                    call_duration=fields["call_duration"], created_at=fields.get("created_at") or now,
                    updated_at=fields.get("updated_at") or now)
        tx.session.add(note)
        tx.session.flush()
        _record_entry(tx, **_note_entry(note))
        return tx.result(dump_note(note))


def get_note(uow: UnitOfWork, uuid: str) -> dict:
    with uow.read() as session:
        return dump_note(store.note(session, uuid))


def list_notes(uow: UnitOfWork, filters: dict, cursor: str | None = None, per_page=None) -> dict:
    """Return {entries, has_more, cursor} of notes, oldest first.

    Filters: `customer_uuid` (notes on the customer itself), `any_customer_uuid` (also its
    contacts' notes), `contact_uuid`, `type`, `author_email`.
    """
    filters = dict(filters or {})
    if filters.get("type") and filters["type"] not in domain.NOTE_TYPES:
        raise BadRequest("type: must be note or call", param="type")
    size = page_size(per_page)
    after_id = decode_cursor(cursor, after_id=int).get("after_id", 0)
    with uow.read() as session:
        return _budgeted_page(store.notes_page(session, filters, after_id, size), size, dump_note)


def update_note(uow: UnitOfWork, uuid: str, changes: dict) -> dict:
    """Apply `changes` to a note; return {"note", "changed"} (changed False: nothing differed)."""
    fields = domain.clean_note(changes)
    with uow.write() as tx:
        note = store.note(tx.session, uuid, lock=True)
        before = dump_note(note)
        note_type = fields.get("type", note.type)
        if "call_duration" in fields:
            duration = domain.note_duration(note_type, fields["call_duration"])
        else:
            duration = note.call_duration if note_type == "call" else 0
        note.type, note.call_duration = note_type, duration
        for name in ("text", "author_email", "created_at"):
            if name in fields:
                setattr(note, name, fields[name])
        changed = _differs(before, dump_note(note))
        if changed:
            note.updated_at = fields.get("updated_at") or utcnow()
            _refresh_entry(tx, _note_entry(note))
        return tx.result({"note": dump_note(note), "changed": changed})


def delete_note(uow: UnitOfWork, uuid: str) -> None:
    with uow.write() as tx:
        note = store.note(tx.session, uuid, lock=True)  # concurrent deletes queue; the later ones 404
        store.delete_entry(tx.session, f"note:{note.uuid}")
        tx.session.delete(note)


def _differs(before: dict, after: dict) -> bool:
    return any(before.get(key) != value for key, value in after.items() if key != "updated_at")


# ---- email threads -------------------------------------------------------------------------------

def _thread_entry(thread: Thread) -> dict:
    last = max(message.sent_at for message in thread.messages)
    return {"fact": f"thread:{thread.uuid}", "customer_uuid": thread.customer_uuid, "type": "thread",
            "kind": "thread", "date": last,
            "description": descriptions.thread(thread.subject, list(thread.participants), len(thread.messages)),
            "source_id": thread.uuid}


def _add_messages(thread: Thread, messages: list[dict]) -> None:
    for message in messages:
        thread.messages.append(ThreadMessage(uuid=_new_uuid("msg_"), **message))


def create_thread(uow: UnitOfWork, customer_uuid: str, data: dict, *, customers) -> dict:
    """Log an email thread with a customer's contacts; return it with its messages."""
    fields = domain.clean_thread(data)
    _existing_customer(customers, customer_uuid)
    with uow.write() as tx:
        _check_still_there(tx.session, customer_uuid)
        now = utcnow()
        thread = Thread(uuid=_new_uuid("thr_"), customer_uuid=customer_uuid, subject=fields["subject"],
                        participants=fields["participants"], created_at=now, updated_at=now)
        _add_messages(thread, fields["messages"])
        tx.session.add(thread)
        tx.session.flush()
        _record_entry(tx, **_thread_entry(thread))
        return tx.result(dump_thread(thread))


def add_thread_messages(uow: UnitOfWork, customer_uuid: str, thread_uuid: str, data: dict) -> dict:
    """Add messages (replies) to a thread; return the thread."""
    messages = domain.clean_messages(data.get("messages"))
    with uow.write() as tx:
        thread = store.thread(tx.session, customer_uuid, thread_uuid, lock=True)
        _add_messages(thread, messages)
        thread.updated_at = utcnow()
        tx.session.flush()
        _refresh_entry(tx, _thread_entry(thread))
        return tx.result(dump_thread(thread))


def get_thread(uow: UnitOfWork, customer_uuid: str, thread_uuid: str) -> dict:
    with uow.read() as session:
        return dump_thread(store.thread(session, customer_uuid, thread_uuid))


def list_threads(uow: UnitOfWork, customer_uuid: str, cursor: str | None = None, per_page=None) -> dict:
    """Return {entries, has_more, cursor} of a customer's threads, oldest first, with their messages."""
    size = page_size(per_page)
    after_id = decode_cursor(cursor, after_id=int).get("after_id", 0)
    with uow.read() as session:
        return _budgeted_page(store.threads_page(session, customer_uuid, after_id, size), size, dump_thread)


# ---- tasks ---------------------------------------------------------------------------------------

def _task_entry(task: Task) -> dict:
    return {"fact": f"task_completed:{task.uuid}", "customer_uuid": task.customer_uuid, "type": "event",
            "kind": "task_completed", "date": task.completed_at,
            "description": descriptions.task_completed(task.task_details, task.assignee), "source_id": task.uuid}


def create_task(uow: UnitOfWork, data: dict, *, customers, contacts) -> dict:
    """Create a task on a customer or a contact; return it. A task created completed is in the feed."""
    fields = domain.clean_task(data, creating=True)
    target = domain.association(data)
    customer_uuid = _owner_customer(target, customers=customers, contacts=contacts)
    with uow.write() as tx:
        _check_still_there(tx.session, customer_uuid, target.field, target.uuid if target.kind == "contact" else None)
        now = utcnow()
        task = Task(uuid=_new_uuid(), customer_uuid=customer_uuid,
                    contact_uuid=target.uuid if target.kind == "contact" else None,
                    completed_at=fields.pop("completed_at", None), created_at=now, updated_at=now, **fields)
        tx.session.add(task)
        tx.session.flush()
        if task.completed_at is not None:
            _record_entry(tx, **_task_entry(task))
        return tx.result(dump_task(task))


def get_task(uow: UnitOfWork, uuid: str) -> dict:
    with uow.read() as session:
        return dump_task(store.task(session, uuid))


def list_tasks(uow: UnitOfWork, filters: dict, cursor: str | None = None, per_page=None) -> dict:
    """Return {entries, has_more, cursor} of tasks, oldest first.

    Filters: customer_uuid, contact_uuid, assignee, due_date_on_or_after, due_date_on_or_before
    (a date alone: through the end of that day, as `/v1/activities`' end-date), completed (true/false).
    """
    wanted = {name: filters[name] for name in ("customer_uuid", "contact_uuid", "assignee") if filters.get(name)}
    if filters.get("due_date_on_or_after"):
        wanted["due_date_on_or_after"] = _query_time(filters["due_date_on_or_after"], "due_date_on_or_after")
    if filters.get("due_date_on_or_before"):
        wanted["due_date_before"] = domain.end_bound(filters["due_date_on_or_before"], "due_date_on_or_before")
    if filters.get("completed") not in (None, ""):
        wanted["completed"] = _query_bool(filters["completed"], "completed")
    size = page_size(per_page)
    after_id = decode_cursor(cursor, after_id=int).get("after_id", 0)
    with uow.read() as session:
        return _budgeted_page(store.tasks_page(session, wanted, after_id, size), size, dump_task)


def update_task(uow: UnitOfWork, uuid: str, changes: dict) -> dict:
    """Apply `changes`; completing a task puts it in the feed, reopening it takes it out.

    Returns {"task", "changed"}.
    """
    fields = domain.clean_task(changes, creating=False)
    with uow.write() as tx:
        task = store.task(tx.session, uuid, lock=True)
        before = dump_task(task)
        for name, value in fields.items():
            setattr(task, name, value)
        changed = _differs(before, dump_task(task))
        if changed:
            task.updated_at = utcnow()
            if task.completed_at is None:
                store.delete_entry(tx.session, f"task_completed:{task.uuid}")
            else:
                _refresh_entry(tx, _task_entry(task))
        return tx.result({"task": dump_task(task), "changed": changed})


def delete_task(uow: UnitOfWork, uuid: str) -> None:
    with uow.write() as tx:
        task = store.task(tx.session, uuid, lock=True)  # concurrent deletes queue; the later ones 404
        store.delete_entry(tx.session, f"task_completed:{task.uuid}")
        tx.session.delete(task)


# ---- opportunities -------------------------------------------------------------------------------

def create_opportunity(uow: UnitOfWork, data: dict, *, customers) -> dict:
    """Create an opportunity of a customer; return it. Its creation is an event in the feed."""
    fields = domain.clean_opportunity(data, creating=True)
    customer_uuid = domain.text(data.get("customer_uuid"), "customer_uuid", maximum=100, required=True)
    _existing_customer(customers, customer_uuid)
    with uow.write() as tx:
        _check_still_there(tx.session, customer_uuid)
        now = utcnow()
        opportunity = Opportunity(uuid=_new_uuid(), customer_uuid=customer_uuid, created_at=now, updated_at=now,
                                  win_likelihood=fields.pop("win_likelihood", None), **fields)
        tx.session.add(opportunity)
        tx.session.flush()
        _record_entry(
            tx, fact=f"opportunity_created:{opportunity.uuid}", customer_uuid=opportunity.customer_uuid,
            type="event", kind="opportunity_created", date=opportunity.created_at,
            description=descriptions.opportunity_created(
                amount_in_cents=opportunity.amount_in_cents, currency=opportunity.currency,
                pipeline=opportunity.pipeline, pipeline_stage=opportunity.pipeline_stage,
                estimated_close_date=opportunity.estimated_close_date),
            source_id=opportunity.uuid)
        return tx.result(dump_opportunity(opportunity))


def get_opportunity(uow: UnitOfWork, uuid: str) -> dict:
    with uow.read() as session:
        return dump_opportunity(store.opportunity(session, uuid))


def list_opportunities(uow: UnitOfWork, filters: dict, cursor: str | None = None, per_page=None) -> dict:
    """Return {entries, has_more, cursor} of opportunities, oldest first."""
    wanted = {name: filters[name] for name in ("customer_uuid", "owner", "pipeline", "pipeline_stage")
              if filters.get(name)}
    for name in ("estimated_close_date_on_or_after", "estimated_close_date_on_or_before"):
        if filters.get(name):
            try:
                wanted[name] = domain.calendar_date(filters[name], name)
            except ValidationFailed as failure:
                raise BadRequest(failure.message, param=name)
    size = page_size(per_page)
    after_id = decode_cursor(cursor, after_id=int).get("after_id", 0)
    with uow.read() as session:
        return _budgeted_page(store.opportunities_page(session, wanted, after_id, size), size, dump_opportunity)


def update_opportunity(uow: UnitOfWork, uuid: str, changes: dict) -> dict:
    """Apply `changes` (custom fields merged key by key, null removing one); return the opportunity."""
    fields = domain.clean_opportunity(changes, creating=False)
    with uow.write() as tx:
        opportunity = store.opportunity(tx.session, uuid, lock=True)
        if changes.get("customer_uuid") not in (None, opportunity.customer_uuid):
            raise invalid("customer_uuid", "an opportunity cannot move to another customer")
        before = dump_opportunity(opportunity)
        if "custom" in fields:
            opportunity.custom = domain.updated_custom(opportunity.custom, fields.pop("custom"))
        for name, value in fields.items():
            setattr(opportunity, name, value)
        if _differs(before, dump_opportunity(opportunity)):
            opportunity.updated_at = utcnow()
        return tx.result(dump_opportunity(opportunity))


def delete_opportunity(uow: UnitOfWork, uuid: str) -> None:
    with uow.write() as tx:
        opportunity = store.opportunity(tx.session, uuid, lock=True)  # concurrent deletes queue; the later ones 404
        store.delete_entry(tx.session, f"opportunity_created:{opportunity.uuid}")
        tx.session.delete(opportunity)


# ---- reading the feed and the MRR activities -----------------------------------------------------

def feed(uow: UnitOfWork, customer_uuid: str, types=None, cursor: str | None = None, per_page=None) -> dict:
    """Return {entries, has_more, cursor}: one customer's feed, newest first, of `types` (all if None)."""
    wanted = domain.feed_types(types)
    size = page_size(per_page)
    before = _position(cursor)
    with uow.read() as session:
        rows = store.feed_page(session, customer_uuid, wanted, before, size)
        entries, has_more, next_cursor = keyset_page(rows, size, _position_of)
        return {"entries": [dump_entry(entry) for entry in entries], "has_more": has_more, "cursor": next_cursor}


def customer_activities(uow: UnitOfWork, customer_uuid: str, cursor: str | None = None, per_page=None) -> dict:
    """Return {entries, has_more, cursor}: one customer's MRR movement activities, newest first."""
    return _mrr_activities(uow, customer_uuid, domain.ActivityFilters(), cursor, per_page)


def list_activities(uow: UnitOfWork, query: dict, cursor: str | None = None, per_page=None) -> dict:
    """Return {entries, has_more, cursor}: every customer's MRR movement activities.

    `query` may hold `start-date`, `end-date`, `type` and `order` (`-date`, the default, or `date`).
    """
    return _mrr_activities(uow, None, domain.activity_filters(query or {}), cursor, per_page)


def _mrr_activities(uow, customer_uuid, filters, cursor, per_page) -> dict:
    size = page_size(per_page)
    position = _position(cursor)
    with uow.read() as session:
        rows = store.mrr_page(session, customer_uuid=customer_uuid, filters=filters, position=position, size=size)
        found, has_more, next_cursor = keyset_page(rows, size, _position_of)
        known = store.known_customers(session, {row.customer_uuid for row in found})
        return {"entries": [dump_mrr_activity(row, known.get(row.customer_uuid)) for row in found],
                "has_more": has_more, "cursor": next_cursor}


def _position(cursor: str | None) -> tuple[datetime, int] | None:
    """Return the (date, id) a feed or activity cursor resumes after; a forged cursor is a 400."""
    position = decode_cursor(cursor, date=str, id=int)
    if not position:
        return None
    try:
        return parse(position["date"], "cursor"), position["id"]
    except ValidationFailed:
        raise BadRequest("cursor: is not a cursor this API returned", param="cursor")


def _position_of(row) -> dict:
    return {"date": render(row.date), "id": row.id}


def _query_time(value, field: str) -> datetime:
    try:
        return parse(value, field)
    except ValidationFailed as failure:
        raise BadRequest(failure.message, param=field)


def _query_bool(value, field: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise BadRequest(f"{field}: must be true or false", param=field)


# ---- events from other services ------------------------------------------------------------------

def _field(payload: dict, name: str, event: str):
    value = payload.get(name)
    if value in (None, ""):
        raise UnprocessableEvent(f"{event}: the event carries no {name}", param=name)
    return value


def _when(value, fallback: dict) -> datetime:
    """Return a timestamp from an event, else the event's occurred_at, else now."""
    for candidate in (value, fallback.get("occurred_at")):
        try:
            parsed = parse(candidate, "date")
        except ValidationFailed:
            parsed = None
        if parsed is not None:
            return parsed
    return utcnow()


def on_customer_created(uow: UnitOfWork, payload: dict) -> None:
    """Remember the customer's name and external id; its creation opens its feed."""
    customer = _created_customer(payload)
    with uow.write() as tx:
        if store.add_customer(tx.session, customer["uuid"], name=customer["name"],
                              external_id=customer["external_id"]):
            target = customer["uuid"]  # the usual case: a row just added is neither merged nor deleted
        else:
            target = _known_customer_created(tx.session, customer["uuid"], customer["name"], customer["external_id"])
        if target is None:
            return
        _record_entry(tx, **_customer_created_entry(customer, target, payload))


def on_customers_created(uow: UnitOfWork, payloads: list[dict]) -> None:
    """`on_customer_created` for a batch of events at once (roster.handlers, `bulk=`): the customers
    not known yet, the usual case, go in with one insert and their feed entries with another; a
    customer known already (an earlier event about it came first) is handled event by event after them."""
    created = [(payload, _created_customer(payload)) for payload in payloads]
    with uow.write() as tx:
        added = set(store.add_customers(tx.session, [
            {key: customer[key] for key in ("uuid", "name", "external_id")} for _, customer in created]))
        usual, others = [], []
        for payload, customer in created:
            if customer["uuid"] in added:
                added.discard(customer["uuid"])
                usual.append((payload, _customer_created_entry(customer, customer["uuid"], payload)))
            else:
                others.append(payload)
        _record_entries(tx, usual)
    for payload in others:
        with tracing.event_bound(payload):
            on_customer_created(uow, payload)


def _created_customer(payload: dict) -> dict:
    customer = _field(payload, "customer", "customer_created")
    if not isinstance(customer, dict):
        raise UnprocessableEvent("customer_created: customer is not an object", param="customer")
    return {**customer, "uuid": _label(customer, "uuid", "customer_created", Customer.uuid, required=True),
            "name": _label(customer, "name", "customer_created", Customer.name),
            "external_id": _label(customer, "external_id", "customer_created", Customer.external_id)}


def _label(fields: dict, name: str, event: str, column, *, required: bool = False) -> str:
    """A text field of an event that this service stores in `column`: "" when absent; anything but
    a string that fits the column is a malformed event, not a retry."""
    value = _field(fields, name, event) if required else fields.get(name) or ""
    limit = column.type.length
    if not isinstance(value, str) or len(value) > limit:
        raise UnprocessableEvent(f"{event}: {name} must be a string of at most {limit} characters", param=name)
    return value


def _customer_created_entry(customer: dict, target: str, payload: dict) -> dict:
    return {"fact": f"customer_created:{customer['uuid']}", "customer_uuid": target, "type": "event",
            "kind": "customer_created", "date": _when(customer.get("created_at"), payload),
            "description": descriptions.customer_created(domain.display_name(customer)),
            "source_id": customer["uuid"]}


def _known_customer_created(session, uuid: str, name: str, external_id: str) -> str | None:
    """Fill in a customer row an earlier event added (a rename, a merge, a deletion); return its survivor."""
    row = store.customer(session, uuid)
    anonymous = not row.name and not row.external_id  # added by an event that knew only its uuid
    if not row.name:  # a rename may have been handled first
        row.name = name
    row.external_id = external_id or row.external_id
    if anonymous and row.merged_into:
        _name_merged_line(session, row)
    return store.survivor(session, uuid, locked=row)


def _name_merged_line(session, row) -> None:
    """A merge handled before the merged customer's creation called it by its uuid in the
    survivor's feed: now that its name is known, the line says it."""
    entry = store.entry(session, f"customer_merged:{row.uuid}")
    if entry is not None:
        entry.description = descriptions.customer_merged(_merged_name(row))


def on_customer_updated(uow: UnitOfWork, payload: dict) -> None:
    """Keep the customer's name current (the global activity list shows it)."""
    changes = payload.get("changes") or {}
    if not isinstance(changes, dict):
        raise UnprocessableEvent("customer_updated: changes is not an object", param="changes")
    if "name" not in changes:
        return
    uuid = _label(payload, "uuid", "customer_updated", Customer.uuid, required=True)
    name = _label(changes, "name", "customer_updated", Customer.name)
    with uow.write() as tx:
        store.rename_customer(tx.session, uuid, name)


def on_customer_merged(uow: UnitOfWork, payload: dict) -> None:
    """Move everything of the merged-away customer to the survivor, and say so in its feed."""
    from_uuid = _field(payload, "from_uuid", "customer_merged")
    into_uuid = _field(payload, "into_uuid", "customer_merged")
    with uow.write() as tx:
        locked = store.lock_customers(tx.session, (from_uuid, into_uuid))
        merged = locked[from_uuid]
        merged.merged_into = into_uuid
        target = store.survivor(tx.session, into_uuid, locked=locked[into_uuid])
        if target is None:  # the survivor was deleted meanwhile
            store.delete_customer_data(tx.session, from_uuid)
            return
        store.move_customer_data(tx.session, from_uuid, target)
        _record_entry(tx, fact=f"customer_merged:{from_uuid}", customer_uuid=target, type="event",
                      kind="customer_merged", date=_when(None, payload),
                      description=descriptions.customer_merged(_merged_name(merged)), source_id=from_uuid)


def _merged_name(row) -> str:
    return domain.display_name({"name": row.name, "external_id": row.external_id, "uuid": row.uuid})


def on_customer_unmerged(uow: UnitOfWork, payload: dict) -> None:
    """Give the new customer of an unmerge what came with its external id, and say so in the feed
    of the customer it left.

    What came with it is what belonged to the customer that id had before its merge
    (`former_uuid`), wherever merges took it, or still on it when that merge has not been
    handled here yet (its handler then moves only what is left): the tasks, opportunities and
    notes `move_to_new_customer` names, the notes and tasks of contacts, and the feed entries
    of all that and of that customer's own history and payments (`domain.entry_follows_unmerge`).
    A new customer deleted meanwhile takes them with it; one merged meanwhile passes them on.
    """
    from_uuid = _field(payload, "from_uuid", "customer_unmerged")
    new_uuid = _field(payload, "new_uuid", "customer_unmerged")
    former = payload.get("former_uuid")
    kinds = payload.get("move_to_new_customer") or []
    new_customer = payload.get("new_customer") or {}
    with uow.write() as tx:
        session = tx.session
        locked = store.lock_customers(session, [uuid for uuid in (from_uuid, new_uuid, former) if uuid])
        new = locked[new_uuid]
        new.name = new.name or new_customer.get("name") or ""
        new.external_id = new.external_id or payload.get("external_id") or ""
        target = store.survivor(session, new_uuid, locked=new)
        moving = _unmerged_records(session, former, kinds) if former else []
        for row in moving:
            if target is None:
                session.delete(row)
            else:
                row.customer_uuid, row.merged_from = target, (None if target == new_uuid else new_uuid)
        left = store.survivor(session, from_uuid, locked=locked[from_uuid])
        if left is not None:
            name = domain.display_name({**new_customer, "uuid": new_uuid})
            _record_entry(tx, fact=f"customer_unmerged:{new_uuid}", customer_uuid=left, type="event",
                          kind="customer_unmerged", date=_when(None, payload),
                          description=descriptions.customer_unmerged(name), source_id=new_uuid)


def _unmerged_records(session, former: str, kinds) -> list:
    """Return the notes, tasks, opportunities and feed entries that follow an unmerge of the
    external id `former` had, locked.

    The notes and tasks of `former`'s contacts follow wherever they are: those written after the
    merge are on the survivor with no trace of `former` but their contact. Its contacts are those
    whose creation is in `former`'s history, or that had notes or tasks on it."""
    came = {model: store.came_from(session, model, former) for model in (Note, Task, Opportunity, FeedEntry)}
    contacts = {row.contact_uuid for model in (Note, Task) for row in came[model] if row.contact_uuid} | \
        {entry.source_id for entry in came[FeedEntry] if entry.kind == "contact_created"}
    for model in (Note, Task):
        known = {row.id for row in came[model]}
        came[model] += [row for row in store.of_contacts(session, model, contacts) if row.id not in known]
    records = [row for model, kind in ((Note, "notes"), (Task, "tasks"), (Opportunity, "opportunities"))
               for row in came[model]
               if domain.follows_unmerge(kind, moved_kinds=kinds,
                                         of_contact=getattr(row, "contact_uuid", None) is not None)]
    sources = {row.uuid for row in records}
    entries = {entry.id: entry for entry in came[FeedEntry]
               if domain.entry_follows_unmerge(type=entry.type, kind=entry.kind, source_id=entry.source_id,
                                               moved_sources=sources)}
    entries.update((entry.id, entry) for entry in store.entries_of_sources(session, sources))
    return records + [entries[key] for key in sorted(entries)]


def on_customer_deleted(uow: UnitOfWork, payload: dict) -> None:
    """Delete everything of a deleted customer."""
    uuid = _field(payload, "uuid", "customer_deleted")
    with uow.write() as tx:
        store.mark_deleted(tx.session, uuid)
        store.delete_customer_data(tx.session, uuid)


def on_contact_created(uow: UnitOfWork, payload: dict) -> None:
    contact = payload.get("contact") or {}
    contact_uuid = payload.get("uuid") or _field(contact, "uuid", "contact_created")
    customer_uuid = payload.get("customer_uuid") or _field(contact, "customer_uuid", "contact_created")
    with uow.write() as tx:
        target = store.survivor(tx.session, customer_uuid)
        if target is None:
            return
        _record_entry(tx, fact=f"contact_created:{contact_uuid}", customer_uuid=target, type="event",
                      kind="contact_created", date=_when(contact.get("created_at"), payload),
                      description=descriptions.contact_created(contact.get("first_name"), contact.get("last_name"),
                                                               contact.get("email")),
                      source_id=contact_uuid)


def on_contact_merged(uow: UnitOfWork, payload: dict) -> None:
    """Give the merged-away contact's notes, calls and tasks to the surviving contact (or to where it
    went since: merged on, or deleted) and, with their feed entries, to its customer when that is
    another one (wherever customer merges took it)."""
    from_uuid = _label(payload, "from_uuid", "contact_merged", Note.contact_uuid, required=True)
    into_uuid = _label(payload, "into_uuid", "contact_merged", Note.contact_uuid, required=True)
    customer_uuid = _label(payload, "customer_uuid", "contact_merged", Customer.uuid, required=True)
    from_customer = _label(payload, "from_customer_uuid", "contact_merged", Customer.uuid)
    with uow.write() as tx:
        # the customers' locks order this with a note or task being added to either contact
        locked = store.lock_customers(tx.session, {from_customer or customer_uuid, customer_uuid})
        store.mark_contact_gone(tx.session, from_uuid, merged_into=into_uuid, customer_uuid=customer_uuid)
        into_uuid, customer_uuid = store.contact_survivor(tx.session, into_uuid, customer_uuid)
        customer = store.survivor(tx.session, customer_uuid, locked=locked.get(customer_uuid)) \
            if into_uuid is not None else None
        store.move_contact_records(tx.session, from_uuid, into_uuid, customer)


def on_contact_deleted(uow: UnitOfWork, payload: dict) -> None:
    """A deleted contact's notes, calls and tasks stay, as its customer's own."""
    contact_uuid = _label(payload, "uuid", "contact_deleted", Note.contact_uuid, required=True)
    customer_uuid = _label(payload, "customer_uuid", "contact_deleted", Customer.uuid)
    with uow.write() as tx:
        if customer_uuid:  # its lock orders this with a note or task being added to the contact
            store.lock_customers(tx.session, [customer_uuid])
        store.mark_contact_gone(tx.session, contact_uuid)
        store.move_contact_records(tx.session, contact_uuid, None, None)


def on_mrr_movement_recorded(uow: UnitOfWork, payload: dict) -> None:
    """Add an MRR movement to the customer's activities and feed (unless billing retracted it already)."""
    movement = domain.movement_from_event(payload)
    with uow.write() as tx:
        if store.movement_retracted(tx.session, movement["uuid"]):
            return
        target = store.survivor(tx.session, movement["customer_uuid"])
        if target is None:
            return
        if not store.add_mrr_activity(tx.session, _mrr_activity_row(movement, target)):
            return  # the same movement under another event id: recorded already
        _record_entry(tx, **_movement_entry(movement, target))


def on_mrr_movements_recorded(uow: UnitOfWork, payloads: list[dict]) -> None:
    """`on_mrr_movement_recorded` for a batch of events at once (roster.handlers, `bulk=`): one
    statement per table for the usual events, a movement's first copy; the others (a copy of a
    movement seen before, perhaps retracted) go event by event after them, in the same transaction."""
    movements = [(payload, domain.movement_from_event(payload)) for payload in payloads]
    with uow.write() as tx:
        first_copies = set(store.add_movements(tx.session, [movement["uuid"] for _, movement in movements]))
        targets = store.survivors(tx.session, [movement["customer_uuid"] for _, movement in movements])
        usual, others = [], []
        for payload, movement in movements:
            if movement["uuid"] in first_copies:
                first_copies.discard(movement["uuid"])
                if targets[movement["customer_uuid"]] is not None:
                    usual.append((payload, movement, targets[movement["customer_uuid"]]))
            else:
                others.append(payload)
        added = set(store.add_mrr_activities(
            tx.session, [_mrr_activity_row(movement, target) for _, movement, target in usual]))
        _record_entries(tx, [(payload, _movement_entry(movement, target))
                             for payload, movement, target in usual if movement["uuid"] in added])
    for payload in others:
        with tracing.event_bound(payload):
            on_mrr_movement_recorded(uow, payload)


def _mrr_activity_row(movement: dict, target: str) -> dict:
    return {**movement, "customer_uuid": target}


def _movement_entry(movement: dict, target: str) -> dict:
    return {"fact": f"mrr_movement:{movement['uuid']}", "customer_uuid": target, "type": "mrr_movement",
            "kind": movement["type"], "date": movement["date"],
            "description": descriptions.mrr_movement(type=movement["type"], description=movement["description"],
                                                     mrr_movement=movement["mrr_movement"],
                                                     currency=movement["currency"]),
            "source_id": movement["uuid"]}


def on_mrr_movement_retracted(uow: UnitOfWork, payload: dict) -> None:
    """Drop a movement billing replaced, and remember it so a late copy stays out."""
    movement_uuid = _field(payload, "movement_uuid", "mrr_movement_retracted")
    with uow.write() as tx:
        seen = store.movement(tx.session, movement_uuid)
        seen.retracted_at = seen.retracted_at or utcnow()
        activity = store.mrr_activity(tx.session, movement_uuid)
        if activity is not None:
            tx.session.delete(activity)
        store.delete_entry(tx.session, f"mrr_movement:{movement_uuid}")


def on_transaction_recorded(uow: UnitOfWork, payload: dict) -> None:
    """Add a transaction (payment or refund) to the customer's feed."""
    transaction = domain.transaction_from_event(payload)
    with uow.write() as tx:
        target = store.survivor(tx.session, transaction["customer_uuid"])
        if target is None:
            return
        _record_entry(tx, **_transaction_entry(transaction, target))


def on_transactions_recorded(uow: UnitOfWork, payloads: list[dict]) -> None:
    """`on_transaction_recorded` for a batch of events at once (roster.handlers, `bulk=`): one insert."""
    transactions = [(payload, domain.transaction_from_event(payload)) for payload in payloads]
    with uow.write() as tx:
        targets = store.survivors(tx.session, [transaction["customer_uuid"] for _, transaction in transactions])
        _record_entries(tx, [(payload, _transaction_entry(transaction, targets[transaction["customer_uuid"]]))
                             for payload, transaction in transactions
                             if targets[transaction["customer_uuid"]] is not None])


def _transaction_entry(transaction: dict, target: str) -> dict:
    return {"fact": f"transaction:{transaction['uuid']}", "customer_uuid": target, "type": "transaction",
            "kind": transaction["type"], "date": transaction["date"],
            "description": descriptions.transaction(type=transaction["type"], result=transaction["result"],
                                                    amount_in_cents=transaction["amount_in_cents"],
                                                    currency=transaction["currency"]),
            "source_id": transaction["uuid"]}
