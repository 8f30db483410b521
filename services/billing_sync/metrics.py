"""Metric series for `/metrics/mrr`, `/metrics/arr` and `/metrics/customer-count` (reference §2.13).

The service keeps one row per UTC day with the account's movement totals by type and the net change
in paying customers (`MetricDay`); `day_totals` turns movements into such rows, so an import adds
(or, when a customer's history is recomputed, subtracts and re-adds) a few rows instead of
recomputing anything. The series functions aggregate the rows between two dates into the contract's
shapes. For every entry, `mrr = previous mrr + new-business + expansion + reactivation + contraction
+ churn` holds by construction: the MRR is the opening balance plus the running sum of movements.

Pure: no nameko, database or network. Rules: `docs/mrr.md` ("Metrics").
"""
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from roster.errors import ValidationFailed
from services.billing_sync.months import month_end
from services.billing_sync.movements import (
    CHURN, CONTRACTION, EXPANSION, NEW_BIZ, REACTIVATION, Movement,
)

INTERVALS = ("day", "week", "month", "quarter")
SUNDAY = 6  # weeks start on Sunday by default, as ChartMogul's (`week_start_on`)
MOVEMENT_FIELDS = {NEW_BIZ: "new_business", EXPANSION: "expansion", CONTRACTION: "contraction",
                   CHURN: "churn", REACTIVATION: "reactivation"}
CUSTOMER_CHANGE = {NEW_BIZ: 1, REACTIVATION: 1, CHURN: -1}


@dataclass(frozen=True)
class MetricDay:
    """One UTC day of the account: movement totals in cents (contraction and churn negative) and
    the net change in paying customers (+1 per new_biz or reactivation, −1 per churn)."""

    day: date
    new_business: int = 0
    expansion: int = 0
    contraction: int = 0
    churn: int = 0
    reactivation: int = 0
    customers: int = 0

    @property
    def net_mrr(self) -> int:
        """Return the day's total change of MRR."""
        return (self.new_business + self.expansion + self.contraction + self.churn
                + self.reactivation)

    def plus(self, other: "MetricDay", sign: int = 1) -> "MetricDay":
        """Return this day with `other`'s figures added (or, with sign=-1, taken away)."""
        return MetricDay(self.day, *(getattr(self, f.name) + sign * getattr(other, f.name)
                                     for f in fields(self)[1:]))

    def is_zero(self) -> bool:
        """Return whether every figure of the day is 0."""
        return all(getattr(self, f.name) == 0 for f in fields(self)[1:])


@dataclass(frozen=True)
class Summary:
    """The contract's `summary`: the last entry, the one before it, and the change in percent."""

    current: int
    previous: int
    percentage_change: float

    def to_dict(self) -> dict:
        """Return the wire shape."""
        return {"current": self.current, "previous": self.previous,
                "percentage-change": self.percentage_change}


@dataclass(frozen=True)
class MrrEntry:
    """One entry of `/metrics/mrr`: MRR at the interval's last day and its movements."""

    date: date
    mrr: int
    new_business: int
    expansion: int
    contraction: int
    churn: int
    reactivation: int
    percentage_change: float

    def to_dict(self) -> dict:
        """Return the wire shape (hyphenated keys)."""
        return {"date": self.date.isoformat(), "mrr": self.mrr,
                "mrr-new-business": self.new_business, "mrr-expansion": self.expansion,
                "mrr-contraction": self.contraction, "mrr-churn": self.churn,
                "mrr-reactivation": self.reactivation, "percentage-change": self.percentage_change}


@dataclass(frozen=True)
class ValueEntry:
    """One entry of `/metrics/arr` (`key` "arr") or `/metrics/customer-count` ("customers")."""

    date: date
    key: str
    value: int
    percentage_change: float

    def to_dict(self) -> dict:
        """Return the wire shape."""
        return {"date": self.date.isoformat(), self.key: self.value,
                "percentage-change": self.percentage_change}


@dataclass(frozen=True)
class Series:
    """A metric's entries and summary; `to_dict()` is the response body."""

    entries: tuple
    summary: Summary

    def to_dict(self) -> dict:
        """Return the response body: `entries` and `summary`, no paging keys."""
        return {"entries": [e.to_dict() for e in self.entries], "summary": self.summary.to_dict()}


def day_totals(movements: Iterable[Movement]) -> list[MetricDay]:
    """Return the movements summed per UTC day, oldest day first (days with no change left out)."""
    days: dict[date, MetricDay] = {}
    for movement in movements:
        day = movement.at.date()
        row = MetricDay(day, customers=CUSTOMER_CHANGE.get(movement.type, 0),
                        **{MOVEMENT_FIELDS[movement.type]: movement.delta})
        days[day] = days[day].plus(row) if day in days else row
    return [days[d] for d in sorted(days) if not days[d].is_zero()]


