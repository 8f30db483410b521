"""Invoices as the MRR engine reads them: plain frozen dataclasses, no ORM, no framework.

The service layer builds these from its rows (or straight from an import request) and hands them to
the pure modules: `mrr` (line item MRR), `movements` (MRR over time), `payments`, `status`, `revenue`.
Amounts are integer cents in the invoice's own currency; `Invoice.exchange_rate` turns them into the
account currency (see `money.rate_on`).
"""
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

SUBSCRIPTION, ONE_TIME, TRIAL = "subscription", "one_time", "trial"
LINE_ITEM_TYPES = (SUBSCRIPTION, ONE_TIME, TRIAL)
DIFFERENTIAL, FULL, DIFFERENTIAL_MRR = "differential", "full", "differential_mrr"
PRORATION_TYPES = (DIFFERENTIAL, FULL, DIFFERENTIAL_MRR)
PAYMENT, REFUND = "payment", "refund"
SUCCESSFUL, FAILED = "successful", "failed"


@dataclass(frozen=True)
class Plan:
    """A billing interval: `interval_count` × `interval_unit` (day, week, month, quarter, year)."""

    interval_unit: str
    interval_count: int = 1
    uuid: str | None = None


@dataclass(frozen=True)
class LineItem:
    """One invoice line. `subscription_id` is whatever identifies the subscription uniquely
    (the service passes its subscription uuid); `id` and `external_id` name the line in movements."""

    id: str
    type: str
    amount_in_cents: int
    tax_amount_in_cents: int = 0
    external_id: str | None = None
    subscription_id: str | None = None
    plan: Plan | None = None
    service_period_start: datetime | None = None
    service_period_end: datetime | None = None
    prorated: bool = False
    proration_type: str = DIFFERENTIAL
    cancelled_at: datetime | None = None
    quantity: int = 1
    event_order: int | None = None

    @property
    def net_in_cents(self) -> int:
        """Return the amount without tax (discounts are already taken off `amount_in_cents`)."""
        return self.amount_in_cents - self.tax_amount_in_cents


@dataclass(frozen=True)
class Transaction:
    """A payment or refund attempt on an invoice; `amount_in_cents=None` means the invoice total."""

    id: str
    type: str
    result: str
    date: datetime
    amount_in_cents: int | None = None
    external_id: str | None = None


@dataclass(frozen=True)
class Invoice:
    """An invoice with its lines and transactions; `exchange_rate` converts to the account currency
    (1 for an invoice already in it), taken once at import for the invoice's date."""

    id: str
    date: datetime
    line_items: tuple[LineItem, ...] = ()
    transactions: tuple[Transaction, ...] = ()
    due_date: datetime | None = None
    currency: str = "USD"
    exchange_rate: Decimal = Decimal(1)
    external_id: str | None = None

    @property
    def total_in_cents(self) -> int:
        """Return what the invoice asks for (tax included), in its own currency."""
        return sum(item.amount_in_cents for item in self.line_items)

    @property
    def subscription_ids(self) -> frozenset[str]:
        """Return the subscriptions this invoice bills (subscription and trial lines)."""
        return frozenset(i.subscription_id for i in self.line_items if i.subscription_id)


@dataclass(frozen=True)
class Cancellation:
    """A cancellation set through the API (`PATCH /import/subscriptions/{uuid}`), not on a line."""

    subscription_id: str
    at: datetime
