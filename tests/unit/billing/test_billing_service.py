"""The billing_sync service's methods on a real SQLite database, with a hand-written fake for the
customers service (conftest.py); events are read back from the outbox.

These check the wiring around the MRR engine (whose rules have their own golden tests in
test_mrr_*.py): that the incremental path agrees with a full recompute, that the stored day rows
are the sum of the stored movements, that each figure is announced with a rising sequence, and
that redelivered events change nothing.
"""
from datetime import date, datetime, timezone

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select

from roster.errors import NotFound, ValidationFailed
from roster.testing import as_handler, recorded_fields, unit_of_work
from roster.uow import AlreadyHandled
from services.billing_sync import commands, store
from services.billing_sync.metrics import day_totals
from services.billing_sync.models import Base, Customer, Movement, bookkeeping
from services.billing_sync.movements import Movement as EngineMovement
from services.billing_sync.service import BillingSyncService


def events(service, event_type=None):
    return recorded_fields(service.uow, event_type)


def month(n: int) -> str:
    """Return the first day of the n-th month of 2024 (13 = January 2025)."""
    year, index = divmod(n - 1, 12)
    return f"{2024 + year}-{index + 1:02d}-01T00:00:00Z"


def invoice(plan, external_id, start, amount, *, sub="s1", paid=True, due=None, **line):
    """An invoice for one monthly period from month `start`, a payment unless paid=False."""
    return {"external_id": external_id, "date": month(start), "currency": line.pop("currency", "USD"),
            "due_date": due,
            "line_items": [{"type": "subscription", "subscription_external_id": sub, "plan_uuid": plan,
                            "service_period_start": month(start), "service_period_end": month(start + 1),
                            "amount_in_cents": amount, "external_id": f"{external_id}-l", **line}],
            "transactions": [{"date": month(start), "type": "payment", "result": "successful"}] if paid else []}


def stored_movements(service, uuid):
    with service.uow.read() as session:
        customer = store.customer(session, uuid)
        rows = store.movements_of(session, customer.id) if customer else []
        return [(row.at, row.type, row.delta, row.mrr_after, tuple(tuple(sorted(c.items())) for c in row.causes))
                for row in rows]


def stored_state(service, uuid):
    with service.uow.read() as session:
        return store.customer(session, uuid).state


def day_rows(service):
    with service.uow.read() as session:
        return {row.day: (row.new_business, row.expansion, row.contraction, row.churn, row.reactivation,
                          row.customers)
                for row in store.metric_days(session, date.min, date.max) if not row.is_zero()}


def days_of_stored_movements(service):
    with service.uow.read() as session:
        movements = [EngineMovement(at=row.at, type=row.type, delta=row.delta, mrr_after=row.mrr_after)
                     for row in session.scalars(select(Movement))]
    return {row.day: (row.new_business, row.expansion, row.contraction, row.churn, row.reactivation, row.customers)
            for row in day_totals(movements)}


# ---- import -------------------------------------------------------------------------------------


def test_import_stores_invoices_and_announces_the_figures(service, plan, cus, customers):
    answer = service.import_invoices(cus, [invoice(plan, "i1", 1, 5000), invoice(plan, "i2", 2, 8000)])

    assert answer["failed"] == 0 and [i["external_id"] for i in answer["invoices"]] == ["i1", "i2"]
    assert answer["invoices"][1]["line_items"][0]["mrr"] == 8000
    assert customers.asked == [cus]
    assert service.get_invoice(answer["invoices"][0]["uuid"]) == answer["invoices"][0]
    assert service.customer_metrics(cus) == {
        "customer_uuid": cus, "sequence": 1, "mrr": 8000, "arr": 96000, "status": "Active",
        "customer_since": "2024-01-01T00:00:00Z", "net_payments": 13000, "currency": "USD"}
    assert [e["movement"]["type"] for e in events(service, "mrr_movement_recorded")] == ["new_biz", "expansion"]
    assert events(service, "customer_metrics_changed") == [service.customer_metrics(cus)]


