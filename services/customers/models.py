"""The customers service's tables. Only this service reads or writes them."""
from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from roster.database import UtcDateTime
from roster.timestamps import utcnow
from roster.uow import bookkeeping_tables


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(500), default="")
    email: Mapped[str] = mapped_column(String(320), default="")
    email_lower: Mapped[str] = mapped_column(String(320), default="", index=True)
    company: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[str] = mapped_column(String(40), default="New Lead", index=True)
    lead_created_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    free_trial_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    customer_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    owner: Mapped[str | None] = mapped_column(String(320))
    city: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(2))
    zip: Mapped[str | None] = mapped_column(String(40))
    website_url: Mapped[str | None] = mapped_column(String(2000))
    mrr: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    billing_system_type: Mapped[str] = mapped_column(String(100), default="Import API", index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    external_ids: Mapped[list["ExternalId"]] = relationship(
        back_populates="customer", order_by="ExternalId.id", cascade="all, delete-orphan"
    )
    tags: Mapped[list["Tag"]] = relationship(order_by="Tag.id", cascade="all, delete-orphan")
    custom_attributes: Mapped[list["CustomAttribute"]] = relationship(
        order_by="CustomAttribute.id", cascade="all, delete-orphan"
    )


class ExternalId(Base):
    """A (data source, external id) pair that names a customer; merges add the loser's pairs."""

    __tablename__ = "customer_external_ids"
    __table_args__ = (UniqueConstraint("data_source_uuid", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    data_source_uuid: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str] = mapped_column(String(500))

    customer: Mapped[Customer] = relationship(back_populates="external_ids")


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


Index("ix_customer_external_ids_source", ExternalId.data_source_uuid, ExternalId.customer_id)
Index("ix_customer_external_ids_external_id", ExternalId.external_id)


bookkeeping = bookkeeping_tables(Base)
UNIQUE_RULES = ()
