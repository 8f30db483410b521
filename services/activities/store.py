"""Reading and writing this service's tables (one session, no commits, no rules)."""
from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select, tuple_, update
from sqlalchemy.orm import Session, selectinload

from roster.database import insert_ignore, inserted_keys
from roster.errors import NotFound
from roster.uow import batch_memo
from roster.timestamps import utcnow
from services.activities.models import (
    Customer,
    FeedEntry,
    GoneContact,
    Movement,
    MrrActivity,
    Note,
    Opportunity,
    Task,
    Thread,
    ThreadMessage,
)

# Every table whose rows belong to a customer (threads' messages follow their thread).
CUSTOMER_TABLES = (Note, Thread, Task, Opportunity, FeedEntry, MrrActivity)
# Those whose rows remember the customer a merge moved them from (`merged_from`).
PROVENANCE_TABLES = (Note, Task, Opportunity, FeedEntry)


# ---- customers as this service knows them -------------------------------------------------------

def customer(session: Session, uuid: str) -> Customer:
    """Return the known-customer row of `uuid`, locked for this transaction (added if there is none).

    Every write that attaches something to a customer, and every merge or deletion of one,
    goes through this lock, so they are applied one after the other (on SQLite the write
    transaction holds the database's lock already).
    """
    # Most customers are known already: lock first, and add the row only when there is none.
    row = _locked_customer(session, uuid)
    if row is None:
        insert_ignore(session, Customer.__table__, [{"uuid": uuid, "name": "", "external_id": ""}], ["uuid"])
        row = _locked_customer(session, uuid)
    return row


def _locked_customer(session: Session, uuid: str) -> Customer | None:
    return session.scalars(select(Customer).where(Customer.uuid == uuid).with_for_update()
                           .execution_options(populate_existing=True)).first()


def add_customer(session: Session, uuid: str, *, name: str, external_id: str) -> bool:
    """Add the known-customer row of `uuid` with these fields; False (nothing written) if there is one.

    A row added here is this transaction's until it commits (a concurrent insert or lock of it
    waits), and it is neither merged nor deleted.
    """
    return bool(insert_ignore(session, Customer.__table__, [{"uuid": uuid, "name": name, "external_id": external_id}],
                              ["uuid"]))


def add_customers(session: Session, rows: list[dict]) -> list[str]:
    """`add_customer` for several {uuid, name, external_id} in one statement; return the uuids added."""
    return inserted_keys(session, Customer.__table__, rows, ["uuid"])


def rename_customer(session: Session, uuid: str, name: str) -> None:
    """Set the customer's name, adding its row if there is none."""
    if _set_name(session, uuid, name):
        return
    if not add_customer(session, uuid, name=name, external_id=""):
        _set_name(session, uuid, name)  # a concurrent writer added it meanwhile


def _set_name(session: Session, uuid: str, name: str) -> bool:
    result = session.execute(update(Customer).where(Customer.uuid == uuid).values(name=name)
                             .execution_options(synchronize_session=False))
    return result.rowcount > 0


def known_customers(session: Session, uuids) -> dict[str, Customer]:
    wanted = set(uuids)
    if not wanted:
        return {}
    return {row.uuid: row for row in session.scalars(select(Customer).where(Customer.uuid.in_(wanted)))}


def survivor(session: Session, uuid: str, locked: Customer | None = None) -> str | None:
    """Return where a customer's activity belongs now: itself, the customer it was merged into
    (following merges of merges), or None when it was deleted. Locks each customer on the way;
    `locked` is the row of `uuid` when this transaction has locked it already (`customer`)."""
    memo = batch_memo(session) if locked is None else None
    if memo is not None:  # a batch of events: their customers stay locked until it commits
        key = ("survivor", uuid)
        if key not in memo:
            memo[key] = _survivor(session, uuid, None)
        return memo[key]
    return _survivor(session, uuid, locked)


def survivors(session: Session, uuids) -> dict[str, str | None]:
    """`survivor` of each of several customers. Those neither merged nor deleted, the usual case, are
    locked in one statement (in uuid order); the others, and customers not known yet, one by one."""
    wanted = sorted(set(uuids))
    memo = batch_memo(session)
    if memo is None:
        memo = {}
    else:
        wanted = [uuid for uuid in wanted if ("survivor", uuid) not in memo]
    if wanted:
        for row in session.scalars(select(Customer).where(Customer.uuid.in_(wanted)).order_by(Customer.uuid)
                                   .with_for_update().execution_options(populate_existing=True)):
            if row.deleted_at is None and row.merged_into is None:
                memo[("survivor", row.uuid)] = row.uuid
    return {uuid: memo[("survivor", uuid)] if ("survivor", uuid) in memo else survivor(session, uuid)
            for uuid in set(uuids)}


