"""The customer record shows billing's figures: mrr, arr, status and customer-since arrive through
the customers service's projection of `billing_sync.customer_metrics_changed`."""
import time

import chartmogul
import pytest
from tests.e2e.support import unique


@pytest.fixture(scope="module")
def plan(owner):
    source = chartmogul.DataSource.create(owner, data={"name": unique("Record")}).get()
    return chartmogul.Plan.create(owner, data={"data_source_uuid": source.uuid, "name": "Silver Monthly",
                                               "interval_count": 1, "interval_unit": "month"}).get()


def retrieve_until(config, uuid_, check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        customer = chartmogul.Customer.retrieve(config, uuid=uuid_).get()
        if check(customer) or time.monotonic() > deadline:
            return customer
        time.sleep(0.2)


def line(plan, external_id, start, end, amount, **extra):
    return {"type": "subscription", "subscription_external_id": unique("sub"), "plan_uuid": plan.uuid,
            "service_period_start": start, "service_period_end": end, "amount_in_cents": amount,
            "external_id": external_id, **extra}


def test_an_import_shows_on_the_customer_record(owner, plan):
    customer = chartmogul.Customer.create(owner, data={"data_source_uuid": plan.data_source_uuid,
                                                       "external_id": unique(), "name": "Recorded"}).get()
    assert customer.status == "New Lead"

    chartmogul.Invoice.create(owner, uuid=customer.uuid, data={"invoices": [{
        "external_id": unique("inv"), "date": "2022-03-01", "currency": "USD",
        "line_items": [line(plan, unique("l"), "2022-03-01", "2022-04-01", 5000)],
        "transactions": [{"date": "2022-03-01", "type": "payment", "result": "successful"}]}]}).get()

    fetched = retrieve_until(owner, customer.uuid, lambda c: c.mrr == 5000)
    assert (fetched.mrr, fetched.arr, fetched.status) == (5000, 60000, "Active")
    assert fetched.customer_since.year == 2022 and fetched.customer_since.month == 3


def test_a_cancellation_turns_the_record_cancelled_and_a_failed_payment_past_due(owner, plan):
    customer = chartmogul.Customer.create(owner, data={"data_source_uuid": plan.data_source_uuid,
                                                       "external_id": unique(), "name": "Cancelling"}).get()
    made = chartmogul.Invoice.create(owner, uuid=customer.uuid, data={"invoices": [{
        "external_id": unique("inv"), "date": "2022-05-01", "currency": "USD",
        "line_items": [line(plan, unique("l"), "2022-05-01", "2022-06-01", 4000)],
        "transactions": [{"date": "2022-05-01", "type": "payment", "result": "failed"}]}]}).get()
    assert retrieve_until(owner, customer.uuid, lambda c: c.status == "Past Due").status == "Past Due"

    chartmogul.Transaction.create(owner, uuid=made.invoices[0].uuid, data={
        "type": "payment", "date": "2022-05-02", "result": "successful"}).get()
    assert retrieve_until(owner, customer.uuid, lambda c: c.status == "Active").status == "Active"

    subscription = chartmogul.CustomerSubscription.all(owner, uuid=customer.uuid).get().entries[0]
    chartmogul.CustomerSubscription.cancel(owner, uuid=subscription.uuid, data={"cancelled_at": "2022-05-20"}).get()
    fetched = retrieve_until(owner, customer.uuid, lambda c: c.status == "Cancelled")
    assert (fetched.status, fetched.mrr, fetched.arr) == ("Cancelled", 0, 0)
    listed = chartmogul.Customer.all(owner, data_source_uuid=plan.data_source_uuid, status="Cancelled").get()
    assert customer.uuid in [c.uuid for c in listed.entries]
