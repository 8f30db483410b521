"""Net payments, Past Due, customer status, customer_since and the Subscriptions tab."""
from decimal import Decimal

import pytest

from services.billing_sync.invoices import Cancellation
from services.billing_sync.movements import changes_of, state_at
from services.billing_sync.payments import is_past_due, net_payments, transaction_refusals
from services.billing_sync.status import (
    ACTIVE, CANCELLED, PAST_DUE, customer_status, subscription_summaries,
)
from tests.unit.mrr_builders import ANNUAL, invoice, line, paid, trial, utc

JAN, FEB = utc(2024, 1, 1), utc(2024, 2, 1)


def jan_invoice(transactions=(), due_date=None, invoice_id="i1", sub="s1", amount=5000):
    return invoice(invoice_id, JAN, line(f"{invoice_id}-l", sub, amount, JAN, FEB),
                   transactions=transactions, due_date=due_date)


def status(invoices, at, cancellations=(), lead_status="New Lead"):
    state = state_at(changes_of(invoices, cancellations), at)
    return customer_status(state=state, invoices=invoices, at=at, lead_status=lead_status)


def test_net_payments_are_successful_payments_minus_successful_refunds():
    invoices = [
        jan_invoice([paid("t1", JAN, 5000), paid("t2", utc(2024, 1, 2), 5000, result="failed"),
                     paid("t3", utc(2024, 1, 10), 2000, kind="refund"),
                     paid("t4", utc(2024, 1, 11), 1000, kind="refund", result="failed")]),
    ]
    assert net_payments(invoices) == 3000
    assert net_payments(invoices, at=utc(2024, 1, 5)) == 5000  # the refund came later


def test_a_transaction_moves_at_most_the_invoice_total_and_refunds_return_at_most_that():
    assert transaction_refusals(5000, [paid("t1", JAN), paid("t2", FEB, 2000, kind="refund")]) == {}
    assert transaction_refusals(5000, [paid("t1", JAN, 5001)]) == {0: "must not be more than the invoice's total (5000)"}
    assert list(transaction_refusals(5000, [paid("t1", JAN, 10**12, kind="refund")])) == [0]
    # two refunds dated in order: the second goes past the total; a failed one does not count
    refunds = [paid("r2", utc(2024, 1, 20), 3000, kind="refund"), paid("r0", utc(2024, 1, 5), 4000, kind="refund",
                                                                       result="failed"),
               paid("r1", utc(2024, 1, 10), 3000, kind="refund")]
    refused = transaction_refusals(5000, refunds)
    assert list(refused) == [0] and "only 2000 of the invoice's total (5000) is left" in refused[0]
    # a refund without an amount is of the whole total: after a partial one, too much
    assert list(transaction_refusals(5000, [paid("r1", JAN, 1, kind="refund"), paid("r2", FEB, kind="refund")])) == [1]
    # payments are not capped in total (a customer can be charged twice); a credit note's size bounds it
    assert transaction_refusals(5000, [paid("t1", JAN), paid("t2", FEB)]) == {}
    assert transaction_refusals(-2000, [paid("r", JAN, 2000, kind="refund")]) == {}
    assert list(transaction_refusals(0, [paid("t", JAN, 1)])) == [0]


def test_a_payment_without_amount_pays_the_invoice_total_in_account_currency():
    eur = invoice("i1", JAN, line("l", "s1", 10000, JAN, FEB), transactions=[paid("t", JAN)],
                  exchange_rate=Decimal("1.1"))
    assert net_payments([eur]) == 11000


def test_a_paid_subscriber_is_active():
    assert status([jan_invoice([paid("t1", JAN)])], utc(2024, 1, 5)) == ACTIVE


def test_a_failed_payment_makes_the_customer_past_due_until_a_successful_one():
    failed = paid("t1", utc(2024, 1, 2), result="failed")
    assert status([jan_invoice([failed])], utc(2024, 1, 1, 12)) == ACTIVE   # not failed yet
    assert status([jan_invoice([failed])], utc(2024, 1, 5)) == PAST_DUE
    retried = jan_invoice([failed, paid("t2", utc(2024, 1, 6))])
    assert status([retried], utc(2024, 1, 5)) == PAST_DUE
    assert status([retried], utc(2024, 1, 7)) == ACTIVE


