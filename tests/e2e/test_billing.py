"""Billing through the gateway: plans, invoices, transactions, subscriptions, currencies, revenue
and metrics, as a user of the official chartmogul client (and plain HTTP for our own routes) sees them.

Metrics are account-wide and MRR carries over from earlier years, so each test that reads them
dates its invoices in a year of its own and takes out what was there before (`series`).
The customer record's figures (mrr, arr, status, customer-since) are checked in
test_billing_customer_record.py: they arrive through the customers service's projection.
"""
import threading
import time
from datetime import date, timedelta

import chartmogul
import pytest
from nameko.standalone.rpc import ClusterRpcProxy
from tests.e2e.support import status_of, unique

ERR = chartmogul.APIError


@pytest.fixture(scope="module")
def source(owner):
    return chartmogul.DataSource.create(owner, data={"name": unique("Billing")}).get()


@pytest.fixture(scope="module")
def monthly(owner, source):
    return chartmogul.Plan.create(owner, data={"data_source_uuid": source.uuid, "name": "Silver Monthly",
                                               "interval_count": 1, "interval_unit": "month",
                                               "external_id": unique("silver")}).get()


@pytest.fixture(scope="module")
def annual(owner, source):
    return chartmogul.Plan.create(owner, data={"data_source_uuid": source.uuid, "name": "Gold Annual",
                                               "interval_count": 1, "interval_unit": "year"}).get()


@pytest.fixture()
def customer(owner, source):
    return chartmogul.Customer.create(owner, data={"data_source_uuid": source.uuid, "external_id": unique("cus"),
                                                   "name": "Billed Co"}).get()


@pytest.fixture(scope="module")
def billing(amqp_uri):
    """The billing service's RPC (customer_metrics), as the customers projection will read it."""
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=10) as cluster:
        yield cluster.billing_sync


def series(http, metric, start, end, interval="month"):
    """Return the entries of `/v1/metrics/<metric>`, less the value carried in from before `start`
    (other tests' customers); the `mrr-*` movement figures are per interval already."""
    key = {"mrr": "mrr", "arr": "arr", "customer-count": "customers"}[metric]
    eve = (date.fromisoformat(start) - timedelta(days=1)).isoformat()
    opening = http.get(f"/v1/metrics/{metric}", params={"start-date": eve, "end-date": eve,
                                                         "interval": "day"}).json()["entries"][0][key]
    entries = http.get(f"/v1/metrics/{metric}", params={"start-date": start, "end-date": end,
                                                         "interval": interval}).json()["entries"]
    return [dict(entry, **{key: entry[key] - opening}) for entry in entries]


def invoice(plan, external_id, start, end, amount, *, subscription=None, paid=True, currency="USD",
            due=None, **line):
    """An invoice with one subscription line (a subscription of its own unless named: subscription
    external ids are unique in a data source) and a $5 one-time line, paid unless `paid=False`."""
    subscription = subscription or unique("sub")
    data = {
        "external_id": external_id, "date": start, "currency": currency,
        "line_items": [{"type": "subscription", "subscription_external_id": subscription, "plan_uuid": plan.uuid,
                        "service_period_start": start, "service_period_end": end, "amount_in_cents": amount,
                        "external_id": f"{external_id}-line", **line},
                       {"type": "one_time", "amount_in_cents": 500, "description": "Setup fee"}],
        "transactions": [{"date": start, "type": "payment", "result": "successful",
                          "external_id": f"{external_id}-pay"}] if paid else [],
    }
    if due:
        data["due_date"] = due
    return data


