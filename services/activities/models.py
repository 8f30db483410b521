"""The activities service's tables. Only this service reads or writes them.

Every row that belongs to a customer carries `customer_uuid`: a merge rewrites it to the
survivor (notes, tasks, opportunities and feed entries also keep `merged_from`, so an unmerge
can take them back), a deletion deletes the rows. Notes and tasks of a contact carry the contact's
customer too, so they follow that customer through merges and deletions.
"""
from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from roster.database import UtcDateTime
from roster.timestamps import utcnow
from roster.uow import bookkeeping_tables


class Base(DeclarativeBase):
    pass


class Customer(Base):
    """What this service knows of a customer from the customers service's events.

    The name and external id label the global activity list; `merged_into` and `deleted_at`
    let an event that arrives late (on another queue) still land where the customer went.
    """

    __tablename__ = "customers"

    uuid: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(500), default="")
    external_id: Mapped[str] = mapped_column(String(500), default="")
    merged_into: Mapped[str | None] = mapped_column(String(40))
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class GoneContact(Base):
    """A contact deleted or merged away (its contact_deleted or contact_merged was handled): a merge
    into it handled later (the events come on separate queues) follows it to where it went."""

    __tablename__ = "gone_contacts"

    uuid: Mapped[str] = mapped_column(String(60), primary_key=True)
    merged_into: Mapped[str | None] = mapped_column(String(60))  # None: deleted
    customer_uuid: Mapped[str | None] = mapped_column(String(40))  # merged_into's customer
    gone_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Note(Base):
    """A note or a call log, on a customer or on one of its contacts."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(60), unique=True)
    customer_uuid: Mapped[str] = mapped_column(String(40), index=True)
    contact_uuid: Mapped[str | None] = mapped_column(String(60), index=True)
    type: Mapped[str] = mapped_column(String(10))  # note | call
    text: Mapped[str] = mapped_column(Text, default="")
    author_email: Mapped[str | None] = mapped_column(String(320), index=True)
    call_duration: Mapped[int] = mapped_column(Integer, default=0)  # seconds; 0 for notes
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # The customer it belonged to before a customer merge moved it (kept through later merges;
    # null while on its own customer): an unmerge of that customer's external id takes it back.
    merged_from: Mapped[str | None] = mapped_column(String(40), index=True)


class Thread(Base):
    """An email thread with the customer's contacts."""

    __tablename__ = "threads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(60), unique=True)
    customer_uuid: Mapped[str] = mapped_column(String(40), index=True)
    subject: Mapped[str] = mapped_column(String(1000))
    participants: Mapped[list] = mapped_column(JSON, default=list)  # email addresses
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    messages: Mapped[list["ThreadMessage"]] = relationship(
        back_populates="thread", order_by="ThreadMessage.sent_at, ThreadMessage.id",
        cascade="all, delete-orphan", passive_deletes=True)


class ThreadMessage(Base):
    __tablename__ = "thread_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(60), unique=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"), index=True)
    direction: Mapped[str] = mapped_column(String(10))  # inbound | outbound
    sender: Mapped[str] = mapped_column(String(320))
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime)
    body: Mapped[str] = mapped_column(Text, default="")
    thread: Mapped[Thread] = relationship(back_populates="messages")


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(60), unique=True)
    customer_uuid: Mapped[str] = mapped_column(String(40), index=True)
    contact_uuid: Mapped[str | None] = mapped_column(String(60), index=True)
    assignee: Mapped[str] = mapped_column(String(320), index=True)
    task_details: Mapped[str] = mapped_column(Text)
    due_date: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # The customer it belonged to before a customer merge moved it (kept through later merges;
    # null while on its own customer): an unmerge of that customer's external id takes it back.
    merged_from: Mapped[str | None] = mapped_column(String(40), index=True)


class Opportunity(Base):
    __tablename__ = "opportunities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(60), unique=True)
    customer_uuid: Mapped[str] = mapped_column(String(40), index=True)
    owner: Mapped[str] = mapped_column(String(320), index=True)
    pipeline: Mapped[str] = mapped_column(String(200))
    pipeline_stage: Mapped[str] = mapped_column(String(200))
    estimated_close_date: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    amount_in_cents: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(20))
    forecast_category: Mapped[str] = mapped_column(String(20))
    win_likelihood: Mapped[int | None] = mapped_column(Integer)
    custom: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # The customer it belonged to before a customer merge moved it (kept through later merges;
    # null while on its own customer): an unmerge of that customer's external id takes it back.
    merged_from: Mapped[str | None] = mapped_column(String(40), index=True)


class FeedEntry(Base):
    """One line of a customer's activity feed: one fact, named by `fact` (unique).

    `fact` is `<kind>:<source id>` (e.g. `note:note_…`, `mrr_movement:<uuid>`), so a fact
    that arrives twice, under any event id, still makes one entry.
    """

    __tablename__ = "feed_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(60), unique=True)
    fact: Mapped[str] = mapped_column(String(200), unique=True)
    customer_uuid: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(20))  # event | thread | note | call | mrr_movement | transaction
    kind: Mapped[str] = mapped_column(String(40))  # what happened, e.g. task_completed
    date: Mapped[datetime] = mapped_column(UtcDateTime)
    description: Mapped[str] = mapped_column(Text)
    source_id: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # The customer it belonged to before a customer merge moved it (kept through later merges;
    # null while on its own customer): an unmerge of that customer's external id takes it back.
    merged_from: Mapped[str | None] = mapped_column(String(40), index=True)


# The feed's pages: newest first within a customer, optionally within types (keyset on date, id).
Index("ix_feed_entries_customer_date", FeedEntry.customer_uuid, FeedEntry.date, FeedEntry.id)
Index("ix_feed_entries_customer_type_date", FeedEntry.customer_uuid, FeedEntry.type, FeedEntry.date,
      FeedEntry.id)


class MrrActivity(Base):
    """An MRR movement as `/v1/activities` shows it (from billing_sync's mrr_movement_recorded)."""

    __tablename__ = "mrr_activities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(60), unique=True)  # the movement's uuid
    customer_uuid: Mapped[str] = mapped_column(String(40))
    date: Mapped[datetime] = mapped_column(UtcDateTime)
    type: Mapped[str] = mapped_column(String(20))
    mrr_movement: Mapped[int] = mapped_column(BigInteger)
    mrr: Mapped[int] = mapped_column(BigInteger)
    arr: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(Text, default="")
    subscription_external_id: Mapped[str] = mapped_column(String(500), default="")
    plan_external_id: Mapped[str] = mapped_column(String(500), default="")
    data_source_uuid: Mapped[str] = mapped_column(String(60), default="")


Index("ix_mrr_activities_customer_date", MrrActivity.customer_uuid, MrrActivity.date, MrrActivity.id)
Index("ix_mrr_activities_date", MrrActivity.date, MrrActivity.id)
Index("ix_mrr_activities_type_date", MrrActivity.type, MrrActivity.date, MrrActivity.id)


class Movement(Base):
    """Every MRR movement billing told about, and whether it was retracted.

    Both movement handlers lock this row first, so a retraction and the movement it retracts,
    handled at the same time from two queues, are applied one after the other; and a
    movement whose retraction came first stays out.
    """

    __tablename__ = "movements"

    uuid: Mapped[str] = mapped_column(String(60), primary_key=True)
    retracted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


bookkeeping = bookkeeping_tables(Base)
UNIQUE_RULES = ()