def _survivor(session: Session, uuid: str, locked: Customer | None) -> str | None:
    seen = set()
    current = uuid
    while current not in seen:
        seen.add(current)
        row = locked if locked is not None and current == uuid else customer(session, current)
        if row.deleted_at is not None:
            return None
        if row.merged_into is None:
            return current
        current = row.merged_into
    return current


def move_customer_data(session: Session, from_uuid: str, into_uuid: str) -> None:
    """Give everything of `from_uuid` to `into_uuid`, remembering where it came from."""
    for model in CUSTOMER_TABLES:
        values = {"customer_uuid": into_uuid}
        if model in PROVENANCE_TABLES:
            values["merged_from"] = func.coalesce(model.merged_from, from_uuid)
        session.execute(update(model).where(model.customer_uuid == from_uuid)
                        .values(**values).execution_options(synchronize_session=False))


def came_from(session: Session, model, customer_uuid: str) -> list:
    """Return the rows of `model` that belonged to `customer_uuid` before a merge, wherever they
    are now, and those still on it (its merge not handled yet), locked, in id order."""
    return list(session.scalars(select(model).where(or_(
        model.merged_from == customer_uuid, and_(model.customer_uuid == customer_uuid, model.merged_from.is_(None))))
        .order_by(model.id).with_for_update().execution_options(populate_existing=True)))


def of_contacts(session: Session, model, contact_uuids: set[str]) -> list:
    """Return the notes or tasks (`model`) of these contacts, locked, in id order."""
    if not contact_uuids:
        return []
    return list(session.scalars(select(model).where(model.contact_uuid.in_(contact_uuids)).order_by(model.id)
                                .with_for_update().execution_options(populate_existing=True)))


def entries_of_sources(session: Session, source_ids: set[str]) -> list[FeedEntry]:
    """Return the feed entries telling about these notes, tasks or opportunities, locked."""
    if not source_ids:
        return []
    return list(session.scalars(select(FeedEntry).where(FeedEntry.source_id.in_(source_ids))
                                .order_by(FeedEntry.id).with_for_update().execution_options(populate_existing=True)))


def mark_contact_gone(session: Session, uuid: str, *, merged_into: str | None = None,
                      customer_uuid: str | None = None) -> None:
    """Remember that a contact was deleted (or merged into `merged_into`, on `customer_uuid`)."""
    insert_ignore(session, GoneContact.__table__, [{"uuid": uuid, "merged_into": merged_into,
                                                    "customer_uuid": customer_uuid, "gone_at": utcnow()}], ["uuid"])


def contact_survivor(session: Session, uuid: str, customer_uuid: str) -> tuple[str | None, str]:
    """Return (the contact that now holds contact `uuid`, its customer): `uuid` itself unless it was
    merged on (followed) or deleted (None)."""
    seen = set()
    while uuid not in seen:  # merges of contacts never form a cycle; a forged event may
        seen.add(uuid)
        gone = session.get(GoneContact, uuid)
        if gone is None:
            return uuid, customer_uuid
        if gone.merged_into is None:
            return None, customer_uuid
        uuid, customer_uuid = gone.merged_into, gone.customer_uuid or customer_uuid
    return uuid, customer_uuid


def move_contact_records(session: Session, contact_uuid: str, into_contact: str | None,
                         into_customer: str | None) -> None:
    """Give the notes and tasks of a contact to `into_contact` (None: to no contact, their customer's
    own); those not on `into_customer` (None: stay where they are) move there with their feed entries."""
    moved = set()
    for model in (Note, Task):
        for row in session.scalars(select(model).where(model.contact_uuid == contact_uuid).order_by(model.id)
                                   .with_for_update().execution_options(populate_existing=True)):
            row.contact_uuid = into_contact
            if into_customer is not None and row.customer_uuid != into_customer:
                row.customer_uuid = into_customer
                moved.add(row.uuid)
    for entry in entries_of_sources(session, moved):
        entry.customer_uuid = into_customer


def delete_customer_data(session: Session, uuid: str) -> None:
    """Delete everything of one customer."""
    threads = select(Thread.id).where(Thread.customer_uuid == uuid)
    session.execute(delete(ThreadMessage).where(ThreadMessage.thread_id.in_(threads))
                    .execution_options(synchronize_session=False))
    for model in CUSTOMER_TABLES:
        session.execute(delete(model).where(model.customer_uuid == uuid).execution_options(synchronize_session=False))


def mark_deleted(session: Session, uuid: str) -> None:
    row = customer(session, uuid)
    if row.deleted_at is None:
        row.deleted_at = utcnow()