def test_plans_crud_with_the_official_client(owner, source, cm_config):
    made = chartmogul.Plan.create(owner, data={"data_source_uuid": source.uuid, "name": "Bronze",
                                               "interval_count": 3, "interval_unit": "month",
                                               "external_id": unique("bronze")}).get()
    assert made.uuid.startswith("pl_") and made.data_source_uuid == source.uuid
    assert (made.name, made.interval_count, made.interval_unit) == ("Bronze", 3, "month")

    renamed = chartmogul.Plan.modify(owner, uuid=made.uuid, data={"name": "Bronze Quarterly"}).get()
    assert renamed.name == "Bronze Quarterly"
    assert chartmogul.Plan.retrieve(cm_config("read_only"), uuid=made.uuid).get().name == "Bronze Quarterly"
    listed = chartmogul.Plan.all(owner, data_source_uuid=source.uuid, external_id=made.external_id).get()
    assert [plan.uuid for plan in listed.plans] == [made.uuid] and listed.has_more is False

    assert chartmogul.Plan.destroy(owner, uuid=made.uuid).get() is None
    with pytest.raises(ERR) as missing:
        chartmogul.Plan.retrieve(owner, uuid=made.uuid).get()
    assert status_of(missing.value) == 404


def test_plan_list_pages_and_refuses_bad_input(owner, source, http):
    for index in range(3):
        chartmogul.Plan.create(owner, data={"data_source_uuid": source.uuid, "name": f"Paged {index}",
                                            "interval_count": 1, "interval_unit": "day"}).get()
    first = chartmogul.Plan.all(owner, data_source_uuid=source.uuid, per_page=2).get()
    second = chartmogul.Plan.all(owner, data_source_uuid=source.uuid, per_page=2, cursor=first.cursor).get()
    assert first.has_more and len(first.plans) == 2
    assert not {p.uuid for p in first.plans} & {p.uuid for p in second.plans}

    bad = http.post("/v1/plans", json={"data_source_uuid": source.uuid, "name": "X", "interval_count": 1,
                                       "interval_unit": "fortnight"})
    assert bad.status_code == 422 and bad.json()["param"] == "interval_unit"
    nowhere = http.post("/v1/plans", json={"data_source_uuid": "ds_nope", "name": "X", "interval_count": 1,
                                           "interval_unit": "month"})
    assert nowhere.status_code == 422 and nowhere.json()["param"] == "data_source_uuid"
    assert http.post("/v1/plans", role="read_only", json={}).status_code == 403


def test_import_list_retrieve_and_destroy_invoices(owner, customer, monthly, annual):
    imported = chartmogul.Invoice.create(owner, uuid=customer.uuid, data={"invoices": [
        invoice(monthly, unique("inv"), "2021-01-01T00:00:00", "2021-02-01T00:00:00", 5000),
        invoice(annual, unique("inv"), "2021-02-01 00:00:00", "2022-02-01", 120000,
                tax_amount_in_cents=20000, quantity=3),
    ]}).get()

    assert len(imported.invoices) == 2
    first, second = imported.invoices
    assert first.uuid.startswith("inv_") and first.customer_uuid == customer.uuid
    assert first.data_source_uuid == customer.data_source_uuid and first.currency == "USD"
    assert [item.type for item in first.line_items] == ["subscription", "one_time"]
    assert first.line_items[0].amount_in_cents == 5000 and first.line_items[0].plan_uuid == monthly.uuid
    assert first.transactions[0].result == "successful" and first.transactions[0].type == "payment"
    assert second.line_items[0].quantity == 3 and second.line_items[0].tax_amount_in_cents == 20000

    per_customer = chartmogul.Invoice.all(owner, uuid=customer.uuid).get()
    assert [i.uuid for i in per_customer.invoices] == [first.uuid, second.uuid]
    assert per_customer.customer_uuid == customer.uuid and per_customer.has_more is False
    by_filter = chartmogul.Invoice.all(owner, customer_uuid=customer.uuid, external_id=second.external_id).get()
    assert [i.uuid for i in by_filter.invoices] == [second.uuid]
    fetched = chartmogul.Invoice.retrieve(owner, uuid=second.uuid).get()
    assert fetched.external_id == second.external_id and fetched.date.year == 2021

    assert chartmogul.Invoice.destroy(owner, uuid=first.uuid).get() is None
    with pytest.raises(ERR) as missing:
        chartmogul.Invoice.retrieve(owner, uuid=first.uuid).get()
    assert status_of(missing.value) == 404
    assert [i.uuid for i in chartmogul.Invoice.all(owner, uuid=customer.uuid).get().invoices] == [second.uuid]


