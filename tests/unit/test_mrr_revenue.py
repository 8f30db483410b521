"""Revenue recognition schedule: recognised by day over the service period, deferred at month end."""
from datetime import date, datetime, timezone
from decimal import Decimal

from services.billing_sync.months import month_range
from services.billing_sync.revenue import ScheduleMonth, revenue_schedule
from tests.unit.mrr_builders import ANNUAL, QUARTERLY, invoice, line, one_time, utc


def rows(schedule):
    return [(m.month.isoformat()[:7], m.recognized, m.deferred) for m in schedule]


def test_a_quarter_billed_in_advance_with_a_one_time_charge():
    # $90 for Jan 1 → Apr 1 2023 (31 + 28 + 31 = 90 days) invoiced Jan 1; $20 one-time on Feb 10.
    schedule = revenue_schedule([
        invoice("i1", utc(2023, 1, 1),
                line("q", "s1", 9000, utc(2023, 1, 1), utc(2023, 4, 1), plan=QUARTERLY)),
        invoice("i2", utc(2023, 2, 10), one_time("setup", 2000)),
    ])
    assert rows(schedule) == [("2023-01", 3100, 5900), ("2023-02", 4800, 3100),
                              ("2023-03", 3100, 0)]
    assert schedule[0] == ScheduleMonth(date(2023, 1, 1), 3100, 5900)


def test_tax_is_not_revenue():
    schedule = revenue_schedule([invoice("i1", utc(2023, 1, 1), one_time("o", 1200,
                                                                         tax_amount_in_cents=200))])
    assert rows(schedule) == [("2023-01", 1000, 0)]


def test_an_annual_plan_adds_up_to_the_cent_and_defers_the_rest():
    # $1,000 from Jan 15 2024 to Jan 15 2025: 366 days, 17 of them in January 2024.
    schedule = revenue_schedule([invoice("i1", utc(2024, 1, 15),
                                         line("a", "s1", 100000, utc(2024, 1, 15),
                                              utc(2025, 1, 15), plan=ANNUAL))])
    assert len(schedule) == 13
    assert sum(m.recognized for m in schedule) == 100000
    # Largest remainder by hand: 100000 × days mod 366 is 346 for 31-day months, 296 for Jan's 17
    # days, 264 for 30-day months, 182 for Feb, 50 for Jan 2025's 14. They add up to 3660, so 10
    # spare cents: six 31-day months, January, then April, June and September get one each.
    assert (schedule[0].recognized, schedule[0].deferred) == (4645, 95355)  # 4644.8 + 1 spare
    assert schedule[1].recognized == 7923     # Feb: 100000 × 29/366 = 7923.5, no spare cent
    assert schedule[3].recognized == 8197     # Apr: 8196.72 → 8196 + 1 spare
    assert schedule[10].recognized == 8196    # Nov: 8196.72 → 8196, no spare left
    assert [m.deferred for m in schedule][-1] == 0
    deferred = [m.deferred for m in schedule]
    assert deferred == sorted(deferred, reverse=True)  # only ever released


def test_a_line_billed_in_arrears_is_recognised_but_never_deferred():
    schedule = revenue_schedule([invoice("i1", utc(2023, 3, 5),
                                         line("m", "s1", 3100, utc(2023, 1, 1), utc(2023, 2, 1)))])
    assert rows(schedule) == [("2023-01", 3100, 0), ("2023-02", 0, 0), ("2023-03", 0, 0)]


def test_amounts_are_converted_at_the_invoice_rate():
    schedule = revenue_schedule([invoice("i1", utc(2023, 1, 1), one_time("o", 1000),
                                         exchange_rate=Decimal("1.5"))])
    assert rows(schedule) == [("2023-01", 1500, 0)]


def test_a_refund_credit_line_lowers_revenue():
    schedule = revenue_schedule([
        invoice("i1", utc(2023, 1, 1), line("m", "s1", 3100, utc(2023, 1, 1), utc(2023, 2, 1))),
        invoice("i2", utc(2023, 1, 20), one_time("credit", -1000)),
    ])
    assert rows(schedule) == [("2023-01", 2100, 0)]


def test_no_invoices_no_schedule():
    assert revenue_schedule([]) == []


def test_a_one_time_charge_on_the_last_second_of_9999():
    schedule = revenue_schedule([invoice("i1", datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc),
                                         one_time("o", 1000))])
    assert rows(schedule) == [("9999-12", 1000, 0)]


def test_a_service_period_in_december_9999():
    end = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
    schedule = revenue_schedule([invoice("i1", utc(9999, 12, 1),
                                         line("m", "s1", 3000, utc(9999, 12, 1), end))])
    assert rows(schedule) == [("9999-12", 3000, 0)]  # 30 days, Dec 1 up to (not including) Dec 31


def test_a_schedule_over_the_whole_calendar():
    # 0001-01-01 → 9999-12-31 is 3652058 days: 100 cents a day.
    schedule = revenue_schedule([invoice("i1", utc(1, 1, 1),
                                         line("m", "s1", 365205800, utc(1, 1, 1), utc(9999, 12, 31)))])
    assert len(schedule) == 9999 * 12
    assert rows(schedule[:2]) == [("0001-01", 3100, 365205800 - 3100),
                                  ("0001-02", 2800, 365205800 - 5900)]
    assert rows(schedule[-2:]) == [("9999-11", 3000, 3000), ("9999-12", 3000, 0)]
    assert sum(m.recognized for m in schedule) == 365205800


def test_month_range_reaches_december_9999():
    assert month_range(date(9999, 11, 15), date(9999, 12, 31)) == [date(9999, 11, 1), date(9999, 12, 1)]
    assert month_range(date(1, 1, 1), date(1, 1, 1)) == [date(1, 1, 1)]
