"""Import bodies checked field by field, and the small billing rules around the MRR engine."""
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from roster.errors import ValidationFailed
from services.billing_sync import domain, validation
from services.billing_sync.invoices import Invoice, LineItem, Transaction
from services.billing_sync.movements import Cause


def utc(*parts):
    return datetime(*parts, tzinfo=timezone.utc)


def line(**fields):
    return {"type": "subscription", "subscription_external_id": "s1", "plan_uuid": "pl_1", "amount_in_cents": 5000,
            "service_period_start": "2024-01-01", "service_period_end": "2024-02-01", **fields}


def body(**fields):
    return {"external_id": "i1", "date": "2024-01-01 10:00:00", "currency": "eur", "line_items": [line()],
            **fields}


def test_a_good_invoice_comes_back_typed():
    invoice, problems = validation.clean_invoice(body(
        due_date="2024-01-15T00:00:00-05:00",
        transactions=[{"type": "payment", "result": "successful", "date": "2024-01-02", "amount_in_cents": 10}]))

    assert problems == {}
    assert invoice["currency"] == "EUR" and invoice["date"] == utc(2024, 1, 1, 10)
    assert invoice["due_date"] == utc(2024, 1, 15, 5)
    item = invoice["line_items"][0]
    assert (item["quantity"], item["tax_amount_in_cents"], item["prorated"], item["proration_type"]) == \
        (1, 0, False, "differential")
    assert invoice["transactions"][0]["amount_in_cents"] == 10


def test_every_problem_of_an_invoice_is_named_by_its_field():
    _, problems = validation.clean_invoice({
        "external_id": 12, "date": "yesterday", "currency": "XYZ", "collection_method": "cash",
        "line_items": [line(amount_in_cents=1.5, quantity=-1, prorated="yes", proration_type="half"),
                       {"type": "one_time", "amount_in_cents": True},
                       line(type="trial", service_period_end="2023-12-01", plan_uuid=None)],
        "transactions": [{"type": "gift", "result": "successful"}]})

    assert problems == {
        "external_id": ["must be a string"],
        "date": ["'yesterday' is not an ISO-8601 date or date-time"],
        "currency": ["must be an ISO-4217 currency code such as USD"],
        "collection_method": ["must be one of automatic, manual"],
        "line_items[0].amount_in_cents": ["must be a whole number of cents"],
        "line_items[0].quantity": ["must be between 0 and 4611686018427387904"],
        "line_items[0].prorated": ["must be true or false"],
        "line_items[0].proration_type": ["must be one of differential, full, differential_mrr"],
        "line_items[1].amount_in_cents": ["must be a whole number of cents"],
        "line_items[2].plan_uuid": ["is required"],
        "line_items[2].service_period_end": ["must be after service_period_start"],
        "transactions[0].type": ["must be one of payment, refund"],
        "transactions[0].date": ["is required"],
    }


def test_lines_and_transactions_are_required_in_their_shape():
    assert validation.clean_invoice(body(line_items=[]))[1] == {"line_items": ["must hold at least one item"]}
    assert validation.clean_invoice(body(line_items="x"))[1] == {"line_items": ["must be a list of objects"]}
    assert validation.clean_invoice("x")[1] == {"invoice": ["must be an object"]}
    twice = validation.clean_invoice(body(line_items=[line(external_id="a"), line(external_id="a")]))[1]
    assert twice == {"line_items[1].external_id": ["is used twice in this invoice"]}
    huge = validation.clean_invoice(body(line_items=[line(amount_in_cents=10**16)]))[1]
    assert list(huge) == ["line_items[0].amount_in_cents"]