def test_events_carry_exactly_the_contract_fields(service, plan, cus, source):
    made = service.import_invoices(cus, [invoice(plan, "i1", 1, 5000)])["invoices"][0]
    line = made["line_items"][0]

    [imported] = events(service, "invoice_imported")
    assert imported == {"customer_uuid": cus, "data_source_uuid": source, "invoice": {
        "uuid": made["uuid"], "external_id": "i1", "date": "2024-01-01T00:00:00Z", "due_date": None,
        "currency": "USD", "total_in_cents": 5000, "line_item_count": 1}}
    [paid] = events(service, "transaction_recorded")
    assert paid == {"customer_uuid": cus, "invoice_uuid": made["uuid"], "transaction": {
        "uuid": made["transactions"][0]["uuid"], "external_id": None, "type": "payment", "result": "successful",
        "date": "2024-01-01T00:00:00Z", "amount_in_cents": 5000, "currency": "USD"}}
    [moved] = events(service, "mrr_movement_recorded")
    assert moved["customer_uuid"] == cus
    movement = moved["movement"]
    assert movement.pop("uuid").startswith("mov_")
    assert movement == {
        "type": "new_biz", "date": "2024-01-01T00:00:00Z", "mrr_movement": 5000, "mrr": 5000, "arr": 60000,
        "currency": "USD", "description": "purchased the Silver Monthly plan", "subscription_external_id": "s1",
        "plan_external_id": "silver", "data_source_uuid": source,
        "causes": [{"line_item_uuid": line["uuid"], "line_item_external_id": "i1-l",
                    "subscription_uuid": line["subscription_uuid"], "kind": "line_item"}]}
    [figures] = events(service, "customer_metrics_changed")
    assert set(figures) == {"customer_uuid", "sequence", "mrr", "arr", "status", "customer_since",
                            "net_payments", "currency"}


def test_one_bad_invoice_is_refused_by_field_while_the_others_import(service, plan, cus):
    bad = invoice(plan, "bad", 1, "lots", currency="usdollars")
    bad["line_items"].append({"type": "trial", "amount_in_cents": 0})

    answer = service.import_invoices(cus, [invoice(plan, "good", 1, 5000), bad])

    assert answer["failed"] == 1
    assert answer["invoices"][0]["external_id"] == "good"
    assert answer["invoices"][1] == {"external_id": "bad", "errors": {
        "currency": ["must be an ISO-4217 currency code such as USD"],
        "line_items[0].amount_in_cents": ["must be a whole number of cents"],
        "line_items[1].subscription_external_id": ["is required"],
        "line_items[1].plan_uuid": ["is required"],
        "line_items[1].service_period_start": ["is required"],
        "line_items[1].service_period_end": ["is required"]}}
    assert [e["invoice"]["external_id"] for e in events(service, "invoice_imported")] == ["good"]


def test_a_duplicate_external_id_is_refused_and_changes_nothing(service, plan, cus):
    service.import_invoices(cus, [invoice(plan, "i1", 1, 5000)])
    before = (service.customer_metrics(cus), events(service))

    answer = service.import_invoices(cus, [invoice(plan, "i1", 2, 9000, paid=False),
                                           invoice(plan, "i2", 2, 9000, paid=False),
                                           invoice(plan, "i2", 3, 9000, paid=False)])

    assert answer["failed"] == 2
    assert answer["invoices"][0]["errors"] == {
        "external_id": ["an invoice with this external_id already exists in the data source"]}
    assert answer["invoices"][2]["errors"] == {"external_id": ["is used by an earlier invoice of this request"]}
    assert service.customer_metrics(cus)["mrr"] == 9000
    assert len(events(service, "invoice_imported")) == len([e for e in before[1] if "invoice" in e]) + 1


def test_a_batch_where_every_invoice_fails_changes_nothing(service, plan, cus):
    answer = service.import_invoices(cus, [invoice(plan, "i1", 1, 5000, sub=""), {"external_id": "x"}])
    assert answer["failed"] == 2
    assert events(service) == [e for e in events(service) if "data_source" in e]  # only the source's event
    assert service.customer_metrics(cus)["sequence"] == 0


def test_an_unknown_customer_is_a_404_and_a_subscription_of_another_customer_is_refused(service, plan, cus):
    with pytest.raises(NotFound):
        service.import_invoices("cus_nobody", [invoice(plan, "i1", 1, 5000)])
    service.import_invoices(cus, [invoice(plan, "i1", 1, 5000, sub="shared")])
    answer = service.import_invoices("cus_2", [invoice(plan, "i2", 1, 5000, sub="shared")])
    assert answer["invoices"][0]["errors"] == {
        "line_items[0].subscription_external_id": ["this subscription belongs to another customer of the data source"]}


def test_plans_must_exist_in_the_invoice_data_source(service, plan, cus):
    other = service.create_data_source({"name": "Other"})["uuid"]
    foreign = service.create_plan({"data_source_uuid": other, "name": "Elsewhere", "interval_count": 1,
                                   "interval_unit": "year"})["uuid"]
    answer = service.import_invoices(cus, [invoice(foreign, "i1", 1, 5000), invoice("pl_nope", "i2", 1, 5000)])
    assert answer["invoices"][0]["errors"] == {"line_items[0].plan_uuid": ["the plan belongs to another data source"]}
    assert answer["invoices"][1]["errors"] == {"line_items[0].plan_uuid": ["no plan pl_nope exists"]}