def test_one_bad_invoice_is_reported_while_the_good_ones_import(http, customer, monthly):
    good = invoice(monthly, unique("good"), "2021-03-01", "2021-04-01", 5000)
    bad = invoice(monthly, unique("bad"), "2021-03-01", "2021-04-01", "fifty", currency="EURO")
    bad["line_items"][0].pop("plan_uuid")

    answer = http.post(f"/v1/import/customers/{customer.uuid}/invoices", json={"invoices": [good, bad]})

    assert answer.status_code == 422
    body = answer.json()
    assert body["code"] == 422 and "1 of 2" in body["message"]
    imported, refused = body["invoices"]
    assert imported["external_id"] == good["external_id"] and imported["uuid"].startswith("inv_")
    assert refused["external_id"] == bad["external_id"]
    assert set(refused["errors"]) == {"currency", "line_items[0].amount_in_cents", "line_items[0].plan_uuid"}
    listed = http.get(f"/v1/import/customers/{customer.uuid}/invoices").json()["invoices"]
    assert [i["external_id"] for i in listed] == [good["external_id"]]


def test_a_duplicate_external_id_is_a_422_for_that_invoice_and_changes_nothing(owner, http, customer, monthly,
                                                                                billing):
    data = invoice(monthly, unique("dup"), "2021-05-01", "2021-06-01", 5000)
    chartmogul.Invoice.create(owner, uuid=customer.uuid, data={"invoices": [data]}).get()
    before = billing.customer_metrics(customer.uuid)

    again = dict(data, line_items=[dict(data["line_items"][0], amount_in_cents=9999)], transactions=[])
    with pytest.raises(ERR) as refused:
        chartmogul.Invoice.create(owner, uuid=customer.uuid, data={"invoices": [again]}).get()

    assert status_of(refused.value) == 422
    body = refused.value.__cause__.response.json()
    assert body["invoices"][0]["errors"] == {
        "external_id": ["an invoice with this external_id already exists in the data source"]}
    assert billing.customer_metrics(customer.uuid) == before
    assert len(chartmogul.Invoice.all(owner, uuid=customer.uuid).get().invoices) == 1


def test_an_import_for_a_customer_nobody_knows_is_a_404(http, monthly):
    answer = http.post("/v1/import/customers/cus_nobody/invoices",
                       json={"invoices": [invoice(monthly, "x", "2021-01-01", "2021-02-01", 100)]})
    assert answer.status_code == 404
    assert http.post("/v1/import/customers/cus_nobody/invoices", role="read_only", json={}).status_code == 403


def test_transactions_settle_invoices_and_add_to_net_payments(owner, customer, monthly, billing):
    made = chartmogul.Invoice.create(owner, uuid=customer.uuid, data={"invoices": [
        invoice(monthly, unique("unpaid"), "2021-06-01", "2021-07-01", 5000, paid=False, due="2021-06-15")]}).get()
    unpaid = made.invoices[0]
    assert billing.customer_metrics(customer.uuid)["status"] == "Past Due"

    paid = chartmogul.Transaction.create(owner, uuid=unpaid.uuid, data={
        "type": "payment", "date": "2021-06-20T00:00:00", "result": "successful", "external_id": unique("tr")}).get()
    assert paid.uuid.startswith("tr_") and paid.result == "successful"
    figures = billing.customer_metrics(customer.uuid)
    assert figures["status"] == "Active" and figures["net_payments"] == 5500

    chartmogul.Transaction.create(owner, uuid=unpaid.uuid, data={
        "type": "refund", "date": "2021-06-25", "result": "successful", "amount_in_cents": 1500}).get()
    assert billing.customer_metrics(customer.uuid)["net_payments"] == 4000
    assert chartmogul.Invoice.retrieve(owner, uuid=unpaid.uuid).get().status == "paid"
    with pytest.raises(ERR) as bad:
        chartmogul.Transaction.create(owner, uuid=unpaid.uuid, data={"type": "payment", "date": "2021-06-25",
                                                                     "result": "maybe"}).get()
    assert status_of(bad.value) == 422