@pytest.mark.parametrize("amount, tax, ok", [
    (1000, 0, True), (1000, 1000, True), (1000, 250, True), (0, 0, True), (-1000, -200, True), (-1000, 0, True),
    (1000, -5000, False), (1000, -1, False), (1000, 5000, False), (0, 1, False), (-1000, 200, False),
    (-1000, -1001, False),
])
def test_the_tax_lies_between_0_and_the_amount_that_includes_it(amount, tax, ok):
    _, problems = validation.clean_invoice(body(line_items=[line(amount_in_cents=amount, tax_amount_in_cents=tax)]))
    assert (problems == {}) is ok
    if not ok:
        assert list(problems) == ["line_items[0].tax_amount_in_cents"]
        assert f"between 0 and amount_in_cents ({amount})" in problems["line_items[0].tax_amount_in_cents"][0]


def test_fees_are_never_negative():
    _, problems = validation.clean_invoice(body(
        line_items=[line(transaction_fees_in_cents=-5)],
        transactions=[{"type": "payment", "result": "successful", "date": "2024-01-02",
                       "transaction_fees_in_cents": -5}]))
    assert set(problems) == {"line_items[0].transaction_fees_in_cents", "transactions[0].transaction_fees_in_cents"}
    with pytest.raises(ValidationFailed) as bad:
        validation.clean_transaction({"type": "payment", "result": "successful", "date": "2024-01-01",
                                      "transaction_fees_in_cents": -1})
    assert bad.value.param == "transaction_fees_in_cents"


def test_import_batches_keep_the_order_within_both_limits():
    def invoice(lines):
        return {"line_items": [{}] * lines}

    invoices = [invoice(3), invoice(3), invoice(5), invoice(1), "not an invoice", invoice(6)]
    batches = validation.import_batches(invoices, max_invoices=2, max_lines=6)
    assert batches == [[invoices[0], invoices[1]], [invoices[2], invoices[3]], [invoices[4], invoices[5]]]
    assert validation.import_batches([invoice(9)], max_lines=6) == [[invoice(9)]]  # too big alone: refused later
    assert validation.import_batches([]) == []


def test_a_transaction_alone_raises_its_first_problem():
    with pytest.raises(ValidationFailed) as bad:
        validation.clean_transaction({"type": "refund", "result": "failed", "date": "2024-01-01",
                                      "amount_in_cents": -5})
    assert bad.value.param == "amount_in_cents"
    assert validation.clean_transaction({"type": "refund", "result": "failed", "date": "2024-01-01"})["type"] == \
        "refund"


def test_plans_need_a_known_interval():
    assert validation.clean_plan({"data_source_uuid": "ds", "name": " Gold ", "interval_count": 3,
                                  "interval_unit": "month"}, creating=True)["name"] == "Gold"
    for bad, param in (({"interval_unit": "fortnight"}, "interval_unit"), ({"interval_count": 0}, "interval_count"),
                       ({"interval_count": "3"}, "interval_count"), ({"name": ""}, "name")):
        with pytest.raises(ValidationFailed) as refused:
            validation.clean_plan({"data_source_uuid": "ds", "name": "G", "interval_count": 1,
                                   "interval_unit": "month", **bad}, creating=True)
        assert refused.value.param == param
    assert validation.clean_plan({"name": "New"}, creating=False) == {"name": "New"}


def test_cancellations_add_one_date_or_replace_them_all():
    assert validation.clean_cancellation({"cancelled_at": "2024-01-15T00:00:00"}) == ("add", [utc(2024, 1, 15)])
    assert validation.clean_cancellation({"cancellation_dates": ["2024-02-01", "2024-01-01", "2024-01-01"]}) == \
        ("replace", [utc(2024, 1, 1), utc(2024, 2, 1)])
    assert validation.clean_cancellation({"cancellation_dates": []}) == ("replace", [])
    with pytest.raises(ValidationFailed) as neither:
        validation.clean_cancellation({})
    assert neither.value.param == "cancelled_at"