# ---- incremental and full recompute agree ------------------------------------------------------------


HISTORY = [  # (external id, month, amount, subscription, cancelled at month)
    ("a1", 1, 5000, "s1", None), ("a2", 2, 5000, "s1", None), ("b1", 2, 3000, "s2", None),
    ("a3", 3, 9000, "s1", None), ("b2", 3, 3000, "s2", 4), ("a4", 4, 9000, "s1", 6), ("c1", 8, 4000, "s3", None),
]


def history_invoice(plan, entry):
    external_id, start, amount, sub, cancelled = entry
    extra = {"cancelled_at": month(cancelled)} if cancelled else {}
    return invoice(plan, external_id, start, amount, sub=sub, **extra)


def test_a_backdated_import_leaves_the_books_a_full_recompute_gives(tmp_path, customers, source):
    def fresh(folder):
        folder.mkdir()
        service = worker_factory(BillingSyncService, uow=unit_of_work(Base, bookkeeping, folder),
                                 customers_rpc=customers)
        service.create_data_source({"name": "Imports"})
        return service
    customers.add("cus_1", source)
    in_order, shuffled = fresh(tmp_path / "a"), fresh(tmp_path / "b")
    for service in (in_order, shuffled):  # the same data source and plan uuids in both databases
        with service.uow.write() as tx:
            tx.session.execute(Base.metadata.tables["data_sources"].update().values(uuid=source))
        service.plan = service.create_plan({"data_source_uuid": source, "name": "Silver Monthly",
                                            "interval_count": 1, "interval_unit": "month"})["uuid"]
        with service.uow.write() as tx:
            tx.session.execute(Base.metadata.tables["plans"].update().values(uuid="pl_same"))

    in_order.import_invoices("cus_1", [history_invoice("pl_same", e) for e in HISTORY])
    later, earlier = HISTORY[4:], HISTORY[:4]
    shuffled.import_invoices("cus_1", [history_invoice("pl_same", e) for e in later])
    shuffled.import_invoices("cus_1", [history_invoice("pl_same", e) for e in earlier])  # backdated

    def comparable(service):
        return [(at, kind, delta, mrr) for at, kind, delta, mrr, _causes in stored_movements(service, "cus_1")]
    assert comparable(shuffled) == comparable(in_order)
    assert [m[1] for m in comparable(in_order)] == ["new_biz", "expansion", "expansion", "contraction", "churn",
                                                    "reactivation"]
    assert stored_state(shuffled, "cus_1")["subscription_mrr"].values().__len__() == 3
    assert sorted(stored_state(shuffled, "cus_1")["subscription_mrr"].values()) == \
        sorted(stored_state(in_order, "cus_1")["subscription_mrr"].values())
    assert day_rows(shuffled) == day_rows(in_order) == days_of_stored_movements(in_order)
    metrics = {key: value for key, value in shuffled.customer_metrics("cus_1").items() if key != "sequence"}
    assert metrics == {key: value for key, value in in_order.customer_metrics("cus_1").items() if key != "sequence"}


def test_the_incremental_path_keeps_what_a_recompute_would_store(service, plan, cus):
    for entry in HISTORY:  # one invoice per request, in order: every step incremental
        service.import_invoices(cus, [history_invoice(plan, entry)])
    incremental = stored_movements(service, cus), stored_state(service, cus), day_rows(service)

    with service.uow.write() as tx:
        from services.billing_sync.ledger import Ledger
        ledger = Ledger(tx)
        customer = store.lock_customer(tx.session, cus)
        ledger.recompute(customer)
        ledger.close()

    assert (stored_movements(service, cus), stored_state(service, cus), day_rows(service)) == incremental
    assert events(service, "mrr_movement_retracted") == []  # nothing changed, so nothing was retracted


