"""Customer MRR over time and its movements: golden cases computed by hand (docs/mrr.md)."""
import pytest

from roster.errors import ValidationFailed
from services.billing_sync.invoices import Cancellation, LineItem
from services.billing_sync.movements import (
    CHURN, CONTRACTION, EXPANSION, NEW_BIZ, REACTIVATION, Cause, CustomerState, changes_of,
    movements, state_at,
)
from tests.unit.mrr_builders import ANNUAL, invoice, line, trial, utc


def replay(*invoices, cancellations=()):
    return movements(changes_of(invoices, cancellations))


def summary(result):
    """Return (date, type, delta, mrr_after) per movement, the shape the golden cases are written in."""
    return [(m.at.date().isoformat(), m.type, m.delta, m.mrr_after) for m in result.movements]


def monthly(sub, amount, year, month, line_id=None, **extra):
    end = utc(year + (month == 12), month % 12 + 1, 1)
    return line(line_id or f"{sub}-{year}-{month}", sub, amount, utc(year, month, 1), end, **extra)


def test_monthly_renewals_at_the_same_price_make_one_new_business_movement():
    result = replay(
        invoice("i1", utc(2024, 1, 1), monthly("s1", 5000, 2024, 1)),
        invoice("i2", utc(2024, 2, 1), monthly("s1", 5000, 2024, 2)),
        invoice("i3", utc(2024, 3, 1), monthly("s1", 5000, 2024, 3)),
    )
    assert summary(result) == [("2024-01-01", NEW_BIZ, 5000, 5000)]
    assert result.movements[0].causes == (Cause("s1", "line_item", "s1-2024-1", "ext-s1-2024-1"),)
    assert result.movements[0].arr_after == 60000
    assert result.state.mrr == 5000 and result.state.arr == 60000
    assert result.state.customer_since == utc(2024, 1, 1)


def test_annual_plan():
    result = replay(invoice("i1", utc(2024, 1, 1),
                            line("a1", "s1", 120000, utc(2024, 1, 1), utc(2025, 1, 1), plan=ANNUAL)))
    assert summary(result) == [("2024-01-01", NEW_BIZ, 10000, 10000)]


def test_a_period_that_ends_without_renewal_does_not_churn_by_itself():
    result = replay(invoice("i1", utc(2024, 1, 1), monthly("s1", 5000, 2024, 1)))
    assert state_at(changes_of([invoice("i1", utc(2024, 1, 1), monthly("s1", 5000, 2024, 1))]),
                    utc(2024, 12, 31)).mrr == 5000
    assert [m.type for m in result.movements] == [NEW_BIZ]


def test_non_prorated_plan_change_at_renewal_is_expansion():
    # ChartMogul's own example: $100 Bronze, then $250 Gold from Feb 1 → movement +$150.
    result = replay(invoice("i1", utc(2019, 1, 1), monthly("s1", 10000, 2019, 1)),
                    invoice("i2", utc(2019, 2, 1), monthly("s1", 25000, 2019, 2)))
    assert summary(result) == [("2019-01-01", NEW_BIZ, 10000, 10000),
                               ("2019-02-01", EXPANSION, 15000, 25000)]


def test_prorated_differential_upgrade_mid_period():
    # $100 Bronze renewed Jun 1; on Jun 16 upgraded to $250 Gold for the last 15 of June's 30
    # days: +$125 for Gold and a -$50 credit for unused Bronze, both prorated (differential).
    # Each line's MRR: 12500 × 30/15 = 25000 and -5000 × 30/15 = -10000; 10000 + 25000 - 10000.
    upgrade = invoice(
        "i2", utc(2019, 6, 16),
        line("gold", "s1", 12500, utc(2019, 6, 16), utc(2019, 7, 1), prorated=True),
        line("credit", "s1", -5000, utc(2019, 6, 16), utc(2019, 7, 1), prorated=True),
    )
    result = replay(invoice("i1", utc(2019, 6, 1), monthly("s1", 10000, 2019, 6)), upgrade,
                    invoice("i3", utc(2019, 7, 1), monthly("s1", 25000, 2019, 7)))
    assert summary(result) == [("2019-06-01", NEW_BIZ, 10000, 10000),
                               ("2019-06-16", EXPANSION, 15000, 25000)]
    assert [c.line_item_id for c in result.movements[1].causes] == ["gold", "credit"]