def lock_customers(session: Session, uuids) -> dict[str, Customer]:
    """Lock several customers' rows in uuid order (so two merges cannot deadlock); return them."""
    return {uuid: customer(session, uuid) for uuid in sorted(set(uuids))}


# ---- records by uuid ----------------------------------------------------------------------------

def _one(session: Session, model, uuid: str, what: str, param: str, lock: bool):
    query = select(model).where(model.uuid == uuid)
    if lock:  # read, change, write back: concurrent edits queue
        query = query.with_for_update().execution_options(populate_existing=True)
    row = session.scalars(query).first()
    if row is None:
        raise NotFound(f"{what} {uuid} not found", param=param)
    return row


def note(session: Session, uuid: str, *, lock: bool = False) -> Note:
    return _one(session, Note, uuid, "Note", "uuid", lock)


def task(session: Session, uuid: str, *, lock: bool = False) -> Task:
    return _one(session, Task, uuid, "Task", "task_uuid", lock)


def opportunity(session: Session, uuid: str, *, lock: bool = False) -> Opportunity:
    return _one(session, Opportunity, uuid, "Opportunity", "uuid", lock)


def thread(session: Session, customer_uuid: str, uuid: str, *, lock: bool = False) -> Thread:
    """Return a thread of this customer with its messages; 404 when the customer has no such thread."""
    query = select(Thread).where(Thread.uuid == uuid, Thread.customer_uuid == customer_uuid)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    row = session.scalars(query.options(selectinload(Thread.messages))).first()
    if row is None:
        raise NotFound(f"Thread {uuid} not found", param="thread_uuid")
    return row


# ---- pages (ascending id, keyset) ----------------------------------------------------------------

def notes_page(session: Session, filters: dict, after_id: int, size: int) -> list[Note]:
    """Return up to `size + 1` notes after `after_id`, oldest first.

    `customer_uuid` matches the notes attached to that customer itself; `any_customer_uuid`
    every note in its feed (its contacts' notes too, as the legacy list shows them).
    """
    query = select(Note).where(Note.id > after_id).order_by(Note.id).limit(size + 1)
    if filters.get("customer_uuid"):
        query = query.where(Note.customer_uuid == filters["customer_uuid"], Note.contact_uuid.is_(None))
    if filters.get("any_customer_uuid"):
        query = query.where(Note.customer_uuid == filters["any_customer_uuid"])
    if filters.get("contact_uuid"):
        query = query.where(Note.contact_uuid == filters["contact_uuid"])
    if filters.get("type"):
        query = query.where(Note.type == filters["type"])
    if filters.get("author_email"):
        query = query.where(Note.author_email == filters["author_email"])
    return list(session.scalars(query))


def tasks_page(session: Session, filters: dict, after_id: int, size: int) -> list[Task]:
    query = select(Task).where(Task.id > after_id).order_by(Task.id).limit(size + 1)
    if filters.get("customer_uuid"):
        query = query.where(Task.customer_uuid == filters["customer_uuid"], Task.contact_uuid.is_(None))
    if filters.get("contact_uuid"):
        query = query.where(Task.contact_uuid == filters["contact_uuid"])
    if filters.get("assignee"):
        query = query.where(Task.assignee == filters["assignee"])
    if filters.get("due_date_on_or_after") is not None:
        query = query.where(Task.due_date >= filters["due_date_on_or_after"])
    if filters.get("due_date_before") is not None:  # exclusive: commands turns on_or_before into it
        query = query.where(Task.due_date < filters["due_date_before"])
    if filters.get("completed") is True:
        query = query.where(Task.completed_at.is_not(None))
    if filters.get("completed") is False:
        query = query.where(Task.completed_at.is_(None))
    return list(session.scalars(query))


def opportunities_page(session: Session, filters: dict, after_id: int, size: int) -> list[Opportunity]:
    query = select(Opportunity).where(Opportunity.id > after_id).order_by(Opportunity.id).limit(size + 1)
    for field in ("customer_uuid", "owner", "pipeline", "pipeline_stage"):
        if filters.get(field):
            query = query.where(getattr(Opportunity, field) == filters[field])
    if filters.get("estimated_close_date_on_or_after") is not None:
        query = query.where(Opportunity.estimated_close_date >= filters["estimated_close_date_on_or_after"])
    if filters.get("estimated_close_date_on_or_before") is not None:
        query = query.where(Opportunity.estimated_close_date <= filters["estimated_close_date_on_or_before"])
    return list(session.scalars(query))


def threads_page(session: Session, customer_uuid: str, after_id: int, size: int) -> list[Thread]:
    query = (select(Thread).options(selectinload(Thread.messages))
             .where(Thread.customer_uuid == customer_uuid, Thread.id > after_id)
             .order_by(Thread.id).limit(size + 1))
    return list(session.scalars(query))