def test_a_backdated_line_retracts_only_the_movements_it_changes(service, plan, cus):
    service.import_invoices(cus, [invoice(plan, "a1", 1, 5000), invoice(plan, "a2", 3, 8000)])
    first, second = [e["movement"] for e in events(service, "mrr_movement_recorded")]

    service.import_invoices(cus, [invoice(plan, "b1", 2, 2000, sub="s2")])  # between the two

    # January's new_biz stands; March's expansion keeps its +3000 but now ends at 10000, not 8000
    assert [e["movement_uuid"] for e in events(service, "mrr_movement_retracted")] == [second["uuid"]]
    recorded = [e["movement"] for e in events(service, "mrr_movement_recorded")][2:]
    assert [(m["date"][:7], m["type"], m["mrr_movement"], m["mrr"]) for m in recorded] == [
        ("2024-02", "expansion", 2000, 7000), ("2024-03", "expansion", 3000, 10000)]

    service.import_invoices(cus, [invoice(plan, "c1", 1, 1000, sub="s3")])  # at the new_biz's instant
    retracted = [e["movement_uuid"] for e in events(service, "mrr_movement_retracted")]
    assert first["uuid"] in retracted
    new_biz = [e["movement"] for e in events(service, "mrr_movement_recorded") if e["movement"]["type"] == "new_biz"]
    assert [(m["mrr_movement"], len(m["causes"])) for m in new_biz] == [(5000, 1), (6000, 2)]
    assert [m[1:4] for m in stored_movements(service, cus)] == [
        ("new_biz", 6000, 6000), ("expansion", 2000, 8000), ("expansion", 3000, 11000)]
    assert day_rows(service) == days_of_stored_movements(service)


# ---- transactions, status and time -------------------------------------------------------------------


def test_a_transaction_settles_an_invoice_and_moves_net_payments(service, plan, cus):
    made = service.import_invoices(cus, [invoice(plan, "i1", 1, 5000, paid=False, due=month(1))])
    invoice_uuid = made["invoices"][0]["uuid"]
    assert service.customer_metrics(cus)["status"] == "Past Due"

    paid = service.import_transaction(invoice_uuid, {"type": "payment", "result": "successful",
                                                     "date": "2024-01-20", "external_id": "t1"})
    refund = service.import_transaction(invoice_uuid, {"type": "refund", "result": "successful",
                                                       "date": "2024-01-25", "amount_in_cents": 1200})

    assert paid["uuid"].startswith("tr_") and refund["amount_in_cents"] == 1200
    figures = service.customer_metrics(cus)
    assert (figures["status"], figures["net_payments"], figures["sequence"]) == ("Active", 3800, 3)
    assert service.get_invoice(invoice_uuid)["status"] == "paid"
    with pytest.raises(ValidationFailed) as duplicate:
        service.import_transaction(invoice_uuid, {"type": "payment", "result": "failed", "date": "2024-02-01",
                                                  "external_id": "t1"})
    assert duplicate.value.param == "external_id"
    with pytest.raises(NotFound):
        service.import_transaction("inv_nope", {"type": "payment", "result": "failed", "date": "2024-02-01"})


def test_a_transaction_for_more_than_its_invoice_is_refused_and_changes_nothing(service, plan, cus):
    made = service.import_invoices(cus, [invoice(plan, "i1", 1, 5000)])  # paid in full
    invoice_uuid = made["invoices"][0]["uuid"]
    before = (service.customer_metrics(cus), events(service))

    for transaction in ({"type": "refund", "result": "successful", "date": "2024-01-06", "amount_in_cents": 10**12},
                        {"type": "payment", "result": "failed", "date": "2024-01-06", "amount_in_cents": 5001}):
        with pytest.raises(ValidationFailed) as refused:
            service.import_transaction(invoice_uuid, transaction)
        assert refused.value.param == "amount_in_cents"
    service.import_transaction(invoice_uuid, {"type": "refund", "result": "successful", "date": "2024-01-06",
                                              "amount_in_cents": 3000})
    with pytest.raises(ValidationFailed, match="only 2000 of the invoice's total"):
        service.import_transaction(invoice_uuid, {"type": "refund", "result": "successful", "date": "2024-01-07"})

    assert service.customer_metrics(cus)["net_payments"] == before[0]["net_payments"] - 3000
    assert len(events(service, "transaction_recorded")) == len([e for e in before[1] if "transaction" in e]) + 1

    answer = service.import_invoices(cus, [{**invoice(plan, "i2", 2, 5000), "transactions": [
        {"type": "payment", "result": "successful", "date": month(2)},
        {"type": "refund", "result": "successful", "date": month(2), "amount_in_cents": 9000}]}])
    assert answer["invoices"][0]["errors"] == {
        "transactions[1].amount_in_cents": ["must not be more than the invoice's total (5000)"]}


def test_an_import_that_would_take_mrr_beyond_the_limit_is_refused_whole(service, plan, cus):
    service.import_invoices(cus, [invoice(plan, "i1", 1, 5000)])
    before = (service.customer_metrics(cus), events(service))
    lines = [{"type": "subscription", "subscription_external_id": f"big{n}", "plan_uuid": plan,
              "service_period_start": month(2), "service_period_end": month(3), "amount_in_cents": 10**15}
             for n in range(2)]

    with pytest.raises(ValidationFailed, match="customer's MRR to 2000000000005000") as refused:
        service.import_invoices(cus, [{"external_id": "big", "date": month(2), "currency": "USD", "line_items": lines}])

    assert refused.value.param == "invoices"
    assert (service.customer_metrics(cus), events(service)) == before


