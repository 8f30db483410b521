"""Small builders for the MRR engine's tests: invoices and lines in one line each."""
from datetime import datetime, timezone
from decimal import Decimal

from services.billing_sync.invoices import (
    ONE_TIME, SUBSCRIPTION, TRIAL, Invoice, LineItem, Plan, Transaction,
)

MONTHLY = Plan("month")
QUARTERLY = Plan("quarter")
ANNUAL = Plan("year")
WEEKLY = Plan("week")
DAILY = Plan("day")


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    """Return an aware UTC datetime."""
    return datetime(year, month, day, hour, tzinfo=timezone.utc)


def line(line_id: str, subscription: str, amount: int, start: datetime, end: datetime,
         plan: Plan = MONTHLY, **extra) -> LineItem:
    """Return a subscription line of `amount` cents for `subscription` over [start, end)."""
    return LineItem(id=line_id, type=SUBSCRIPTION, amount_in_cents=amount,
                    external_id=f"ext-{line_id}", subscription_id=subscription, plan=plan,
                    service_period_start=start, service_period_end=end, **extra)


def trial(line_id: str, subscription: str, start: datetime, end: datetime) -> LineItem:
    """Return a free trial line."""
    return LineItem(id=line_id, type=TRIAL, amount_in_cents=0, external_id=f"ext-{line_id}",
                    subscription_id=subscription, plan=MONTHLY,
                    service_period_start=start, service_period_end=end)


def one_time(line_id: str, amount: int, **extra) -> LineItem:
    """Return a one-time line."""
    return LineItem(id=line_id, type=ONE_TIME, amount_in_cents=amount,
                    external_id=f"ext-{line_id}", **extra)


def invoice(invoice_id: str, date: datetime, *lines: LineItem, transactions=(), due_date=None,
            exchange_rate: Decimal = Decimal(1)) -> Invoice:
    """Return an invoice holding `lines`."""
    return Invoice(id=invoice_id, date=date, line_items=tuple(lines),
                   transactions=tuple(transactions), due_date=due_date,
                   exchange_rate=exchange_rate)


def paid(transaction_id: str, date: datetime, amount: int | None = None,
         result: str = "successful", kind: str = "payment") -> Transaction:
    """Return a payment (or, with kind="refund", a refund)."""
    return Transaction(id=transaction_id, type=kind, result=result, date=date,
                       amount_in_cents=amount)