def test_exchange_rates_are_positive_decimals_on_distinct_days():
    code, rates = validation.clean_rates("gbp", [{"date": "2024-02-01", "rate": "1.27"},
                                                 {"date": "2024-01-01", "rate": 1.25}], account_currency="USD")
    assert code == "GBP" and rates == [(utc(2024, 1, 1).date(), Decimal("1.25")),
                                       (utc(2024, 2, 1).date(), Decimal("1.27"))]
    for rates, param in (([{"date": "2024-01-01", "rate": "0"}], "rates[0].rate"),
                         ([{"date": "2024-01-01", "rate": "abc"}], "rates[0].rate"),
                         ([{"date": "2024-01-01", "rate": "1"}, {"date": "2024-01-01", "rate": "2"}],
                          "rates[1].date"),
                         ([], "rates")):
        with pytest.raises(ValidationFailed) as bad:
            validation.clean_rates("GBP", rates, account_currency="USD")
        assert bad.value.param == param
    with pytest.raises(ValidationFailed):
        validation.clean_rates("ZZZ", [{"date": "2024-01-01", "rate": "1"}], account_currency="USD")


def test_metric_queries_need_both_dates():
    asked = validation.clean_metrics_query({"start-date": "2024-01-01", "end-date": "2024-12-31"})
    assert (asked["start"].month, asked["end"].month, asked["interval"]) == (1, 12, "month")
    with pytest.raises(ValidationFailed) as missing:
        validation.clean_metrics_query({"end-date": "2024-12-31"})
    assert missing.value.param == "start-date"


# ---- small rules ---------------------------------------------------------------------------------


def invoice(total=5000, due=None, transactions=()):
    return Invoice(id="i", date=utc(2024, 1, 1), due_date=due, transactions=tuple(transactions),
                   line_items=(LineItem(id="l", type="subscription", amount_in_cents=total, subscription_id="s"),))


def test_an_invoice_is_paid_past_due_or_open():
    now = utc(2024, 2, 1)
    assert domain.invoice_status(invoice(), now) == "open"
    assert domain.invoice_status(invoice(due=utc(2024, 1, 15)), now) == "past_due"
    paid = Transaction(id="t", type="payment", result="successful", date=utc(2024, 1, 2))
    assert domain.invoice_status(invoice(due=utc(2024, 1, 15), transactions=[paid]), now) == "paid"
    assert domain.invoice_status(invoice(total=0), now) == "paid"


def test_settled_at_is_the_first_successful_payment():
    failed = Transaction(id="f", type="payment", result="failed", date=utc(2024, 1, 1))
    late = Transaction(id="a", type="payment", result="successful", date=utc(2024, 1, 9))
    early = Transaction(id="b", type="payment", result="successful", date=utc(2024, 1, 3))
    assert domain.settled_at(invoice(transactions=[failed, late, early])) == utc(2024, 1, 3)
    assert domain.settled_at(invoice(transactions=[failed])) is None
    assert domain.settled_at(invoice(total=0)) == utc(2024, 1, 1)


def test_the_next_review_is_the_earliest_pending_moment():
    now = utc(2024, 1, 10)
    retry = Transaction(id="t", type="payment", result="failed", date=utc(2024, 1, 20))
    unsettled = [invoice(due=utc(2024, 1, 5)), invoice(due=utc(2024, 1, 25), transactions=[retry])]
    assert domain.next_review(now=now, next_change=None, unsettled=unsettled) == utc(2024, 1, 20)
    assert domain.next_review(now=now, next_change=utc(2024, 1, 12), unsettled=unsettled) == utc(2024, 1, 12)
    assert domain.next_review(now=now, next_change=None, unsettled=[invoice(due=utc(2024, 1, 5))]) is None


def test_movements_are_described_by_their_main_cause():
    line_cause = Cause(subscription_id="s2", kind="line_item", line_item_id="l2")
    cancel = Cause(subscription_id="s1", kind="cancellation")
    assert domain.main_cause("contraction", [line_cause, cancel]) == cancel
    assert domain.main_cause("expansion", [line_cause, cancel]) == line_cause
    assert domain.describe_movement("new_biz", "Gold", cancelled=False) == "purchased the Gold plan"
    assert domain.describe_movement("churn", "Gold", cancelled=True) == "cancelled the Gold plan"
    assert domain.describe_movement("contraction", None, cancelled=False) == "downgraded to a plan"