def test_a_line_whose_mrr_would_pass_the_limit_is_refused_by_its_amount(service, source, cus):
    yearly = service.create_plan({"data_source_uuid": source, "name": "Yearly", "interval_count": 1,
                                  "interval_unit": "year"})["uuid"]
    prorated_second = {"type": "subscription", "subscription_external_id": "s1", "plan_uuid": yearly,
                       "prorated": True, "amount_in_cents": 10**15, "service_period_start": "2024-01-01T00:00:00Z",
                       "service_period_end": "2024-01-01T00:00:01Z"}

    answer = service.import_invoices(cus, [{"external_id": "i1", "date": "2024-01-01", "currency": "USD",
                                            "line_items": [prorated_second]}])

    assert list(answer["invoices"][0]["errors"]) == ["line_items[0].amount_in_cents"]
    assert "beyond ±1000000000000000" in answer["invoices"][0]["errors"]["line_items[0].amount_in_cents"][0]
    assert service.customer_metrics(cus)["mrr"] == 0


def test_one_request_carries_at_most_the_line_items_limit(service, plan, cus):
    many = [{**invoice(plan, f"i{n}", 1, 100, sub=f"s{n}", paid=False),
             "line_items": [{**invoice(plan, "x", 1, 100)["line_items"][0], "subscription_external_id": f"s{n}-{k}",
                             "external_id": f"l{n}-{k}"} for k in range(1000)]} for n in range(6)]

    with pytest.raises(ValidationFailed, match="at most 5000 line items per request in all .these invoices have 6000"):
        service.import_invoices(cus, many)
    assert service.customer_metrics(cus)["mrr"] == 0
    assert service.import_invoices(cus, many[:5])["failed"] == 0  # 5,000 is allowed


def test_past_due_arrives_with_time_through_the_review(service, plan, cus):
    service.import_invoices(cus, [invoice(plan, "i1", 1, 5000, paid=False, due="2030-01-15T00:00:00Z")])
    assert service.customer_metrics(cus)["status"] == "Active"

    assert commands.review_customers(service.uow, now=datetime(2030, 1, 10, tzinfo=timezone.utc)) == 0
    assert commands.review_customers(service.uow, now=datetime(2030, 1, 16, tzinfo=timezone.utc)) == 1
    assert commands.review_customers(service.uow, now=datetime(2030, 1, 17, tzinfo=timezone.utc)) == 0

    figures = events(service, "customer_metrics_changed")
    assert [f["status"] for f in figures] == ["Active", "Past Due"]
    assert [f["sequence"] for f in figures] == [1, 2]


def test_sequences_rise_with_every_announcement(service, plan, cus):
    made = service.import_invoices(cus, [invoice(plan, "i1", 1, 5000)])
    service.import_invoices(cus, [invoice(plan, "i2", 2, 6000)])
    subscription = made["invoices"][0]["line_items"][0]["subscription_uuid"]
    service.cancel_subscription(subscription, {"cancelled_at": month(3)})
    service.delete_invoice(made["invoices"][0]["uuid"])

    assert [f["sequence"] for f in events(service, "customer_metrics_changed")] == [1, 2, 3, 4]


# ---- subscriptions and cancellations ------------------------------------------------------------------


def test_cancel_adds_a_date_and_cancellation_dates_replace_them(service, plan, cus):
    made = service.import_invoices(cus, [invoice(plan, "i1", 1, 5000), invoice(plan, "i2", 1, 3000, sub="s2")])
    subscription = made["invoices"][1]["line_items"][0]["subscription_uuid"]

    cancelled = service.cancel_subscription(subscription, {"cancelled_at": "2024-01-20"})
    assert cancelled["cancellation_dates"] == ["2024-01-20T00:00:00Z"]
    assert service.customer_metrics(cus)["mrr"] == 5000
    entries = {e["external_id"]: e for e in service.list_subscriptions(cus)["entries"]}
    assert (entries["s2"]["status"], entries["s2"]["end-date"]) == ("cancelled", "2024-01-20T00:00:00Z")
    assert events(service, "mrr_movement_recorded")[-1]["movement"]["description"] == \
        "cancelled the Silver Monthly plan"

    undone = service.cancel_subscription(subscription, {"cancellation_dates": []})
    assert undone["cancellation_dates"] == [] and service.customer_metrics(cus)["mrr"] == 8000
    assert len(events(service, "mrr_movement_retracted")) == 1
    with pytest.raises(ValidationFailed) as bad:
        service.cancel_subscription(subscription, {"cancellation_dates": ["soon"]})
    assert bad.value.param == "cancellation_dates[0]"


