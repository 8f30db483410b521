"""The contacts service's tables. Only this service reads or writes them."""
from datetime import datetime

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from roster.database import UtcDateTime
from roster.timestamps import utcnow
from roster.uow import bookkeeping_tables


class Base(DeclarativeBase):
    pass


class Contact(Base):
    """A person with a relationship to a customer.

    `customer_external_id` is a copy of the customer's external id, taken when the
    contact is created and refreshed when its customer is merged into another.
    """

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(40), unique=True)
    customer_uuid: Mapped[str] = mapped_column(String(40), index=True)
    customer_external_id: Mapped[str | None] = mapped_column(String(500), index=True)
    data_source_uuid: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str | None] = mapped_column(String(500))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    position: Mapped[int | None] = mapped_column(Integer)
    title: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    email_lower: Mapped[str | None] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(100))
    linked_in: Mapped[str | None] = mapped_column(String(500))
    twitter: Mapped[str | None] = mapped_column(String(500))
    notes: Mapped[str | None] = mapped_column(Text)
    custom: Mapped[dict] = mapped_column(JSON, default=dict)
    last_seen: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


Index("ix_contacts_source_external_id", Contact.data_source_uuid, Contact.external_id)


class GoneCustomer(Base):
    """A customer this service learned is gone: deleted, or merged into `merged_into`.

    Events about customers arrive on separate queues and may be handled out of order
    (e.g. the survivor's deletion before the merge); these rows let a late event still
    land the contacts where they belong.
    """

    __tablename__ = "gone_customers"

    uuid: Mapped[str] = mapped_column(String(40), primary_key=True)
    merged_into: Mapped[str | None] = mapped_column(String(40))
    gone_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


bookkeeping = bookkeeping_tables(Base)
UNIQUE_RULES = ()
