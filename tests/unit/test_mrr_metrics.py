"""Metric series from daily totals: intervals, the MRR identity, percentages, summary, shapes."""
from datetime import date

import pytest

from roster.errors import ValidationFailed
from services.billing_sync.invoices import Cancellation
from services.billing_sync.metrics import (
    MetricDay, arr_series, customer_count_series, day_changes, day_totals, intervals,
    mrr_series, percentage_change,
)
from services.billing_sync.movements import changes_of, movements
from tests.unit.mrr_builders import invoice, line, utc


def monthly(sub, amount, start, line_id):
    return line(line_id, sub, amount, start, utc(start.year + (start.month == 12),
                                                 start.month % 12 + 1, start.day))


def account_movements():
    """Two customers. A: new $50 Jan 10, +$30 second sub Feb 15, cancels it Mar 10 (−$30).
    B: new $100 Jan 20, churns Feb 5, back with $40 on Mar 20."""
    a = movements(changes_of(
        [invoice("a1", utc(2024, 1, 10), monthly("a-s1", 5000, utc(2024, 1, 10), "a1")),
         invoice("a2", utc(2024, 2, 15), monthly("a-s2", 3000, utc(2024, 2, 15), "a2"))],
        [Cancellation("a-s2", utc(2024, 3, 10))]))
    b = movements(changes_of(
        [invoice("b1", utc(2024, 1, 20), monthly("b-s1", 10000, utc(2024, 1, 20), "b1")),
         invoice("b2", utc(2024, 3, 20), monthly("b-s2", 4000, utc(2024, 3, 20), "b2"))],
        [Cancellation("b-s1", utc(2024, 2, 5))]))
    return list(a.movements) + list(b.movements)


def test_intervals_are_clipped_to_the_range():
    assert intervals(date(2024, 1, 15), date(2024, 3, 10), "month") == [
        (date(2024, 1, 15), date(2024, 1, 31)), (date(2024, 2, 1), date(2024, 2, 29)),
        (date(2024, 3, 1), date(2024, 3, 10))]
    assert intervals(date(2024, 2, 1), date(2024, 8, 15), "quarter") == [
        (date(2024, 2, 1), date(2024, 3, 31)), (date(2024, 4, 1), date(2024, 6, 30)),
        (date(2024, 7, 1), date(2024, 8, 15))]
    assert intervals(date(2024, 1, 30), date(2024, 2, 1), "day") == [
        (date(2024, 1, 30),) * 2, (date(2024, 1, 31),) * 2, (date(2024, 2, 1),) * 2]


def test_weeks_end_on_saturday_as_in_the_client_fixture():
    # chartmogul-python's fixture: start 2015-01-01, interval week → entries 2015-01-03, 2015-01-10.
    assert [last for _, last in intervals(date(2015, 1, 1), date(2015, 1, 10), "week")] == [
        date(2015, 1, 3), date(2015, 1, 10)]
    monday_weeks = intervals(date(2015, 1, 1), date(2015, 1, 10), "week", week_start=0)
    assert [last for _, last in monday_weeks] == [date(2015, 1, 4), date(2015, 1, 10)]


def test_day_totals_sum_movements_per_day_and_count_customers():
    rows = {row.day: row for row in day_totals(account_movements())}
    assert rows[date(2024, 1, 10)] == MetricDay(date(2024, 1, 10), new_business=5000, customers=1)
    assert rows[date(2024, 2, 5)] == MetricDay(date(2024, 2, 5), churn=-10000, customers=-1)
    assert rows[date(2024, 3, 10)] == MetricDay(date(2024, 3, 10), contraction=-3000)
    assert rows[date(2024, 3, 20)] == MetricDay(date(2024, 3, 20), reactivation=4000, customers=1)


def test_mrr_series_by_month():
    series = mrr_series(day_totals(account_movements()), start=date(2024, 1, 1),
                        end=date(2024, 3, 31), interval="month")
    assert series.to_dict() == {
        "entries": [
            {"date": "2024-01-31", "mrr": 15000, "mrr-new-business": 15000, "mrr-expansion": 0,
             "mrr-contraction": 0, "mrr-churn": 0, "mrr-reactivation": 0, "percentage-change": 0.0},
            {"date": "2024-02-29", "mrr": 8000, "mrr-new-business": 0, "mrr-expansion": 3000,
             "mrr-contraction": 0, "mrr-churn": -10000, "mrr-reactivation": 0,
             "percentage-change": -46.67},
            {"date": "2024-03-31", "mrr": 9000, "mrr-new-business": 0, "mrr-expansion": 0,
             "mrr-contraction": -3000, "mrr-churn": 0, "mrr-reactivation": 4000,
             "percentage-change": 12.5},
        ],
        "summary": {"current": 9000, "previous": 8000, "percentage-change": 12.5},
    }


@pytest.mark.parametrize("interval", ["day", "week", "month", "quarter"])
def test_each_entry_is_the_previous_plus_its_movements(interval):
    series = mrr_series(day_totals(account_movements()), start=date(2024, 1, 5),
                        end=date(2024, 4, 2), interval=interval)
    previous = 0
    for entry in series.entries:
        assert entry.mrr == (previous + entry.new_business + entry.expansion
                             + entry.reactivation + entry.contraction + entry.churn)
        previous = entry.mrr
    assert previous == 9000


