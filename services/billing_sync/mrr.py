"""MRR of one invoice line: the contract's formula (reference §4), normalised to one month.

    MRR = round((amount_in_cents − tax_amount_in_cents) × exchange_rate
                × duration_ratio × prorate_factor)

Pure: no nameko, database or network. `docs/mrr.md` has worked examples; `tests/unit/test_mrr_engine.py`
covers every interval and the prorations.
"""
from datetime import datetime, timedelta
from decimal import Decimal, localcontext

from roster.errors import ValidationFailed
from services.billing_sync.invoices import SUBSCRIPTION, LineItem, Plan
from services.billing_sync.money import round_cents
from services.billing_sync.months import add_months, day_number, days_in_month

# A month is a twelfth of the mean Gregorian-with-leap-day year: 365.25 / 12 = 30.4375 days. Weekly
# and daily plans are normalised with it (a $7 weekly plan is 7 × 30.4375 / 7 = $30.44 a month).
DAYS_PER_MONTH = Decimal("365.25") / 12
MONTHS_PER_UNIT = {"month": 1, "quarter": 3, "year": 12}
DAYS_PER_UNIT = {"day": 1, "week": 7}
INTERVAL_UNITS = tuple(MONTHS_PER_UNIT) + tuple(DAYS_PER_UNIT)


def check_plan(plan: Plan | None) -> Plan:
    """Return `plan` if it can normalise MRR; otherwise a ValidationFailed naming the field."""
    if plan is None:
        raise ValidationFailed("plan_uuid: required for subscription line items", param="plan_uuid")
    if plan.interval_unit not in INTERVAL_UNITS:
        raise ValidationFailed(
            f"interval_unit: must be one of {', '.join(INTERVAL_UNITS)}", param="interval_unit"
        )
    if not isinstance(plan.interval_count, int) or plan.interval_count < 1:
        raise ValidationFailed("interval_count: must be a whole number of at least 1",
                               param="interval_count")
    return plan


def duration_ratio_parts(plan: Plan) -> tuple[Decimal, Decimal]:
    """Return (numerator, denominator) of the duration ratio, both exact, so MRR is divided once."""
    check_plan(plan)
    if plan.interval_unit in MONTHS_PER_UNIT:
        return Decimal(1), Decimal(MONTHS_PER_UNIT[plan.interval_unit] * plan.interval_count)
    return DAYS_PER_MONTH, Decimal(DAYS_PER_UNIT[plan.interval_unit] * plan.interval_count)


def duration_ratio(plan: Plan) -> Decimal:
    """Return the factor that turns one interval's amount into one month's (annual: 1/12)."""
    numerator, denominator = duration_ratio_parts(plan)
    with localcontext(prec=40):
        return numerator / denominator


def full_period_days(end: datetime, plan: Plan) -> int:
    """Return the length in days of the calendar interval of `plan` that ends at `end` (one month
    before May 1 is Apr 1: 30 days; months are counted on the calendar, with the day clamped).

    In year 1 that interval starts before year 1, which `datetime` cannot hold: it is measured on
    the proleptic Gregorian calendar (the one `date` uses, extended back: 0000-12-20 → 0001-01-20 is
    31 days), so a proration there gets the same factor as in any other year. Clamping the start
    at 0001-01-01 instead would shrink the full period and understate the MRR.
    """
    check_plan(plan)
    if plan.interval_unit in DAYS_PER_UNIT:
        return DAYS_PER_UNIT[plan.interval_unit] * plan.interval_count
    year, month, day = calendar_months_before(end, MONTHS_PER_UNIT[plan.interval_unit] * plan.interval_count)
    return end.toordinal() - day_number(year, month, day)


def months_before(moment: datetime, months: int) -> datetime:
    """Return `moment` moved back `months` calendar months, the day clamped to the month's length
    (Mar 31 − 1 month = Feb 29 in a leap year)."""
    year, month, day = calendar_months_before(moment, months)
    return moment.replace(year=year, month=month, day=day)


def calendar_months_before(moment: datetime, months: int) -> tuple[int, int, int]:
    """Return (year, month, day) `months` calendar months before `moment`, the day clamped; the
    year may be 0 or less (see `full_period_days`)."""
    year, month = add_months(moment.year, moment.month, -months)
    return year, month, min(moment.day, days_in_month(year, month))


def seconds(span: timedelta) -> Decimal:
    """Return `span` in seconds as an exact Decimal."""
    return Decimal(span.days * 86400 + span.seconds) + Decimal(span.microseconds) / 1_000_000


def service_period(item: LineItem) -> tuple[datetime, datetime]:
    """Return the item's (start, end), checked: both set and the end after the start."""
    start, end = item.service_period_start, item.service_period_end
    if start is None:
        raise ValidationFailed("service_period_start: required for subscription line items",
                               param="service_period_start")
    if end is None:
        raise ValidationFailed("service_period_end: required for prorated line items",
                               param="service_period_end")
    if end <= start:
        raise ValidationFailed("service_period_end: must be after service_period_start",
                               param="service_period_end")
    return start, end


def prorate_factor_parts(item: LineItem) -> tuple[Decimal, Decimal]:
    """Return (full period, prorated period) in seconds for a prorated item, (1, 1) otherwise.

    The full period is the plan interval that ends where the prorated period ends (prorations run
    up to the next regular renewal), counted on the calendar so 28-, 30- and 31-day months work.
    """
    if not item.prorated:
        return Decimal(1), Decimal(1)
    start, end = service_period(item)
    # The full period starts at `end`'s time of day, so it is a whole number of days.
    return Decimal(full_period_days(end, check_plan(item.plan)) * 86400), seconds(end - start)


def prorate_factor(item: LineItem) -> Decimal:
    """Return full period ÷ prorated period for a prorated item, 1 otherwise."""
    full, prorated = prorate_factor_parts(item)
    with localcontext(prec=40):
        return full / prorated


def line_item_mrr(item: LineItem, exchange_rate: Decimal = Decimal(1)) -> int:
    """Return the MRR in account-currency cents that `item` sets or adds (0 for one-time and trial
    items); rounded half-up once, at the end, so no intermediate rounding piles up."""
    if item.type != SUBSCRIPTION:
        return 0
    ratio_numerator, ratio_denominator = duration_ratio_parts(check_plan(item.plan))
    full, prorated = prorate_factor_parts(item)
    with localcontext(prec=80):
        numerator = item.net_in_cents * Decimal(exchange_rate) * ratio_numerator * full
        return round_cents(numerator / (ratio_denominator * prorated))