def test_prorated_full_upgrade_replaces_the_subscription_mrr():
    upgrade = invoice("i2", utc(2019, 6, 16),
                      line("gold", "s1", 12500, utc(2019, 6, 16), utc(2019, 7, 1), prorated=True,
                           proration_type="full"))
    result = replay(invoice("i1", utc(2019, 6, 1), monthly("s1", 10000, 2019, 6)), upgrade)
    assert summary(result)[-1] == ("2019-06-16", EXPANSION, 15000, 25000)


def test_differential_mrr_is_treated_as_differential():
    seat = invoice("i2", utc(2016, 3, 16),
                   line("seat", "s1", 2500, utc(2016, 3, 16), utc(2016, 4, 1), prorated=True,
                        proration_type="differential_mrr"))
    result = replay(invoice("i1", utc(2016, 3, 1), monthly("s1", 5000, 2016, 3)), seat)
    # $25 for Mar 16 → Apr 1 (16 of March's 31 days) = 2500 × 31/16 = 4843.75 → 4844 added.
    assert summary(result)[-1] == ("2016-03-16", EXPANSION, 4844, 9844)


def test_the_customer_lifecycle_second_subscription_cancel_one_cancel_last_come_back():
    result = replay(
        invoice("i1", utc(2024, 1, 1), monthly("s1", 5000, 2024, 1)),
        invoice("i2", utc(2024, 2, 15),
                line("s2-a", "s2", 3000, utc(2024, 2, 15), utc(2024, 3, 15))),
        invoice("i3", utc(2024, 4, 1),
                monthly("s1", 5000, 2024, 4, line_id="s1-last", cancelled_at=utc(2024, 4, 20))),
        invoice("i4", utc(2024, 7, 1), monthly("s3", 4000, 2024, 7)),
        cancellations=[Cancellation("s2", utc(2024, 3, 10))],
    )
    assert summary(result) == [
        ("2024-01-01", NEW_BIZ, 5000, 5000),
        ("2024-02-15", EXPANSION, 3000, 8000),       # a second subscription
        ("2024-03-10", CONTRACTION, -3000, 5000),    # one of two cancelled (through the API)
        ("2024-04-20", CHURN, -5000, 0),             # the last one cancelled on its line
        ("2024-07-01", REACTIVATION, 4000, 4000),    # paid before, churned, back
    ]
    assert result.movements[2].causes == (Cause("s2", "cancellation"),)
    assert result.movements[3].causes == (Cause("s1", "cancellation", "s1-last", "ext-s1-last"),)
    assert result.state.cancelled == frozenset({"s1", "s2"})
    assert result.state.customer_since == utc(2024, 1, 1)


def test_changes_at_the_same_instant_net_into_one_movement():
    switch_same = replay(
        invoice("i1", utc(2024, 1, 1), monthly("s1", 5000, 2024, 1)),
        invoice("i2", utc(2024, 2, 1), monthly("s2", 5000, 2024, 2)),
        cancellations=[Cancellation("s1", utc(2024, 2, 1))],
    )
    assert summary(switch_same) == [("2024-01-01", NEW_BIZ, 5000, 5000)]

    switch_up = replay(
        invoice("i1", utc(2024, 1, 1), monthly("s1", 5000, 2024, 1)),
        invoice("i2", utc(2024, 2, 1), monthly("s2", 7000, 2024, 2)),
        cancellations=[Cancellation("s1", utc(2024, 2, 1))],
    )
    assert summary(switch_up)[-1] == ("2024-02-01", EXPANSION, 2000, 7000)
    assert {c.subscription_id for c in switch_up.movements[-1].causes} == {"s1", "s2"}

    switch_down = replay(
        invoice("i1", utc(2024, 1, 1), monthly("s1", 5000, 2024, 1)),
        invoice("i2", utc(2024, 2, 1), monthly("s2", 1000, 2024, 2)),
        cancellations=[Cancellation("s1", utc(2024, 2, 1))],
    )
    assert summary(switch_down)[-1] == ("2024-02-01", CONTRACTION, -4000, 1000)


def test_a_renewal_at_the_same_price_is_not_a_cause_of_a_movement_at_the_same_instant():
    result = replay(
        invoice("i1", utc(2024, 1, 1), monthly("s1", 5000, 2024, 1)),
        invoice("i2", utc(2024, 2, 1), monthly("s1", 5000, 2024, 2), monthly("s2", 1000, 2024, 2)),
    )
    assert [c.line_item_id for c in result.movements[-1].causes] == ["s2-2024-2"]