def day_changes(removed: Iterable[Movement], added: Iterable[Movement]) -> list[MetricDay]:
    """Return what to add to the stored day rows when `removed` movements give way to `added`
    (a recompute from a point in time); days whose figures do not change are left out."""
    days = {row.day: row for row in day_totals(added)}
    for row in day_totals(removed):
        days[row.day] = days.get(row.day, MetricDay(row.day)).plus(row, sign=-1)
    return [days[d] for d in sorted(days) if not days[d].is_zero()]


def intervals(start: date, end: date, interval: str, week_start: int = SUNDAY) -> list[tuple[date, date]]:
    """Return the (first day, last day) of every interval from `start` to `end`, clipped to them."""
    check_range(start, end, interval)
    spans, first = [], start
    while True:
        last = min(end, last_day(first, interval, week_start))
        spans.append((first, last))
        if last == end:  # stop before stepping past `end`: after 9999-12-31 there is no day
            return spans
        first = last + timedelta(days=1)


def last_day(day: date, interval: str, week_start: int = SUNDAY) -> date:
    """Return the last day of the interval (day, week, month, calendar quarter) holding `day`;
    the week holding 9999-12-31 would end in year 10000, so it ends on 9999-12-31."""
    if interval == "day":
        return day
    if interval == "week":
        return day + timedelta(days=min((week_start - 1 - day.weekday()) % 7, (date.max - day).days))
    if interval == "quarter":
        return month_end(day.replace(month=(day.month - 1) // 3 * 3 + 3, day=1))
    return month_end(day)


def mrr_series(days: Sequence[MetricDay], *, start: date, end: date, interval: str,
               opening_mrr: int = 0, week_start: int = SUNDAY) -> Series:
    """Return `/metrics/mrr`: per interval the MRR at its last day and the movements within it.

    `opening_mrr` is the MRR at the end of the day before `start`; day rows before `start` are
    added to it, so passing every row and 0 works too.
    """
    opening, totals = _interval_totals(days, start, end, interval, opening_mrr, week_start)
    entries, mrr, previous = [], opening, opening
    for row in totals:
        mrr += row.net_mrr
        entries.append(MrrEntry(row.day, mrr, row.new_business, row.expansion, row.contraction,
                                row.churn, row.reactivation, percentage_change(previous, mrr)))
        previous = mrr
    return Series(tuple(entries), _summary([e.mrr for e in entries], opening))


def arr_series(days: Sequence[MetricDay], *, start: date, end: date, interval: str,
               opening_mrr: int = 0, week_start: int = SUNDAY) -> Series:
    """Return `/metrics/arr`: 12 × the MRR at the last day of each interval."""
    opening, totals = _interval_totals(days, start, end, interval, opening_mrr, week_start)
    values, mrr = [], opening
    for row in totals:
        mrr += row.net_mrr
        values.append((row.day, 12 * mrr))
    return _value_series("arr", values, 12 * opening)


def customer_count_series(days: Sequence[MetricDay], *, start: date, end: date, interval: str,
                          opening_customers: int = 0, week_start: int = SUNDAY) -> Series:
    """Return `/metrics/customer-count`: paying customers at the last day of each interval."""
    opening, totals = _interval_totals(days, start, end, interval, opening_customers, week_start,
                                       figure=lambda row: row.customers)
    values, count = [], opening
    for row in totals:
        count += row.customers
        values.append((row.day, count))
    return _value_series("customers", values, opening)


def percentage_change(previous: int, current: int) -> float:
    """Return the change from `previous` to `current` in percent, 2 decimals (0.0 from 0)."""
    if previous == 0:
        return 0.0
    change = Decimal(current - previous) * 100 / Decimal(previous)
    return float(change.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def check_range(start: date, end: date, interval: str) -> None:
    """Raise ValidationFailed naming the parameter when the dates or the interval are wrong."""
    if interval not in INTERVALS:
        raise ValidationFailed(f"interval: must be one of {', '.join(INTERVALS)}", param="interval")
    if end < start:
        raise ValidationFailed("end-date: must be on or after start-date", param="end-date")


def _interval_totals(days: Sequence[MetricDay], start: date, end: date, interval: str,
                     opening: int, week_start: int, figure=lambda row: row.net_mrr):
    """Return (opening plus `figure` of the rows before `start`, one summed row per interval
    dated at the interval's last day); rows after `end` are ignored."""
    spans = intervals(start, end, interval, week_start)
    totals = [MetricDay(last) for _, last in spans]
    index = 0
    for row in sorted(days, key=lambda r: r.day):
        if row.day < start:
            opening += figure(row)
            continue
        while index < len(spans) and row.day > spans[index][1]:
            index += 1
        if index == len(spans):
            break
        totals[index] = totals[index].plus(row)
    return opening, totals


def _value_series(key: str, values: list[tuple[date, int]], opening: int) -> Series:
    entries, previous = [], opening
    for day, value in values:
        entries.append(ValueEntry(day, key, value, percentage_change(previous, value)))
        previous = value
    return Series(tuple(entries), _summary([value for _, value in values], opening))


def _summary(values: list[int], opening: int) -> Summary:
    current = values[-1]
    previous = values[-2] if len(values) > 1 else opening
    return Summary(current, previous, percentage_change(previous, current))
