"""The billing_sync service's tables. Only this service reads or writes them.

A customer's billing data hangs off its `Customer` row, which is also the lock every write
about that customer takes first (`store.lock_customer`): imports, transactions,
cancellations, deletions and merges of one customer queue behind each other, while
different customers import in parallel. The row carries the MRR engine's state
(`movements.CustomerState` as JSON) and the figures last announced, so one more invoice
costs the same whatever the customer's history.
"""
from datetime import date, datetime

from sqlalchemy import (
    JSON, BigInteger, Boolean, Date, ForeignKey, Index, Integer, String, UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from roster.database import UtcDateTime
from roster.timestamps import utcnow
from roster.uow import UniqueRule, bookkeeping_tables


class Base(DeclarativeBase):
    pass


class DataSource(Base):
    """Where a customer's billing data comes from: a billing system or the Import API."""

    __tablename__ = "data_sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(500))
    system: Mapped[str] = mapped_column(String(100), default="Import API", index=True)
    status: Mapped[str] = mapped_column(String(40), default="idle")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # A connector source's connection (system "Stripe"): where its API is and the key to it.
    # The key is stored to be used by the sync workers and is never dumped, answered or logged.
    base_url: Mapped[str | None] = mapped_column(String(2000))
    api_key: Mapped[str | None] = mapped_column(String(500))


class SyncJob(Base):
    """One unit of sync work (`jobs.py`): a full source sync, one customer's re-sync, a CSV import.

    A full source sync is a parent: it lists the source's customers and queues one
    customer_resync child each (`parent_id`), and finishes when its children have.
    """

    __tablename__ = "sync_jobs"
    __table_args__ = (
        UniqueConstraint("parent_id", "customer_external_id", name="uq_sync_jobs_child"),
        Index("ix_sync_jobs_state_created", "state", "created_at"),
        Index("ix_sync_jobs_source_state", "data_source_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    data_source_id: Mapped[int] = mapped_column(ForeignKey("data_sources.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("sync_jobs.id", ondelete="CASCADE"), index=True)
    customer_external_id: Mapped[str | None] = mapped_column(String(500))
    customer_uuid: Mapped[str | None] = mapped_column(String(40))
    file_path: Mapped[str | None] = mapped_column(String(1000))  # csv_import: the uploaded file
    state: Mapped[str] = mapped_column(String(12), default="pending")
    processed: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list] = mapped_column(JSON, default=list)  # [{object_id, field, message}], bounded
    reason: Mapped[str | None] = mapped_column(String(2000))  # why a failed job failed
    cursor: Mapped[str | None] = mapped_column(String(500))  # where a resumed job carries on
    listed: Mapped[bool] = mapped_column(Boolean, default=False)  # a parent has queued all its children
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    progress_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Plan(Base):
    """A billing interval with a name, in one data source."""

    __tablename__ = "plans"
    __table_args__ = (UniqueConstraint("data_source_id", "external_id", name="uq_plans_external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(40), unique=True)
    data_source_id: Mapped[int] = mapped_column(ForeignKey("data_sources.id"), index=True)
    external_id: Mapped[str] = mapped_column(String(500))
    name: Mapped[str] = mapped_column(String(500))
    interval_count: Mapped[int] = mapped_column(Integer)
    interval_unit: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Customer(Base):
    """Billing's view of a customer of the customers service: engine state and current figures."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(40), unique=True)
    external_id: Mapped[str | None] = mapped_column(String(500))
    # The customer's data source as the customers service said at an import (neither it nor the
    # external id ever changes): set, billing need not ask again (commands.import_invoices).
    data_source_uuid: Mapped[str | None] = mapped_column(String(40))
    state: Mapped[dict] = mapped_column(JSON, default=dict)  # movements.CustomerState.to_dict()
    mrr: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str | None] = mapped_column(String(20))
    customer_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    net_payments: Mapped[int] = mapped_column(BigInteger, default=0)
    sequence: Mapped[int] = mapped_column(BigInteger, default=0)  # of customer_metrics_changed
    # False once an evaluation found no unsettled invoice, until one may exist again: most customers
    # pay, and their status then needs no look at their invoices.
    may_owe: Mapped[bool] = mapped_column(Boolean, default=True)
    # The next moment the figures may change by time alone (a due date, a future-dated line or
    # transaction); the sweep re-evaluates customers whose moment has come.
    review_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


class Subscription(Base):
    """A subscription, known by the subscription lines that name it."""

    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("data_source_id", "external_id", name="uq_subscriptions_external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(40), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    data_source_id: Mapped[int] = mapped_column(ForeignKey("data_sources.id"))  # first in the unique key
    external_id: Mapped[str] = mapped_column(String(500))
    subscription_set_external_id: Mapped[str | None] = mapped_column(String(500))
    connected_to_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id"))


class Cancellation(Base):
    """A cancellation set through `PATCH /import/subscriptions/{uuid}` (not on a line)."""

    __tablename__ = "cancellations"
    __table_args__ = (UniqueConstraint("subscription_id", "at", name="uq_cancellations_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class Invoice(Base):
    """An imported invoice; amounts in its own currency, `exchange_rate` into the account's."""

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("data_source_id", "external_id", name="uq_invoices_external_id"),
        Index("ix_invoices_customer_settled", "customer_id", "settled_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(40), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))  # indexed with settled_at
    data_source_id: Mapped[int] = mapped_column(ForeignKey("data_sources.id"))  # first in the unique key
    external_id: Mapped[str] = mapped_column(String(500))
    customer_external_id: Mapped[str | None] = mapped_column(String(500))
    date: Mapped[datetime] = mapped_column(UtcDateTime)
    due_date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    currency: Mapped[str] = mapped_column(String(3))
    exchange_rate: Mapped[str] = mapped_column(String(60), default="1")  # exact decimal text
    collection_method: Mapped[str | None] = mapped_column(String(20))
    total_in_cents: Mapped[int] = mapped_column(BigInteger)
    # The first successful payment's date: an invoice is settled from then on (null: unpaid).
    settled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class LineItem(Base):
    """One invoice line, with the MRR change it makes (`mrr`, `mrr_kind`) worked out at import."""

    __tablename__ = "line_items"
    __table_args__ = (UniqueConstraint("invoice_id", "external_id", name="uq_line_items_external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(40), unique=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))  # first in the unique key
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id"), index=True)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id"))  # looked up only to delete a plan
    type: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str | None] = mapped_column(String(500))
    amount_in_cents: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(BigInteger, default=1)
    discount_amount_in_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    discount_code: Mapped[str | None] = mapped_column(String(500))
    discount_description: Mapped[str | None] = mapped_column(String(2000))
    tax_amount_in_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    transaction_fees_in_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    transaction_fees_currency: Mapped[str | None] = mapped_column(String(3))
    service_period_start: Mapped[datetime | None] = mapped_column(UtcDateTime)
    service_period_end: Mapped[datetime | None] = mapped_column(UtcDateTime)
    prorated: Mapped[bool] = mapped_column(Boolean, default=False)
    proration_type: Mapped[str] = mapped_column(String(20), default="differential")
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    event_order: Mapped[int | None] = mapped_column(BigInteger)
    account_code: Mapped[str | None] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(String(2000))
    mrr: Mapped[int] = mapped_column(BigInteger, default=0)  # account cents the line sets or adds
    mrr_kind: Mapped[str | None] = mapped_column(String(10))  # movements.SET / ADD; None: one-time


class Transaction(Base):
    """A payment or refund attempt on an invoice."""

    __tablename__ = "transactions"
    __table_args__ = (UniqueConstraint("data_source_id", "external_id", name="uq_transactions_external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(40), unique=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    data_source_id: Mapped[int] = mapped_column(ForeignKey("data_sources.id"))  # first in the unique key
    external_id: Mapped[str | None] = mapped_column(String(500))
    type: Mapped[str] = mapped_column(String(10))
    result: Mapped[str] = mapped_column(String(12))
    date: Mapped[datetime] = mapped_column(UtcDateTime)
    amount_in_cents: Mapped[int | None] = mapped_column(BigInteger)
    transaction_fees_in_cents: Mapped[int | None] = mapped_column(BigInteger)
    transaction_fees_currency: Mapped[str | None] = mapped_column(String(3))


class Movement(Base):
    """An MRR movement of a customer, with the lines that caused it (`causes`, JSON)."""

    __tablename__ = "mrr_movements"
    __table_args__ = (Index("ix_mrr_movements_customer_at", "customer_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(40), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    type: Mapped[str] = mapped_column(String(20))
    delta: Mapped[int] = mapped_column(BigInteger)
    mrr_after: Mapped[int] = mapped_column(BigInteger)
    causes: Mapped[list] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(String(1000), default="")
    subscription_external_id: Mapped[str | None] = mapped_column(String(500))
    plan_external_id: Mapped[str | None] = mapped_column(String(500))
    data_source_uuid: Mapped[str | None] = mapped_column(String(40))


class MetricDay(Base):
    """A part of one UTC day of the account: movement totals and the net change in paying
    customers. The day's figures are the sum of its parts.

    Every import adds to the days of its movements, and concurrent imports mostly share those
    days: with one row per day each would wait for the other's commit on its row lock, so
    imports would queue one at a time however many billing workers run. A transaction adds to
    the part of its database connection instead (`store.metric_part`), which concurrent
    transactions rarely share.
    """

    __tablename__ = "metric_day_parts"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True, default=0)
    new_business: Mapped[int] = mapped_column(BigInteger, default=0)
    expansion: Mapped[int] = mapped_column(BigInteger, default=0)
    contraction: Mapped[int] = mapped_column(BigInteger, default=0)
    churn: Mapped[int] = mapped_column(BigInteger, default=0)
    reactivation: Mapped[int] = mapped_column(BigInteger, default=0)
    customers: Mapped[int] = mapped_column(BigInteger, default=0)


class ExchangeRate(Base):
    """How many units of the account currency one unit of `currency` buys from `day` on."""

    __tablename__ = "exchange_rates"

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    rate: Mapped[str] = mapped_column(String(60))  # exact decimal text


class GoneCustomer(Base):
    """A customer this service learned is gone: deleted, or merged into `merged_into`.

    Customer events arrive on separate queues and may overtake an import that asked the
    customers service just before; these rows refuse such a late write (or send it to the
    survivor's books when a merge comes late).
    """

    __tablename__ = "gone_customers"

    uuid: Mapped[str] = mapped_column(String(40), primary_key=True)
    merged_into: Mapped[str | None] = mapped_column(String(40))
    gone_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


bookkeeping = bookkeeping_tables(Base)

UNIQUE_RULES = (
    UniqueRule("invoices", ("data_source_id", "external_id"), "external_id",
               "an invoice with this external_id already exists in the data source"),
    UniqueRule("transactions", ("data_source_id", "external_id"), "external_id",
               "a transaction with this external_id already exists in the data source"),
    UniqueRule("plans", ("data_source_id", "external_id"), "external_id",
               "a plan with this external_id already exists in the data source"),
    UniqueRule("subscriptions", ("data_source_id", "external_id"), "subscription_external_id",
               "this subscription belongs to another customer of the data source"),
)