def test_days_before_the_start_make_the_opening_balance():
    rows = day_totals(account_movements())
    from_all_rows = mrr_series(rows, start=date(2024, 2, 1), end=date(2024, 3, 31), interval="month")
    from_opening = mrr_series([r for r in rows if r.day >= date(2024, 2, 1)], start=date(2024, 2, 1),
                              end=date(2024, 3, 31), interval="month", opening_mrr=15000)
    assert from_all_rows == from_opening
    assert from_all_rows.entries[0].percentage_change == -46.67  # against the opening 15000


def test_arr_and_customer_count_series():
    rows = day_totals(account_movements())
    arr = arr_series(rows, start=date(2024, 1, 1), end=date(2024, 3, 31), interval="month")
    assert [e.to_dict() for e in arr.entries] == [
        {"date": "2024-01-31", "arr": 180000, "percentage-change": 0.0},
        {"date": "2024-02-29", "arr": 96000, "percentage-change": -46.67},
        {"date": "2024-03-31", "arr": 108000, "percentage-change": 12.5}]
    customers = customer_count_series(rows, start=date(2024, 1, 1), end=date(2024, 3, 31),
                                      interval="month")
    assert customers.to_dict() == {
        "entries": [{"date": "2024-01-31", "customers": 2, "percentage-change": 0.0},
                    {"date": "2024-02-29", "customers": 1, "percentage-change": -50.0},
                    {"date": "2024-03-31", "customers": 2, "percentage-change": 100.0}],
        "summary": {"current": 2, "previous": 1, "percentage-change": 100.0}}


def test_a_single_entry_summary_compares_with_the_opening_value():
    series = mrr_series([MetricDay(date(2024, 1, 3), expansion=500)], start=date(2024, 1, 1),
                        end=date(2024, 1, 31), interval="month", opening_mrr=1000)
    assert series.summary.to_dict() == {"current": 1500, "previous": 1000, "percentage-change": 50.0}


def test_day_changes_turn_a_recompute_into_row_deltas():
    old = account_movements()
    new = [m for m in old if m.at.date() != date(2024, 3, 10)]  # the cancellation was undone
    assert day_changes(old, new) == [MetricDay(date(2024, 3, 10), contraction=3000)]
    assert day_changes(old, old) == []


def test_percentage_change_rounds_to_two_decimals_and_is_zero_from_zero():
    assert percentage_change(3, 4) == 33.33
    assert percentage_change(3, 2) == -33.33
    assert percentage_change(379, 382) == 0.79
    assert percentage_change(0, 500) == 0.0


def test_bad_ranges_name_the_parameter():
    with pytest.raises(ValidationFailed) as failure:
        mrr_series([], start=date(2024, 2, 1), end=date(2024, 1, 1), interval="month")
    assert failure.value.param == "end-date"
    with pytest.raises(ValidationFailed) as failure:
        mrr_series([], start=date(2024, 1, 1), end=date(2024, 2, 1), interval="year")
    assert failure.value.param == "interval"


@pytest.mark.parametrize("interval, lasts", [
    ("day", [date(9999, 12, d) for d in range(1, 32)]),
    ("week", [date(9999, 12, d) for d in (4, 11, 18, 25, 31)]),  # Sunday weeks; the last would end 10000-01-01
    ("month", [date(9999, 12, 31)]),
    ("quarter", [date(9999, 12, 31)]),
])
def test_intervals_in_december_9999_end_on_the_last_representable_day(interval, lasts):
    spans = intervals(date(9999, 12, 1), date(9999, 12, 31), interval)
    assert [last for _, last in spans] == lasts
    assert spans[0][0] == date(9999, 12, 1)
    assert all(first <= last for first, last in spans)


def test_the_last_interval_of_the_calendar_holds_its_last_day():
    for interval in ("day", "week", "month", "quarter"):
        assert intervals(date(9999, 12, 31), date(9999, 12, 31), interval) == [(date(9999, 12, 31),) * 2]
    monday_weeks = intervals(date(9999, 12, 20), date(9999, 12, 31), "week", week_start=0)
    assert monday_weeks == [(date(9999, 12, 20), date(9999, 12, 26)),
                            (date(9999, 12, 27), date(9999, 12, 31))]


def test_series_reaching_december_9999():
    rows = [MetricDay(date(9999, 11, 30), new_business=1000, customers=1),
            MetricDay(date(9999, 12, 31), expansion=500)]
    mrr = mrr_series(rows, start=date(9999, 1, 1), end=date(9999, 12, 31), interval="month")
    assert len(mrr.entries) == 12
    assert [(e.date, e.mrr) for e in mrr.entries[-2:]] == [(date(9999, 11, 30), 1000),
                                                           (date(9999, 12, 31), 1500)]
    arr = arr_series(rows, start=date(9999, 12, 31), end=date(9999, 12, 31), interval="month")
    assert arr.to_dict()["entries"] == [{"date": "9999-12-31", "arr": 18000, "percentage-change": 50.0}]
    count = customer_count_series(rows, start=date(9999, 12, 1), end=date(9999, 12, 31),
                                  interval="quarter")
    assert count.to_dict()["entries"] == [{"date": "9999-12-31", "customers": 1,
                                           "percentage-change": 0.0}]
