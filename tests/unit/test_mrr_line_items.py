"""MRR of one line item: the contract's formula, every plan interval, tax, prorations."""
from decimal import Decimal

import pytest

from roster.errors import ValidationFailed
from services.billing_sync.invoices import LineItem, Plan
from services.billing_sync.mrr import (
    DAYS_PER_MONTH, duration_ratio, line_item_mrr, months_before, prorate_factor,
)
from tests.unit.mrr_builders import (
    ANNUAL, DAILY, MONTHLY, QUARTERLY, WEEKLY, line, one_time, trial, utc,
)


def mrr_of(amount, plan, **extra):
    start, end = extra.pop("start", utc(2024, 1, 1)), extra.pop("end", utc(2024, 2, 1))
    return line_item_mrr(line("l1", "s1", amount, start, end, plan=plan, **extra))


def test_a_month_is_a_twelfth_of_365_25_days():
    assert DAYS_PER_MONTH == Decimal("30.4375")


@pytest.mark.parametrize("amount, plan, expected", [
    (5000, MONTHLY, 5000),                  # $50 a month
    (120000, ANNUAL, 10000),                # $1,200 a year = $100 a month
    (200000, ANNUAL, 16667),                # the contract's $2,000 a year = $166.67
    (9000, QUARTERLY, 3000),                # $90 a quarter = $30
    (9000, Plan("month", 3), 3000),         # $90 every 3 months, the contract's other spelling
    (10000, Plan("month", 2), 5000),        # $100 every 2 months
    (700, WEEKLY, 3044),                    # $7 a week × 30.4375 / 7 = $30.4375 → $30.44
    (1400, Plan("week", 2), 3044),          # $14 a fortnight, the same
    (100, DAILY, 3044),                     # $1 a day × 30.4375
    (240000, Plan("year", 2), 10000),       # $2,400 every 2 years
])
def test_each_interval_is_normalised_to_one_month(amount, plan, expected):
    assert mrr_of(amount, plan) == expected


def test_duration_ratio_of_the_contract_examples():
    assert duration_ratio(ANNUAL) * 12 == 1
    assert duration_ratio(QUARTERLY) * 3 == 1
    assert round(duration_ratio(WEEKLY), 12) == Decimal("4.348214285714")  # 30.4375 / 7


def test_tax_is_taken_off_and_discounts_and_quantity_are_informational():
    assert mrr_of(12000, MONTHLY, tax_amount_in_cents=2000) == 10000
    assert mrr_of(10000, MONTHLY, quantity=5) == 10000
    discounted = LineItem(id="l", type="subscription", amount_in_cents=8000,
                          subscription_id="s", plan=MONTHLY, service_period_start=utc(2024, 1, 1))
    assert line_item_mrr(discounted) == 8000


def test_an_invoice_in_another_currency_uses_its_exchange_rate_with_one_rounding():
    item = line("l1", "s1", 10001, utc(2024, 1, 1), utc(2024, 2, 1))
    assert line_item_mrr(item, Decimal("1.1")) == 11001  # 11001.1, rounded once at the end


def test_one_time_and_trial_lines_add_no_mrr():
    assert line_item_mrr(one_time("o1", 5000)) == 0
    assert line_item_mrr(trial("t1", "s1", utc(2024, 1, 1), utc(2024, 1, 15))) == 0


def test_rounding_is_half_up():
    assert mrr_of(1, Plan("month", 2)) == 1      # 0.5 → 1
    assert mrr_of(3, Plan("month", 2)) == 2      # 1.5 → 2
    assert mrr_of(-3, Plan("month", 2)) == -2    # a credit rounds away from zero as well


def test_prorated_upgrade_in_a_30_day_month():
    # $250 plan, charged $125 for Apr 16 → May 1 (15 of April's 30 days): full MRR $250.
    item = line("l1", "s1", 12500, utc(2024, 4, 16), utc(2024, 5, 1), prorated=True)
    assert prorate_factor(item) == 2
    assert line_item_mrr(item) == 25000


