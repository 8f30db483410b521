"""Calendar months as their first day: the unit of the revenue schedule and of monthly metrics.

`date` holds years 1 to 9999 only: December 9999 has no next month, so walks over months stop at a
month's last day (`month_end`) rather than at the next month's first, and count months as integers.
"""
import calendar
from datetime import date

# The Gregorian calendar repeats every 400 years, which hold exactly 146097 days.
YEARS_PER_CYCLE, DAYS_PER_CYCLE = 400, 146097


def month_of(day: date) -> date:
    """Return the first day of `day`'s month."""
    return day.replace(day=1)


def month_end(month: date) -> date:
    """Return the last day of `month`'s month (representable even for December 9999)."""
    return month.replace(day=days_in_month(month.year, month.month))


def next_month(month: date) -> date:
    """Return the first day of the month after `month`'s (ValueError after December 9999)."""
    year, number = add_months(month.year, month.month, 1)
    return date(year, number, 1)


def month_range(first: date, last: date) -> list[date]:
    """Return the first days of every month from `first`'s to `last`'s, both included."""
    start, stop = first.year * 12 + first.month - 1, last.year * 12 + last.month - 1
    return [date(index // 12, index % 12 + 1, 1) for index in range(start, stop + 1)]


def add_months(year: int, month: int, months: int) -> tuple[int, int]:
    """Return the (year, month) `months` calendar months after year/month (before if negative);
    plain integers, so the year may fall outside `date`'s 1–9999."""
    year, index = divmod(year * 12 + month - 1 + months, 12)
    return year, index + 1


def days_in_month(year: int, month: int) -> int:
    """Return the length of the month in any year of the proleptic Gregorian calendar (0 = 1 BC)."""
    return calendar.monthrange(year % YEARS_PER_CYCLE or YEARS_PER_CYCLE, month)[1]


def day_number(year: int, month: int, day: int) -> int:
    """Return `date(year, month, day).toordinal()` for any year, before 1 too: the day is moved
    into years 1–400 by whole cycles, which shift the count by exactly DAYS_PER_CYCLE each."""
    cycles, year = divmod(year - 1, YEARS_PER_CYCLE)
    return date(year + 1, month, day).toordinal() + cycles * DAYS_PER_CYCLE