def test_subscriptions_of_a_customer_without_billing_data_ask_the_customers_service(service, cus):
    assert service.list_subscriptions(cus)["entries"] == []
    with pytest.raises(NotFound):
        service.list_subscriptions("cus_nobody")


def test_connecting_needs_two_subscriptions_of_the_customer(service, plan, cus):
    made = service.import_invoices(cus, [invoice(plan, "i1", 1, 5000), invoice(plan, "i2", 2, 3000, sub="s2")])
    refs = [{"uuid": i["line_items"][0]["subscription_uuid"]} for i in made["invoices"]]
    service.connect_subscriptions(cus, {"subscriptions": refs})
    service.disconnect_subscriptions(cus, {"subscriptions": refs[1:]})
    with pytest.raises(ValidationFailed) as lonely:
        service.connect_subscriptions(cus, {"subscriptions": refs[:1]})
    assert lonely.value.param == "subscriptions"
    assert service.customer_metrics(cus)["mrr"] == 8000  # bookkeeping only


# ---- currencies -------------------------------------------------------------------------------------


def test_an_invoice_in_another_currency_needs_a_rate_and_keeps_the_one_used(service, plan, cus):
    refused = service.import_invoices(cus, [invoice(plan, "e1", 2, 10000, currency="EUR")])
    assert refused["invoices"][0]["errors"] == {"currency": ["no exchange rate from EUR to USD on or before 2024-02-01"]}

    service.put_exchange_rates("eur", [{"date": "2024-01-15", "rate": "1.1"}])
    made = service.import_invoices(cus, [invoice(plan, "e1", 2, 10000, currency="EUR")])["invoices"][0]
    service.put_exchange_rates("EUR", [{"date": "2024-01-20", "rate": "2"}])  # later rates change nothing

    assert made["exchange_rate"] == "1.1" and made["currency"] == "EUR"
    assert made["line_items"][0]["amount_in_cents"] == 10000
    assert service.customer_metrics(cus)["mrr"] == 11000 and service.customer_metrics(cus)["net_payments"] == 11000
    assert service.get_exchange_rates("eur")["rates"] == [{"date": "2024-01-15", "rate": "1.1"},
                                                         {"date": "2024-01-20", "rate": "2"}]
    with pytest.raises(ValidationFailed) as own:
        service.put_exchange_rates("USD", [{"date": "2024-01-15", "rate": "1"}])
    assert own.value.param == "currency"
    with pytest.raises(ValidationFailed) as negative:
        service.put_exchange_rates("GBP", [{"date": "2024-01-15", "rate": "-1"}])
    assert negative.value.param == "rates[0].rate"


# ---- deletions and merges -----------------------------------------------------------------------------


def test_deleting_an_invoice_recomputes_its_customer(service, plan, cus):
    made = service.import_invoices(cus, [invoice(plan, "i1", 1, 5000), invoice(plan, "i2", 2, 8000),
                                         invoice(plan, "o1", 1, 1000, sub="s2")])
    service.delete_invoice(made["invoices"][2]["uuid"])

    figures = service.customer_metrics(cus)
    assert (figures["mrr"], figures["net_payments"]) == (8000, 13000)
    assert [e["external_id"] for e in service.list_subscriptions(cus)["entries"]] == ["s1"]
    assert day_rows(service) == days_of_stored_movements(service)
    with pytest.raises(NotFound):
        service.get_invoice(made["invoices"][2]["uuid"])


def test_only_a_customers_first_import_asks_the_customers_service(service, plan, cus, customers, source):
    service.import_invoices(cus, [invoice(plan, "i1", 1, 5000)])
    service.import_invoices(cus, [invoice(plan, "i2", 2, 5000)])
    answer = service.import_invoices(cus, [{**invoice(plan, "i3", 3, 5000), "data_source_uuid": None}])

    assert customers.asked == [cus]  # its external id and data source are billing's to remember
    imported = service.get_invoice(answer["invoices"][0]["uuid"])
    assert (imported["customer_external_id"], imported["data_source_uuid"]) == ("ext-cus_1", source)
    with pytest.raises(NotFound):  # a customer billing never saw is still the customers service's to know
        service.import_invoices("cus_nobody", [invoice(plan, "n1", 1, 5000)])
    assert customers.asked == [cus, "cus_nobody"]


