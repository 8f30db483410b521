"""The contacts service's tables. Only this service reads or writes them."""
from datetime import datetime

from sqlalchemy import JSON, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from roster.database import UtcDateTime
from roster.timestamps import utcnow
from roster.uow import UniqueRule, bookkeeping_tables


class Base(DeclarativeBase):
    pass


class Contact(Base):
    """A person with a relationship to a customer.

    `customer_external_id` is a copy of the customer's external id, taken when the
    contact is created and refreshed when its customer is merged into another.
    An external id names one contact per data source; contacts without one are many.
    """

    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("data_source_uuid", "external_id", name="uq_contacts_source_external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(40), unique=True)
    customer_uuid: Mapped[str] = mapped_column(String(40), index=True)
    customer_external_id: Mapped[str | None] = mapped_column(String(500), index=True)
    data_source_uuid: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str | None] = mapped_column(String(500))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)  # 1 is the customer's primary contact
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
    # The customer the contact belonged to before a customer merge moved it (kept through later
    # merges; null for a contact of its own customer): an unmerge of that customer's external id
    # takes it back. Not part of the contact's wire shape.
    merged_from: Mapped[str | None] = mapped_column(String(40), index=True)
    # Fields a user protected from billing-system syncs, `{field: true}` (domain.contact_overrides).
    # Shown only by a retrieve `with_overrides`, not part of the contact's wire shape.
    overrides: Mapped[dict] = mapped_column(JSON, default=dict, server_default="{}")

    @validates("email")
    def _keep_email_lower(self, _key, email):
        """Keep the column the email filter searches in step with every change of the email."""
        self.email_lower = email.lower() if email else None
        return email


class KnownCustomer(Base):
    """A customer this service has heard of, and what became of it.

    `state` is `active`, `deleted` or `merged` (into `merged_into`). A contact create and
    the handlers of `customer_deleted` / `customer_merged` lock this row (SELECT ... FOR
    UPDATE), so a contact is either committed before the deletion is handled (and deleted
    by it) or refused after. Events about customers arrive on separate queues and may be
    handled out of order; `merged_into` lets a late event still land contacts where they
    belong. `external_id` is the customer's own, as last heard.
    """

    __tablename__ = "known_customers"

    uuid: Mapped[str] = mapped_column(String(40), primary_key=True)
    state: Mapped[str] = mapped_column(String(10), default="active")
    merged_into: Mapped[str | None] = mapped_column(String(40))
    external_id: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


bookkeeping = bookkeeping_tables(Base)

EXTERNAL_ID_TAKEN = UniqueRule("contacts", ("data_source_uuid", "external_id"), "external_id",
                               "is already used by another contact of this data source")
UNIQUE_RULES = (EXTERNAL_ID_TAKEN,)