def test_prorated_period_in_a_31_day_month_uses_31_days():
    # $10 for Jan 22 → Feb 1, 10 of January's 31 days: 1000 × 31 / 10 = 3100 (not 3000).
    item = line("l1", "s1", 1000, utc(2024, 1, 22), utc(2024, 2, 1), prorated=True)
    assert line_item_mrr(item) == 3100


def test_prorated_period_in_february():
    # $25 for Feb 15 → Mar 1 2023: 14 of 28 days → $50 a month.
    item = line("l1", "s1", 2500, utc(2023, 2, 15), utc(2023, 3, 1), prorated=True)
    assert line_item_mrr(item) == 5000


def test_prorated_annual_item():
    # Half a year of a $1,200 plan, charged $600 (Jul 1 2023 → Jan 1 2024, 184 of 365 days).
    item = line("l1", "s1", 60000, utc(2023, 7, 1), utc(2024, 1, 1), plan=ANNUAL, prorated=True)
    assert line_item_mrr(item) == 9918  # 60000 / 12 × 365 / 184 = 9918.48


def test_an_item_not_flagged_prorated_is_not_prorated_whatever_its_period():
    assert mrr_of(5000, MONTHLY, start=utc(2024, 1, 16), end=utc(2024, 2, 1)) == 5000


def test_calendar_months_clamp_the_day():
    assert months_before(utc(2024, 3, 31), 1) == utc(2024, 2, 29)
    assert months_before(utc(2023, 3, 31), 1) == utc(2023, 2, 28)
    assert months_before(utc(2024, 1, 15), 12) == utc(2023, 1, 15)


@pytest.mark.parametrize("item, field", [
    (LineItem(id="l", type="subscription", amount_in_cents=1, subscription_id="s"), "plan_uuid"),
    (line("l", "s", 1, utc(2024, 1, 1), utc(2024, 2, 1), plan=Plan("fortnight")),
     "interval_unit"),
    (line("l", "s", 1, utc(2024, 1, 1), utc(2024, 2, 1), plan=Plan("month", 0)),
     "interval_count"),
    (line("l", "s", 1, utc(2024, 2, 1), utc(2024, 2, 1), prorated=True), "service_period_end"),
])
def test_lines_that_cannot_be_normalised_name_the_field(item, field):
    with pytest.raises(ValidationFailed) as failure:
        line_item_mrr(item)
    assert failure.value.param == field
    assert failure.value.message.startswith(f"{field}: ")


def test_a_proration_in_year_1_measures_its_full_period_before_year_1():
    # The full month ending 0001-01-20 starts 0000-12-20 (1 BC on the proleptic Gregorian calendar,
    # which datetime cannot hold): 31 days, so $10 for 10 of them is $31 a month, as in any January.
    item = line("l1", "s1", 1000, utc(1, 1, 10), utc(1, 1, 20), prorated=True)
    assert line_item_mrr(item) == line_item_mrr(
        line("l1", "s1", 1000, utc(2001, 1, 10), utc(2001, 1, 20), prorated=True)) == 3100
    assert prorate_factor(line("l1", "s1", 1000, utc(1, 1, 1), utc(1, 2, 1), prorated=True)) == 1


def test_a_yearly_proration_in_year_1():
    # Full year 0000-06-20 → 0001-06-20: 365 days (year 0's Feb 29 is before it); 102 prorated days.
    item = line("l1", "s1", 1000, utc(1, 3, 10), utc(1, 6, 20), plan=ANNUAL, prorated=True)
    assert line_item_mrr(item) == 298  # 1000 / 12 × 365 / 102 = 298.20


def test_a_weekly_proration_in_year_1():
    # 3 of the week 0000-12-29 → 0001-01-05: 700 × 30.4375 / 7 × 7 / 3 = 7102.08
    item = line("l1", "s1", 700, utc(1, 1, 2), utc(1, 1, 5), plan=WEEKLY, prorated=True)
    assert line_item_mrr(item) == 7102