def test_subscriptions_list_and_cancel(owner, customer, monthly, annual, billing):
    monthly_id, annual_id = unique("monthly"), unique("annual")
    chartmogul.Invoice.create(owner, uuid=customer.uuid, data={"invoices": [
        invoice(monthly, unique("m"), "2021-07-01", "2021-08-01", 5000, subscription=monthly_id),
        invoice(annual, unique("a"), "2021-07-15", "2022-07-15", 240000, subscription=annual_id),
    ]}).get()

    listed = chartmogul.CustomerSubscription.all(owner, uuid=customer.uuid).get()
    by_external = {s.external_id: s for s in listed.entries}
    assert set(by_external) == {monthly_id, annual_id}
    annual_sub = by_external[annual_id]
    assert (annual_sub.mrr, annual_sub.arr, annual_sub.status) == (20000, 240000, "active")
    assert (annual_sub.billing_cycle, annual_sub.billing_cycle_count, annual_sub.plan) == ("year", 1, "Gold Annual")
    assert annual_sub.start_date.year == 2021 and annual_sub.currency == "USD"
    assert billing.customer_metrics(customer.uuid)["mrr"] == 25000

    cancelled = chartmogul.CustomerSubscription.cancel(owner, uuid=annual_sub.uuid,
                                                       data={"cancelled_at": "2021-09-01T00:00:00"}).get()
    assert cancelled.uuid == annual_sub.uuid and [d.month for d in cancelled.cancellation_dates] == [9]
    after = {s.external_id: s for s in chartmogul.CustomerSubscription.all(owner, uuid=customer.uuid).get().entries}
    assert (after[annual_id].status, after[annual_id].mrr) == ("cancelled", 0)
    assert billing.customer_metrics(customer.uuid)["mrr"] == 5000

    undone = chartmogul.CustomerSubscription.modify(owner, uuid=annual_sub.uuid,
                                                    data={"cancellation_dates": []}).get()
    assert undone.cancellation_dates == []
    assert billing.customer_metrics(customer.uuid)["mrr"] == 25000


def test_connect_and_disconnect_subscriptions_answer_202(owner, http, customer, monthly, source):
    chartmogul.Invoice.create(owner, uuid=customer.uuid, data={"invoices": [
        invoice(monthly, unique("c1"), "2021-08-01", "2021-09-01", 5000),
        invoice(monthly, unique("c2"), "2021-09-01", "2021-10-01", 5000),
    ]}).get()
    subs = chartmogul.CustomerSubscription.all(owner, uuid=customer.uuid).get().entries
    refs = [{"data_source_uuid": source.uuid, "uuid": s.uuid} for s in subs]

    assert chartmogul.Customer.connectSubscriptions(owner, uuid=customer.uuid, data={"subscriptions": refs}).get() \
        is None
    assert chartmogul.Customer.disconnectSubscriptions(owner, uuid=customer.uuid,
                                                       data={"subscriptions": refs}).get() is None
    lonely = http.post(f"/v1/customers/{customer.uuid}/connect_subscriptions", json={"subscriptions": refs[:1]})
    assert lonely.status_code == 422 and lonely.json()["param"] == "subscriptions"
    stranger = http.post(f"/v1/customers/{customer.uuid}/connect_subscriptions",
                         json={"subscriptions": [refs[0], {"uuid": "sub_nope"}]})
    assert stranger.status_code == 422 and stranger.json()["param"] == "subscriptions[1].uuid"