def test_a_first_import_uses_the_customer_row_another_import_made_meanwhile(service, plan, cus, customers, source):
    answer_of_customers = customers.get_customer

    def while_asked(uuid):  # a concurrent first import of the same customer commits its row
        with service.uow.write() as tx:
            store.ensure_customer(tx.session, uuid, "ext-cus_1")
        return answer_of_customers(uuid)

    customers.get_customer = while_asked
    answer = service.import_invoices(cus, [invoice(plan, "i1", 1, 5000)])

    assert answer["failed"] == 0
    with service.uow.read() as session:
        [row] = session.scalars(select(Customer).where(Customer.uuid == cus)).all()
    assert (row.data_source_uuid, row.external_id, row.mrr) == (source, "ext-cus_1", 5000)
    customers.get_customer = answer_of_customers
    service.import_invoices(cus, [invoice(plan, "i2", 2, 5000)])
    assert customers.asked == [cus]  # remembered: not asked again


def test_a_deleted_customer_loses_its_billing_data_and_cannot_import_again(service, plan, cus, customers):
    service.import_invoices(cus, [invoice(plan, "i1", 1, 5000)])
    payload = {"event_id": "e-del", "uuid": cus, "external_ids": ["x"], "data_source_uuids": []}

    commands.on_customer_deleted(as_handler(service.uow, "handle_customer_deleted", payload), payload)

    assert service.list_invoices({})["invoices"] == []
    assert day_rows(service) == {}
    assert len(events(service, "mrr_movement_retracted")) == 1
    with pytest.raises(NotFound):  # the customers service still answered: the delete overtook it
        service.import_invoices(cus, [invoice(plan, "i2", 2, 5000)])
    assert customers.asked == [cus, cus]  # what billing remembered of it went with its row: asked again


def test_a_merge_moves_the_books_and_a_redelivery_changes_nothing(service, plan, cus):
    service.import_invoices("cus_2", [invoice(plan, "m1", 1, 3000, sub="m")])
    service.import_invoices(cus, [invoice(plan, "i1", 2, 5000)])
    payload = {"event_id": "e-merge", "from_uuid": "cus_2", "into_uuid": cus, "into_external_id": "ext-cus_1",
               "moved_external_ids": []}

    commands.on_customer_merged(as_handler(service.uow, "handle_customer_merged", payload), payload)
    after = (service.customer_metrics(cus), events(service), day_rows(service))
    with pytest.raises(AlreadyHandled):
        commands.on_customer_merged(as_handler(service.uow, "handle_customer_merged", payload), payload)

    assert (service.customer_metrics(cus), events(service), day_rows(service)) == after
    figures = after[0]
    assert (figures["mrr"], figures["net_payments"], figures["customer_since"]) == (8000, 8000,
                                                                                    "2024-01-01T00:00:00Z")
    assert {i["customer_uuid"] for i in service.list_invoices({})["invoices"]} == {cus}
    assert [m[1] for m in stored_movements(service, cus)] == ["new_biz", "expansion"]
    assert day_rows(service) == days_of_stored_movements(service)
    assert service.customer_metrics("cus_2")["sequence"] == 0  # its books are gone


def test_a_merge_into_a_customer_deleted_meanwhile_removes_the_books(service, plan, cus):
    service.import_invoices("cus_2", [invoice(plan, "m1", 1, 3000, sub="m")])
    deleted = {"event_id": "e1", "uuid": cus}
    commands.on_customer_deleted(as_handler(service.uow, "handle_customer_deleted", deleted), deleted)
    merged = {"event_id": "e2", "from_uuid": "cus_2", "into_uuid": cus}
    commands.on_customer_merged(as_handler(service.uow, "handle_customer_merged", merged), merged)
    assert service.list_invoices({})["invoices"] == [] and day_rows(service) == {}


def test_deleting_a_data_source_removes_its_billing_data_and_recomputes(service, plan, cus, source):
    other = service.create_data_source({"name": "Stripe"})["uuid"]
    other_plan = service.create_plan({"data_source_uuid": other, "name": "Gold", "interval_count": 1,
                                      "interval_unit": "year"})["uuid"]
    service.import_invoices(cus, [invoice(plan, "i1", 1, 5000)])
    service.import_invoices(cus, [dict(invoice(other_plan, "y1", 2, 120000, sub="y"), data_source_uuid=other)])
    assert service.customer_metrics(cus)["mrr"] == 15000
    detail = service.get_data_source(other, {"with_processing_status": True})
    assert detail["processing_status"] == {"processed": 1, "pending": 0, "failed": 0}

    service.delete_data_source(other)

    assert service.customer_metrics(cus)["mrr"] == 5000 and service.customer_metrics(cus)["net_payments"] == 5000
    assert [i["external_id"] for i in service.list_invoices({})["invoices"]] == ["i1"]
    with pytest.raises(NotFound):
        service.get_plan(other_plan)
    assert day_rows(service) == days_of_stored_movements(service)
    assert events(service, "data_source_deleted")[-1] == {"uuid": other, "name": "Stripe", "system": "Import API"}


