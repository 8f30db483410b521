"""Revenue recognition schedule of a customer, by calendar month (`/customers/{uuid}/revenue_schedule`).

Each invoice line's amount without tax is recognised evenly by day over its service period (one-time
lines, and lines without a period, on the invoice date). Per month: `recognized` (revenue earned in
the month) and `deferred` (invoiced on or before the month's end but not yet recognised by then).
Whole cents that add up exactly: each line is split across months by largest remainder.

Pure: no nameko, database or network. Rules: `docs/mrr.md` ("Revenue schedule").
"""
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from services.billing_sync.invoices import ONE_TIME, Invoice, LineItem
from services.billing_sync.money import round_cents, split_cents
from services.billing_sync.months import month_end, month_of, month_range, next_month


@dataclass(frozen=True)
class ScheduleMonth:
    """One calendar month of the schedule; `month` is its first day."""

    month: date
    recognized: int
    deferred: int


def revenue_schedule(invoices: Iterable[Invoice]) -> list[ScheduleMonth]:
    """Return every month from the first invoice or service day to the last, in account cents."""
    recognized: dict[date, int] = {}
    deferred: dict[date, int] = {}
    for invoice in invoices:
        for item in invoice.line_items:
            net = round_cents(item.net_in_cents * invoice.exchange_rate)
            by_month = recognition_by_month(item, invoice, net)
            for month, cents in by_month.items():
                recognized[month] = recognized.get(month, 0) + cents
            for month, cents in deferral_by_month(by_month, month_of(invoice.date.date()), net):
                deferred[month] = deferred.get(month, 0) + cents
            deferred.setdefault(month_of(invoice.date.date()), 0)
    if not recognized and not deferred:
        return []
    months = month_range(min(recognized | deferred), max(recognized | deferred))
    return [ScheduleMonth(m, recognized.get(m, 0), deferred.get(m, 0)) for m in months]


def recognition_days(item: LineItem, invoice: Invoice) -> tuple[date, int]:
    """Return (first day, number of days) over which the line is recognised (UTC calendar days
    from the period start's date up to, not including, the period end's date; at least one)."""
    start = item.service_period_start
    if item.type == ONE_TIME or start is None:
        return invoice.date.date(), 1
    end = item.service_period_end
    days = (end.date() - start.date()).days if end is not None else 1
    return start.date(), max(1, days)


def recognition_by_month(item: LineItem, invoice: Invoice, net: int) -> dict[date, int]:
    """Return the line's `net` cents recognised per month (first day of month → cents)."""
    first, days = recognition_days(item, invoice)
    months, weights = days_per_month(first, days)
    return dict(zip(months, split_cents(net, weights)))


def deferral_by_month(by_month: dict[date, int], invoiced: date, net: int):
    """Yield (month, cents invoiced but not yet recognised at its end) from the invoice's month
    until the line is fully recognised; a line billed in arrears is never deferred."""
    last = max(by_month)
    recognised = sum(cents for month, cents in by_month.items() if month < invoiced)
    month = invoiced
    while month < last:
        recognised += by_month.get(month, 0)
        yield month, net - recognised
        month = next_month(month)


def days_per_month(first: date, days: int) -> tuple[list[date], list[int]]:
    """Return the months touched by `days` days from `first`, and how many days fall in each."""
    months, counts, day, left = [], [], first, days
    while True:
        span = min(left, (month_end(day) - day).days + 1)
        months.append(month_of(day))
        counts.append(span)
        left -= span
        if left == 0:  # step to the next day only if one is counted: 9999-12-31 has none after it
            return months, counts
        day += timedelta(days=span)