def test_an_invoice_in_another_currency_needs_a_rate_and_keeps_it(http, customer, monthly):
    eur = invoice(monthly, unique("eur"), "2021-10-05", "2021-11-05", 10000, currency="EUR")
    path = f"/v1/import/customers/{customer.uuid}/invoices"

    refused = http.post(path, json={"invoices": [eur]})
    assert refused.status_code == 422
    assert refused.json()["invoices"][0]["errors"] == {
        "currency": ["no exchange rate from EUR to USD on or before 2021-10-05"]}

    rates = http.put("/v1/exchange_rates/eur", json={"rates": [{"date": "2021-10-01", "rate": "1.25"},
                                                               {"date": "2021-11-01", "rate": 1.5}]})
    assert rates.status_code == 200
    assert rates.json()["rates"] == [{"date": "2021-10-01", "rate": "1.25"}, {"date": "2021-11-01", "rate": "1.5"}]
    assert http.put("/v1/exchange_rates/EUR", role="staff", json={"rates": []}).status_code == 403

    made = http.post(path, json={"invoices": [eur]})
    assert made.status_code == 201
    stored = made.json()["invoices"][0]
    assert stored["currency"] == "EUR" and stored["exchange_rate"] == "1.25"
    assert stored["line_items"][0]["amount_in_cents"] == 10000 and stored["line_items"][0]["mrr"] == 12500
    subs = http.get(f"/v1/customers/{customer.uuid}/subscriptions").json()["entries"]
    assert [s["mrr"] for s in subs] == [12500] and subs[0]["currency"] == "USD"


def test_revenue_schedule_by_month(http, customer, annual):
    made = http.post(f"/v1/import/customers/{customer.uuid}/invoices", json={"invoices": [
        invoice(annual, unique("rev"), "2023-01-01", "2024-01-01", 36500)]})
    assert made.status_code == 201

    schedule = http.get(f"/v1/customers/{customer.uuid}/revenue_schedule").json()

    entries = {e["month"]: e for e in schedule["entries"]}
    assert schedule["currency"] == "USD"
    assert entries["2023-01"] == {"month": "2023-01", "recognized": 3100 + 500, "deferred": 36500 - 3100}
    assert entries["2023-12"]["deferred"] == 0
    assert sum(e["recognized"] for e in schedule["entries"]) == 37000
    assert http.get("/v1/customers/cus_nobody/revenue_schedule").status_code == 404


def test_metrics_mrr_arr_and_customer_count_read_the_series(owner, http, source, monthly):
    def paying(name, *invoices):
        made = chartmogul.Customer.create(owner, data={"data_source_uuid": source.uuid,
                                                       "external_id": unique(name), "name": name}).get()
        chartmogul.Invoice.create(owner, uuid=made.uuid, data={"invoices": list(invoices)}).get()
        return made

    first_sub = unique("m1")
    paying("m1", invoice(monthly, unique("x"), "1995-01-10", "1995-02-10", 5000, subscription=first_sub),
           invoice(monthly, unique("x"), "1995-02-10", "1995-03-10", 8000, subscription=first_sub))
    second = paying("m2", invoice(monthly, unique("x"), "1995-02-01", "1995-03-01", 3000))
    sub = chartmogul.CustomerSubscription.all(owner, uuid=second.uuid).get().entries[0]
    chartmogul.CustomerSubscription.cancel(owner, uuid=sub.uuid, data={"cancelled_at": "1995-03-15"}).get()

    mrr = chartmogul.Metrics.mrr(owner, start_date="1995-01-01", end_date="1995-03-31", interval="month").get()

    assert [e.date.month for e in mrr.entries] == [1, 2, 3]
    assert [e["mrr"] for e in series(http, "mrr", "1995-01-01", "1995-03-31")] == [5000, 11000, 8000]
    assert [e.mrr_new_business for e in mrr.entries] == [5000, 3000, 0]
    assert [e.mrr_expansion for e in mrr.entries] == [0, 3000, 0]
    assert [e.mrr_churn for e in mrr.entries] == [0, 0, -3000]
    assert mrr.summary.current - mrr.summary.previous == -3000
    assert [e["arr"] for e in series(http, "arr", "1995-01-01", "1995-03-31")] == [60000, 132000, 96000]
    count = chartmogul.Metrics.customer_count(owner, start_date="1995-01-01", end_date="1995-03-31",
                                              interval="month").get()
    assert [e.customers - count.entries[0].customers for e in count.entries] == [0, 1, 0]
    assert [e["customers"] for e in series(http, "customer-count", "1995-01-01", "1995-03-31")] == [1, 2, 1]
    weekly = http.get("/v1/metrics/mrr", params={"start-date": "1995-01-01", "end-date": "1995-01-10",
                                                 "interval": "week"}).json()
    assert [e["date"] for e in weekly["entries"]] == ["1995-01-07", "1995-01-10"]
    bad = http.get("/v1/metrics/mrr", params={"start-date": "1995-01-01", "end-date": "1994-01-01"})
    assert bad.status_code == 422 and bad.json()["param"] == "end-date"
    assert http.get("/v1/metrics/mrr", params={"end-date": "1995-01-01"}).status_code == 400


