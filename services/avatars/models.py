"""The avatars service's tables. Only this service reads or writes them."""
from datetime import datetime

from sqlalchemy import Boolean, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from roster.database import UtcDateTime
from roster.timestamps import utcnow
from roster.uow import bookkeeping_tables


class Base(DeclarativeBase):
    pass


class CachedAvatar(Base):
    """A customer's resolved avatar, with the customer fields it was resolved from.

    `customer_updated_at` is the version of the customer record those fields come from, so
    an event delivered late never replaces an avatar resolved from a newer record.
    `incomplete` means a source could not answer (outage, timeout): it is asked again sooner
    than the max age. `claimed_until` keeps two processes from refreshing the same row.
    """

    __tablename__ = "avatars"

    customer_uuid: Mapped[str] = mapped_column(String(40), primary_key=True)
    source: Mapped[str] = mapped_column(String(20))
    content_type: Mapped[str] = mapped_column(String(100))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    etag: Mapped[str] = mapped_column(String(80))
    fetched_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    incomplete: Mapped[bool] = mapped_column(Boolean, default=False)
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    website_url: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(Text)
    company: Mapped[str | None] = mapped_column(Text)
    customer_updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class GoneCustomer(Base):
    """A customer this service learned was deleted or merged away.

    Events arrive on separate queues: a late `customer_created` or refresh must not bring
    back the avatar of a customer that is gone.
    """

    __tablename__ = "gone_customers"

    uuid: Mapped[str] = mapped_column(String(40), primary_key=True)
    gone_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


bookkeeping = bookkeeping_tables(Base)
UNIQUE_RULES = ()