# ---- the feed -----------------------------------------------------------------------------------

def entry(session: Session, fact: str) -> FeedEntry | None:
    return session.scalars(select(FeedEntry).where(FeedEntry.fact == fact)).first()


def add_entry(session: Session, values: dict) -> bool:
    """Add a feed entry; False (nothing written) if the entry of its fact (unique) is there already."""
    return bool(insert_ignore(session, FeedEntry.__table__, [values], ["fact"]))


def add_entries(session: Session, rows: list[dict]) -> list[str]:
    """Add feed entries in one statement; return the facts of those that went in (not there already)."""
    return inserted_keys(session, FeedEntry.__table__, rows, ["fact"])


def delete_entry(session: Session, fact: str) -> None:
    session.execute(delete(FeedEntry).where(FeedEntry.fact == fact).execution_options(synchronize_session=False))


def feed_page(session: Session, customer_uuid: str, types: tuple[str, ...] | None,
              before: tuple[datetime, int] | None, size: int) -> list[FeedEntry]:
    """Return up to `size + 1` entries of one customer, newest first, older than `before` (date, id).

    A keyset on (customer, date, id): the first page reads `size + 1` index entries whatever
    the length of the feed.
    """
    query = select(FeedEntry).where(FeedEntry.customer_uuid == customer_uuid)
    if types:
        query = query.where(FeedEntry.type.in_(types))
    if before is not None:
        query = query.where(tuple_(FeedEntry.date, FeedEntry.id) < tuple(before))
    query = query.order_by(FeedEntry.date.desc(), FeedEntry.id.desc()).limit(size + 1)
    return list(session.scalars(query))


# ---- MRR movement activities ---------------------------------------------------------------------

def mrr_activity(session: Session, uuid: str) -> MrrActivity | None:
    return session.scalars(select(MrrActivity).where(MrrActivity.uuid == uuid)).first()


def add_mrr_activity(session: Session, values: dict) -> bool:
    """Add an MRR activity; False (nothing written) if the one of its movement (unique uuid) is there already."""
    return bool(insert_ignore(session, MrrActivity.__table__, [values], ["uuid"]))


def add_mrr_activities(session: Session, rows: list[dict]) -> list[str]:
    """Add MRR activities in one statement; return the uuids of those that went in."""
    return inserted_keys(session, MrrActivity.__table__, rows, ["uuid"])


def add_movements(session: Session, uuids: list[str]) -> list[str]:
    """Add the rows of movements seen for the first time, in one statement; return their uuids
    (each is this transaction's until it commits, and not retracted: `movement_retracted`)."""
    return inserted_keys(session, Movement.__table__, [{"uuid": uuid} for uuid in dict.fromkeys(uuids)], ["uuid"])


def movement(session: Session, uuid: str) -> Movement:
    """Return the row of one movement, locked for this transaction (added if there is none)."""
    insert_ignore(session, Movement.__table__, [{"uuid": uuid}], ["uuid"])
    return session.scalars(select(Movement).where(Movement.uuid == uuid).with_for_update()
                           .execution_options(populate_existing=True)).one()


def movement_retracted(session: Session, uuid: str) -> bool:
    """Lock the row of one movement for this transaction (adding it if there is none); return whether
    it was retracted. A row added here is this transaction's until it commits, and not retracted."""
    if insert_ignore(session, Movement.__table__, [{"uuid": uuid}], ["uuid"]):
        return False  # the usual case: the movement's first copy
    return movement(session, uuid).retracted_at is not None


def mrr_page(session: Session, *, customer_uuid: str | None, filters, position: tuple[datetime, int] | None,
             size: int) -> list[MrrActivity]:
    """Return up to `size + 1` MRR activities past `position` (date, id) in the filters' order."""
    query = select(MrrActivity)
    if customer_uuid is not None:
        query = query.where(MrrActivity.customer_uuid == customer_uuid)
    if filters.type:
        query = query.where(MrrActivity.type == filters.type)
    if filters.start is not None:
        query = query.where(MrrActivity.date >= filters.start)
    if filters.end is not None:
        query = query.where(MrrActivity.date < filters.end)
    key = tuple_(MrrActivity.date, MrrActivity.id)
    if filters.newest_first:
        if position is not None:
            query = query.where(key < tuple(position))
        query = query.order_by(MrrActivity.date.desc(), MrrActivity.id.desc())
    else:
        if position is not None:
            query = query.where(key > tuple(position))
        query = query.order_by(MrrActivity.date, MrrActivity.id)
    return list(session.scalars(query.limit(size + 1)))