def test_an_unpaid_invoice_is_past_due_only_after_its_due_date():
    unpaid = jan_invoice(due_date=utc(2024, 1, 15))
    assert status([unpaid], utc(2024, 1, 10)) == ACTIVE
    assert status([unpaid], utc(2024, 1, 16)) == PAST_DUE
    assert not is_past_due(jan_invoice(), utc(2030, 1, 1))  # no due date, no failed payment


def test_a_free_invoice_is_never_past_due():
    assert not is_past_due(jan_invoice(due_date=JAN, amount=0), utc(2024, 3, 1))


def test_an_unpaid_invoice_of_a_cancelled_subscription_does_not_make_the_customer_past_due():
    invoices = [jan_invoice(due_date=utc(2024, 1, 10), sub="old", invoice_id="i1"),
                jan_invoice([paid("t", JAN)], sub="new", invoice_id="i2")]
    at = utc(2024, 1, 20)
    assert status(invoices, at, [Cancellation("old", utc(2024, 1, 5))]) == ACTIVE
    assert status(invoices, at) == PAST_DUE


def test_a_customer_who_paid_and_churned_is_cancelled():
    assert status([jan_invoice([paid("t", JAN)])], utc(2024, 2, 1),
                  [Cancellation("s1", utc(2024, 1, 20))]) == CANCELLED


def test_a_customer_who_never_paid_keeps_the_lead_status():
    trial_only = [invoice("i1", JAN, trial("t1", "s1", JAN, utc(2024, 1, 15)))]
    assert status(trial_only, utc(2024, 1, 5), lead_status="Working Lead") == "Working Lead"
    assert status(trial_only, utc(2024, 2, 5), [Cancellation("s1", utc(2024, 1, 10))],
                  lead_status="Qualified Lead") == "Qualified Lead"
    assert status([], JAN) == "New Lead"


def test_customer_since_is_the_start_of_the_first_paid_period():
    invoices = [invoice("i1", JAN, trial("t1", "s1", JAN, utc(2024, 1, 15))),
                invoice("i2", utc(2024, 1, 15), line("l", "s1", 5000, utc(2024, 1, 15), utc(2024, 2, 15)))]
    assert state_at(changes_of(invoices), utc(2024, 1, 10)).customer_since is None
    assert state_at(changes_of(invoices), utc(2024, 3, 1)).customer_since == utc(2024, 1, 15)


def test_status_refuses_a_state_from_after_the_time_asked():
    later = state_at(changes_of([jan_invoice()]), utc(2024, 3, 1))
    with pytest.raises(ValueError):
        customer_status(state=later, invoices=[], at=utc(2023, 12, 1), lead_status="New Lead")


def test_subscription_summaries():
    invoices = [
        invoice("i1", JAN, line("a1", "annual", 120000, JAN, utc(2025, 1, 1), plan=ANNUAL)),
        invoice("i2", JAN, line("m1", "monthly", 5000, JAN, FEB, quantity=3),
                due_date=utc(2024, 1, 10)),
        invoice("i3", FEB, line("m2", "monthly", 5000, FEB, utc(2024, 3, 1), quantity=3,
                                cancelled_at=utc(2024, 2, 20))),
    ]
    at = utc(2024, 1, 15)
    rows = subscription_summaries(state=state_at(changes_of(invoices), at), invoices=invoices, at=at)
    assert [(r.subscription_id, r.status, r.mrr, r.arr, r.quantity) for r in rows] == [
        ("annual", "active", 10000, 120000, 1), ("monthly", "past_due", 5000, 60000, 3)]
    assert rows[0].start_date == JAN and rows[0].end_date == utc(2025, 1, 1)

    later = utc(2024, 3, 1)
    rows = subscription_summaries(state=state_at(changes_of(invoices), later), invoices=invoices,
                                  at=later)
    monthly = rows[1]
    assert (monthly.status, monthly.mrr) == ("cancelled", 0)
    assert monthly.cancelled_at == monthly.end_date == utc(2024, 2, 20)
