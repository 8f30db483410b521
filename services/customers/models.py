"""The customers service's tables. Only this service reads or writes them."""
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from roster.database import UtcDateTime
from roster.timestamps import utcnow
from roster.uow import UniqueRule, bookkeeping_tables
from services.customers.domain import search_text


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(500), default="")
    email: Mapped[str] = mapped_column(String(320), default="")
    email_lower: Mapped[str] = mapped_column(String(320), default="", index=True)
    # name, company and email case-folded, kept by the hook below; what `q` searches
    search_text: Mapped[str] = mapped_column(Text, default="")
    company: Mapped[str] = mapped_column(String(500), default="")
    # `status` is what lists filter on: the billing status while billing says one, else `lead_status`.
    status: Mapped[str] = mapped_column(String(40), default="New Lead", index=True)
    lead_status: Mapped[str] = mapped_column(String(40), default="New Lead", server_default="New Lead")
    lead_created_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    free_trial_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    customer_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    owner: Mapped[str | None] = mapped_column(String(320))
    city: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(2))
    zip: Mapped[str | None] = mapped_column(String(40))
    website_url: Mapped[str | None] = mapped_column(String(2000))
    billing_system_url: Mapped[str | None] = mapped_column(String(2000))
    # The projection of billing_sync's customer_metrics_changed (docs/events.md).
    mrr: Mapped[int] = mapped_column(BigInteger, default=0)
    arr: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    net_payments: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    metrics_sequence: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    billing_system_type: Mapped[str] = mapped_column(String(100), default="Import API", index=True)
    # `attributes.stripe`: what the billing system's connector last synced, replaced wholesale.
    stripe_attributes: Mapped[dict] = mapped_column(JSON, default=dict, server_default="{}")
    # Fields a user protected from syncs (services/customers/syncing.py has the shape).
    overrides: Mapped[dict] = mapped_column(JSON, default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    # Its external ids, tags and custom attributes are rows of the tables below, written with
    # statements by commands.py, read by store.py, deleted with it by ON DELETE CASCADE.


class ExternalId(Base):
    """A (data source, external id) pair that names a customer; merges add the loser's pairs."""

    __tablename__ = "customer_external_ids"
    __table_args__ = (UniqueConstraint("data_source_uuid", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    data_source_uuid: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str] = mapped_column(String(500))
    # The customer this id belonged to before a merge; null for the customer's own id, which
    # therefore always comes first in `external_ids`.
    merged_from: Mapped[str | None] = mapped_column(String(40))


class Tag(Base):
    __tablename__ = "customer_tags"
    __table_args__ = (UniqueConstraint("customer_id", "tag"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    tag: Mapped[str] = mapped_column(String(200))


class CustomAttribute(Base):
    __tablename__ = "customer_custom_attributes"
    __table_args__ = (UniqueConstraint("customer_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(20))
    value: Mapped[object] = mapped_column(JSON, nullable=True)
    source: Mapped[str] = mapped_column(String(100), default="API")


class CustomAttributeChange(Base):
    """One value a custom attribute took (None: removed), for `attributes_with_history`. Goes with
    its customer."""

    __tablename__ = "customer_custom_attribute_changes"
    __table_args__ = (Index("ix_custom_attribute_changes_customer_key", "customer_id", "key", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    value: Mapped[object] = mapped_column(JSON, nullable=True)
    performed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    performed_by: Mapped[str] = mapped_column(String(100))  # the value's source: API, a billing system...
    initial: Mapped[bool] = mapped_column(Boolean, default=False)  # the attribute's first value


class MergedCustomer(Base):
    """What a merged-away customer was when it was merged: its profile, tags and custom
    attributes, kept by the customer that now holds its external id, so an unmerge can give
    them back (`services/customers/merges.py`). Follows that customer through later merges;
    goes with it when it is deleted."""

    __tablename__ = "merged_customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    uuid: Mapped[str] = mapped_column(String(40), unique=True)  # the merged-away customer's
    snapshot: Mapped[dict] = mapped_column(JSON)  # merges.snapshot(): {profile, tags, custom}
    merged_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


Index("ix_customer_external_ids_source", ExternalId.data_source_uuid, ExternalId.customer_id)
Index("ix_customer_external_ids_external_id", ExternalId.external_id)


bookkeeping = bookkeeping_tables(Base)

UNIQUE_RULES = (
    UniqueRule("customer_external_ids", ("data_source_uuid", "external_id"), "external_id",
               "is already used by another customer of this data source"),
    UniqueRule("customer_tags", ("customer_id", "tag"), "tags", "this customer already has the tag"),
    UniqueRule("customer_custom_attributes", ("customer_id", "key"), "custom",
               "this customer already has an attribute with that key"),
)


@event.listens_for(Customer, "before_insert")
@event.listens_for(Customer, "before_update")
def _keep_search_text(_mapper, _connection, customer: Customer) -> None:
    customer.search_text = search_text(customer.name, customer.company, customer.email)