def test_data_source_processing_status_and_delete_removes_its_billing_data(owner, http):
    doomed = chartmogul.DataSource.create(owner, data={"name": unique("Doomed")}).get()
    plan = chartmogul.Plan.create(owner, data={"data_source_uuid": doomed.uuid, "name": "P", "interval_count": 1,
                                               "interval_unit": "month"}).get()
    person = chartmogul.Customer.create(owner, data={"data_source_uuid": doomed.uuid, "external_id": unique("d"),
                                                     "name": "Doomed Co"}).get()
    made = chartmogul.Invoice.create(owner, uuid=person.uuid, data={"invoices": [
        invoice(plan, unique("d"), "1996-01-01", "1996-02-01", 4000)]}).get()

    fetched = chartmogul.DataSource.retrieve(owner, uuid=doomed.uuid, with_processing_status=True,
                                             with_auto_churn_subscription_setting=True).get()
    assert (fetched.processing_status.processed, fetched.processing_status.failed) == (1, 0)
    assert fetched.auto_churn_subscription_setting.enabled is False
    listed = chartmogul.DataSource.all(owner, name=doomed.name, with_processing_status=True).get()
    assert [d.processing_status.processed for d in listed.data_sources] == [1]
    assert series(http, "mrr", "1996-01-01", "1996-01-31")[-1]["mrr"] == 4000

    assert chartmogul.DataSource.destroy(owner, uuid=doomed.uuid).get() is None

    assert http.get(f"/v1/invoices/{made.invoices[0].uuid}").status_code == 404
    assert http.get(f"/v1/plans/{plan.uuid}").status_code == 404
    assert series(http, "mrr", "1996-01-01", "1996-01-31")[-1]["mrr"] == 0