# ---- plans, lists, revenue, metrics -----------------------------------------------------------------------


def test_a_plan_in_use_keeps_its_interval_and_cannot_be_deleted(service, plan, cus):
    service.import_invoices(cus, [invoice(plan, "i1", 1, 5000)])
    assert service.update_plan(plan, {"name": "Silver"})["name"] == "Silver"
    with pytest.raises(ValidationFailed) as interval:
        service.update_plan(plan, {"interval_unit": "year"})
    assert interval.value.param == "interval_unit"
    with pytest.raises(ValidationFailed):
        service.delete_plan(plan)


def test_lists_page_with_cursors(service, plan, cus, source):
    for index in range(3):
        service.create_plan({"data_source_uuid": source, "name": f"P{index}", "interval_count": 1,
                             "interval_unit": "day"})
    first = service.list_plans({"data_source_uuid": source}, None, 2)
    second = service.list_plans({"data_source_uuid": source}, first["cursor"], 2)
    assert first["has_more"] and not second["has_more"] and len(first["plans"] + second["plans"]) == 4
    service.import_invoices(cus, [invoice(plan, f"i{n}", n, 5000) for n in range(1, 4)])
    page = service.list_invoices({"customer_uuid": cus}, None, 2)
    rest = service.list_invoices({"customer_uuid": cus}, page["cursor"], 2)
    assert [i["external_id"] for i in page["invoices"] + rest["invoices"]] == ["i1", "i2", "i3"]
    with pytest.raises(NotFound):
        service.list_invoices({"customer_uuid": "cus_nobody"})


def test_metrics_read_the_day_rows(service, plan, cus):
    service.import_invoices(cus, [invoice(plan, "i1", 1, 5000), invoice(plan, "i2", 2, 8000)])
    service.import_invoices("cus_2", [invoice(plan, "j1", 2, 3000, sub="j")])

    mrr = service.metrics("mrr", {"start-date": "2024-01-01", "end-date": "2024-03-31", "interval": "month"})
    count = service.metrics("customer-count", {"start-date": "2024-02-01", "end-date": "2024-02-29"})

    assert [(e["date"], e["mrr"]) for e in mrr["entries"]] == [("2024-01-31", 5000), ("2024-02-29", 11000),
                                                              ("2024-03-31", 11000)]
    assert mrr["summary"] == {"current": 11000, "previous": 11000, "percentage-change": 0.0}
    assert count["entries"] == [{"date": "2024-02-29", "customers": 2, "percentage-change": 100.0}]
    with pytest.raises(ValidationFailed) as filtered:
        service.metrics("mrr", {"start-date": "2024-01-01", "end-date": "2024-03-31", "plans": "x"})
    assert filtered.value.param == "plans"
    with pytest.raises(NotFound):
        service.metrics("ltv", {"start-date": "2024-01-01", "end-date": "2024-03-31"})


def test_revenue_schedule_of_a_customer(service, plan, cus):
    service.import_invoices(cus, [invoice(plan, "i1", 1, 3100)])
    schedule = service.revenue_schedule(cus)
    assert schedule["entries"] == [{"month": "2024-01", "recognized": 3100, "deferred": 0}]
    with pytest.raises(NotFound):
        service.revenue_schedule("cus_nobody")


def test_revenue_schedule_months_are_four_digit_years_at_both_ends_of_the_calendar(service, cus):
    service.import_invoices(cus, [
        {"external_id": f"i{year}", "date": f"{year:04d}-12-31T23:59:59Z", "currency": "USD",
         "line_items": [{"type": "one_time", "amount_in_cents": 100}]} for year in (1, 9999)])
    entries = service.revenue_schedule(cus)["entries"]
    assert (entries[0]["month"], entries[-1]["month"]) == ("0001-12", "9999-12")
    assert sum(entry["recognized"] for entry in entries) == 200


def test_customer_metrics_of_a_customer_without_billing_data(service):
    assert service.customer_metrics("cus_none") == {
        "customer_uuid": "cus_none", "sequence": 0, "mrr": 0, "arr": 0, "status": None, "customer_since": None,
        "net_payments": 0, "currency": "USD"}


def test_account_currency_comes_from_the_environment(service, plan, cus, monkeypatch):
    monkeypatch.setenv("ACCOUNT_CURRENCY", "eur")
    made = service.import_invoices(cus, [invoice(plan, "i1", 1, 5000, currency="EUR")])
    assert made["failed"] == 0 and service.customer_metrics(cus)["currency"] == "EUR"
    with service.uow.read() as session:
        assert session.scalar(select(Customer.mrr)) == 5000
