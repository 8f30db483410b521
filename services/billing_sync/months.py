"""Calendar months as their first day: the unit of the revenue schedule and of monthly metrics."""
from datetime import date, timedelta


def month_of(day: date) -> date:
    """Return the first day of `day`'s month."""
    return day.replace(day=1)


def next_month(month: date) -> date:
    """Return the first day of the month after `month`'s."""
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


def month_range(first: date, last: date) -> list[date]:
    """Return the first days of every month from `first`'s to `last`'s, both included."""
    months, month = [], month_of(first)
    while month <= last:
        months.append(month)
        month = next_month(month)
    return months