def test_trial_then_paid_is_new_business_at_the_first_paid_period():
    result = replay(invoice("i1", utc(2024, 1, 1), trial("t1", "s1", utc(2024, 1, 1), utc(2024, 1, 15))),
                    invoice("i2", utc(2024, 1, 15),
                            line("p1", "s1", 5000, utc(2024, 1, 15), utc(2024, 2, 15))))
    assert summary(result) == [("2024-01-15", NEW_BIZ, 5000, 5000)]
    assert result.state.customer_since == utc(2024, 1, 15)


def test_a_trial_alone_leaves_the_customer_a_lead():
    result = replay(invoice("i1", utc(2024, 1, 1), trial("t1", "s1", utc(2024, 1, 1), utc(2024, 1, 15))))
    assert result.movements == () and result.state.customer_since is None
    assert result.state.subscription_mrr == {"s1": 0}


def test_a_free_renewal_after_paying_is_churn():
    result = replay(invoice("i1", utc(2024, 1, 1), monthly("s1", 5000, 2024, 1)),
                    invoice("i2", utc(2024, 2, 1), monthly("s1", 0, 2024, 2)))
    assert summary(result)[-1] == ("2024-02-01", CHURN, -5000, 0)


def test_several_lines_of_one_subscription_at_one_instant_add_up():
    result = replay(invoice("i1", utc(2024, 1, 1), monthly("s1", 5000, 2024, 1, line_id="base"),
                            monthly("s1", 2000, 2024, 1, line_id="addon")))
    assert summary(result) == [("2024-01-01", NEW_BIZ, 7000, 7000)]


def test_event_order_decides_whether_a_difference_comes_before_a_replacement():
    start, end = utc(2024, 2, 1), utc(2024, 3, 1)
    first = invoice("i1", utc(2024, 1, 1), monthly("s1", 5000, 2024, 1))
    renewal_then_difference = replay(first, invoice(
        "i2", start, line("r", "s1", 6000, start, end, event_order=1),
        line("d", "s1", 2900, start, end, prorated=True, event_order=2)))
    difference_then_renewal = replay(first, invoice(
        "i2", start, line("r", "s1", 6000, start, end, event_order=2),
        line("d", "s1", 2900, start, end, prorated=True, event_order=1)))
    assert renewal_then_difference.state.mrr == 8900   # 6000 + 2900
    assert difference_then_renewal.state.mrr == 6000   # the renewal replaces what came before


def test_a_cancellation_at_the_instant_of_a_renewal_wins():
    result = replay(invoice("i1", utc(2024, 1, 1), monthly("s1", 5000, 2024, 1)),
                    invoice("i2", utc(2024, 2, 1), monthly("s1", 5000, 2024, 2)),
                    cancellations=[Cancellation("s1", utc(2024, 2, 1))])
    assert summary(result)[-1] == ("2024-02-01", CHURN, -5000, 0)


def test_a_line_after_a_cancellation_restarts_the_subscription():
    result = replay(invoice("i1", utc(2024, 1, 1), monthly("s1", 5000, 2024, 1)),
                    invoice("i2", utc(2024, 3, 1), monthly("s1", 5000, 2024, 3)),
                    cancellations=[Cancellation("s1", utc(2024, 1, 20))])
    assert [m.type for m in result.movements] == [NEW_BIZ, CHURN, REACTIVATION]
    assert result.state.cancelled == frozenset()


def test_a_credit_larger_than_the_subscription_floors_it_at_zero():
    result = replay(invoice("i1", utc(2024, 1, 1), monthly("s1", 5000, 2024, 1)),
                    invoice("i2", utc(2024, 1, 16),
                            line("c", "s1", -9000, utc(2024, 1, 16), utc(2024, 2, 1), prorated=True)))
    assert summary(result)[-1] == ("2024-01-16", CHURN, -5000, 0)


def test_state_survives_a_round_trip_through_json_data():
    result = replay(invoice("i1", utc(2024, 1, 1), monthly("s1", 5000, 2024, 1)),
                    cancellations=[Cancellation("s1", utc(2024, 1, 20))])
    assert CustomerState.from_dict(result.state.to_dict()) == result.state


def test_a_subscription_line_without_subscription_or_start_names_the_field():
    with pytest.raises(ValidationFailed, match="subscription_external_id"):
        changes_of([invoice("i", utc(2024, 1, 1), LineItem(id="l", type="subscription",
                                                           amount_in_cents=1))])
    with pytest.raises(ValidationFailed, match="service_period_start"):
        changes_of([invoice("i", utc(2024, 1, 1), LineItem(id="l", type="trial", amount_in_cents=0,
                                                           subscription_id="s"))])