def wait_for(check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_deleting_a_customer_removes_its_billing_data(owner, http, customer, monthly):
    made = chartmogul.Invoice.create(owner, uuid=customer.uuid, data={"invoices": [
        invoice(monthly, unique("gone"), "1997-01-01", "1997-02-01", 7000)]}).get()

    chartmogul.Customer.destroy(owner, uuid=customer.uuid).get()

    assert wait_for(lambda: http.get(f"/v1/invoices/{made.invoices[0].uuid}").status_code == 404)
    assert series(http, "mrr", "1997-01-01", "1997-01-31")[-1]["mrr"] == 0
    late = http.post(f"/v1/import/customers/{customer.uuid}/invoices",
                     json={"invoices": [invoice(monthly, unique("late"), "1997-02-01", "1997-03-01", 7000)]})
    assert late.status_code == 404


def test_merging_customers_moves_invoices_and_recomputes(owner, http, source, monthly, billing):
    def paying(amount, start, end):
        made = chartmogul.Customer.create(owner, data={"data_source_uuid": source.uuid,
                                                       "external_id": unique("mg"), "name": "Merging"}).get()
        chartmogul.Invoice.create(owner, uuid=made.uuid, data={"invoices": [
            invoice(monthly, unique("mg"), start, end, amount)]}).get()
        return made

    survivor = paying(5000, "1998-01-01", "1998-02-01")
    merged = paying(3000, "1998-02-01", "1998-03-01")

    chartmogul.Customer.merge(owner, data={"from": {"customer_uuid": merged.uuid},
                                           "into": {"customer_uuid": survivor.uuid}}).get()

    assert wait_for(lambda: billing.customer_metrics(survivor.uuid)["mrr"] == 8000)
    moved = chartmogul.Invoice.all(owner, uuid=survivor.uuid).get().invoices
    assert len(moved) == 2 and {i.customer_uuid for i in moved} == {survivor.uuid}
    mrr = series(http, "mrr", "1998-01-01", "1998-02-28")
    assert [(e["mrr"], e["mrr-new-business"], e["mrr-expansion"]) for e in mrr] == [(5000, 5000, 0), (8000, 0, 3000)]
    assert [e["customers"] for e in series(http, "customer-count", "1998-01-01", "1998-02-28")] == [1, 1]


def test_two_concurrent_imports_for_the_same_customer_both_count(http, customer, monthly, billing):
    path = f"/v1/import/customers/{customer.uuid}/invoices"
    subscriptions = {b: unique(f"sub-{b}") for b in (0, 10)}
    batches = [[invoice(monthly, unique(f"c{b}"), f"1999-{m:02d}-01", f"1999-{m + 1:02d}-01", 1000 * (m + b),
                        subscription=subscriptions[b]) for m in range(1, 7)] for b in (0, 10)]
    answers = [None, None]

    def send(index):
        answers[index] = http.post(path, json={"invoices": batches[index]}).status_code

    threads = [threading.Thread(target=send, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [201, 201]
    figures = billing.customer_metrics(customer.uuid)
    assert figures["mrr"] == 6000 + 16000 and figures["sequence"] == 2
    mrr = series(http, "mrr", "1999-01-01", "1999-06-30")
    assert [e["mrr"] for e in mrr] == [1000 * (2 * m + 10) for m in range(1, 7)]
    assert mrr[0]["mrr-new-business"] == 12000


def test_concurrent_imports_of_different_customers_on_the_same_days_all_count(owner, http, source, monthly):
    """The day figures of imports running at once (on PostgreSQL, in different parts of each day) add up."""
    amounts = [1000 * (index + 1) for index in range(6)]
    made = [chartmogul.Customer.create(owner, data={"data_source_uuid": source.uuid, "external_id": unique("par"),
                                                    "name": f"Parallel {index}"}).get()
            for index in range(len(amounts))]
    answers = [None] * len(amounts)

    def send(index):
        subscription = unique("par-sub")
        answers[index] = http.post(f"/v1/import/customers/{made[index].uuid}/invoices", json={"invoices": [
            invoice(monthly, unique("par"), f"2003-{m:02d}-01", f"2003-{m + 1:02d}-01", amounts[index],
                    subscription=subscription) for m in (1, 2, 3)]}).status_code

    threads = [threading.Thread(target=send, args=(index,)) for index in range(len(amounts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [201] * len(amounts)
    mrr = series(http, "mrr", "2003-01-01", "2003-03-31")
    assert [(e["mrr"], e["mrr-new-business"]) for e in mrr] == [(sum(amounts), sum(amounts)), (sum(amounts), 0),
                                                                 (sum(amounts), 0)]
    assert [e["customers"] for e in series(http, "customer-count", "2003-01-01", "2003-03-31")] == [6, 6, 6]


def test_destroy_all_and_the_import_namespace_list(owner, customer, monthly, source, billing):
    sub = unique("imported")
    chartmogul.Invoice.create(owner, uuid=customer.uuid, data={"invoices": [
        invoice(monthly, unique("d"), "2020-01-01", "2020-02-01", 5000, subscription=sub)]}).get()

    imported = chartmogul.CustomerSubscription.list_imported(owner, uuid=customer.uuid).get()
    assert imported.customer_uuid == customer.uuid
    assert [(s.external_id, s.plan_uuid, s.data_source_uuid) for s in imported.subscriptions] == [
        (sub, monthly.uuid, source.uuid)]

    assert chartmogul.Invoice.destroy_all(owner, data_source_uuid=source.uuid, customer_uuid=customer.uuid).get() \
        is None
    assert chartmogul.Invoice.all(owner, uuid=customer.uuid).get().invoices == []
    figures = billing.customer_metrics(customer.uuid)
    assert (figures["mrr"], figures["status"], figures["net_payments"]) == (0, None, 0)
