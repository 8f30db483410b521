"""The Stripe mappers on hand-written Stripe objects: good ones, and broken ones naming their field."""
import copy

import pytest

from services.billing_sync.connectors.errors import MalformedObject, UnknownPlan
from services.billing_sync.connectors.shapes import with_plan_uuids
from services.billing_sync.connectors.stripe import (
    CustomerBundle,
    contacts,
    customer_record,
    invoice,
    map_bundle,
    plan,
    subscription_cancellations,
)

JAN_1 = 1704067200  # 2024-01-01T00:00:00Z
FEB_1 = 1706745600
MAR_1 = 1709251200
JAN_15 = JAN_1 + 14 * 86400

CUSTOMER = {
    "id": "cus_1", "object": "customer", "created": JAN_1, "name": "Ada Lovelace", "email": "ada@example.com",
    "phone": "+44 20 7946 0000", "description": None,
    "address": {"line1": "1 Analytical Way", "city": "London", "state": "LND", "postal_code": "N1 9GU",
                "country": "gb"},
    "shipping": {"name": "Charles Babbage", "phone": "+44 20 7946 0001", "address": None},
    "metadata": {"company": "Engines Ltd", "website_url": "https://engines.example"},
}

GOLD = {"id": "price_gold", "object": "price", "nickname": "Gold", "product": "prod_gold", "unit_amount": 5000,
        "currency": "usd", "type": "recurring", "recurring": {"interval": "month", "interval_count": 1}}


def line(**changes) -> dict:
    base = {"id": "il_1", "object": "line_item", "type": "subscription", "amount": 5000, "currency": "usd",
            "description": "1 × Gold", "period": {"start": JAN_1, "end": FEB_1}, "proration": False,
            "quantity": 1, "subscription": "sub_1", "price": GOLD, "tax_amounts": [], "discount_amounts": []}
    base.update(changes)
    return base


def stripe_invoice(lines=None, **changes) -> dict:
    base = {"id": "in_1", "object": "invoice", "customer": "cus_1", "subscription": "sub_1", "created": JAN_1,
            "due_date": None, "collection_method": "charge_automatically", "currency": "usd", "status": "paid",
            "lines": {"object": "list", "data": lines if lines is not None else [line()], "has_more": False}}
    base.update(changes)
    return base


def charge(cid="ch_1", invoice_id="in_1", status="succeeded", amount=5000, created=JAN_1) -> dict:
    return {"id": cid, "object": "charge", "invoice": invoice_id, "customer": "cus_1", "amount": amount,
            "status": status, "created": created}


def refund(rid="re_1", charge_id="ch_1", status="succeeded", amount=1000, created=JAN_15) -> dict:
    return {"id": rid, "object": "refund", "charge": charge_id, "amount": amount, "status": status,
            "created": created}


def broken(obj: dict, path: str, value=...) -> dict:
    """Return a deep copy of obj with the dotted field removed (or set to `value`)."""
    obj = copy.deepcopy(obj)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target = obj
    for part in parents:
        target = target[part]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return obj


def assert_malformed(exc_info, object_id: str, field: str):
    assert (exc_info.value.object_id, exc_info.value.field) == (object_id, field), str(exc_info.value)


# -- customers and contacts ---------------------------------------------------------------------
def test_customer_record_maps_every_field():
    assert customer_record(CUSTOMER, dashboard_url="https://billing.example/") == {
        "external_id": "cus_1", "name": "Ada Lovelace", "email": "ada@example.com", "company": "Engines Ltd",
        "country": "GB", "state": "LND", "city": "London", "zip": "N1 9GU",
        "website_url": "https://engines.example", "lead_created_at": "2024-01-01T00:00:00Z",
        "billing_system_type": "Stripe", "billing_system_url": "https://billing.example/customers/cus_1",
        "attributes": {"stripe": {"company": "Engines Ltd", "website_url": "https://engines.example"}},
    }


def test_customer_record_without_name_falls_back_to_the_email_and_empty_strings():
    sparse = {"id": "cus_2", "created": JAN_1, "name": None, "email": "solo@example.com", "address": None,
              "metadata": {}}
    record = customer_record(sparse)
    assert (record["name"], record["company"], record["country"], record["website_url"]) == (
        "solo@example.com", "", None, None)
    assert record["billing_system_url"] == "https://dashboard.stripe.com/customers/cus_2"


@pytest.mark.parametrize("path, value, field", [
    ("id", ..., "id"),
    ("created", "2024-01-01", "created"),
    ("created", True, "created"),
    ("created", -5, "created"),
    ("email", 42, "email"),
    ("address", "London", "address"),
    ("address.country", "Great Britain", "address.country"),
    ("address.city", ["London"], "address.city"),
])
def test_customer_record_names_the_broken_field(path, value, field):
    with pytest.raises(MalformedObject) as exc_info:
        customer_record(broken(CUSTOMER, path, value))
    assert exc_info.value.field == field


def test_customer_record_refuses_a_deleted_customer():
    with pytest.raises(MalformedObject) as exc_info:
        customer_record({"id": "cus_9", "object": "customer", "deleted": True})
    assert_malformed(exc_info, "cus_9", "deleted")


def test_contacts_are_the_billing_contact_and_a_different_shipping_name():
    assert contacts(CUSTOMER) == [
        {"external_id": "cus_1", "customer_external_id": "cus_1", "first_name": "Ada", "last_name": "Lovelace",
         "email": "ada@example.com", "phone": "+44 20 7946 0000", "title": None, "position": 1},
        {"external_id": "cus_1:shipping", "customer_external_id": "cus_1", "first_name": "Charles",
         "last_name": "Babbage", "email": None, "phone": "+44 20 7946 0001", "title": "Shipping", "position": 2},
    ]


def test_contacts_skip_a_shipping_name_equal_to_the_customer_name_and_split_long_names():
    customer = {**CUSTOMER, "name": "Ludwig van Beethoven", "shipping": {"name": "Ludwig van Beethoven"}}
    [only] = contacts(customer)
    assert (only["first_name"], only["last_name"]) == ("Ludwig", "van Beethoven")


def test_contacts_of_a_customer_with_no_name_and_no_email_are_none():
    assert contacts({"id": "cus_3", "name": None, "email": None}) == []


# -- plans ----------------------------------------------------------------------------------
@pytest.mark.parametrize("recurring, expected", [
    ({"interval": "month", "interval_count": 1}, (1, "month")),
    ({"interval": "month", "interval_count": 3}, (3, "month")),
    ({"interval": "year", "interval_count": 1}, (1, "year")),
    ({"interval": "week", "interval_count": 2}, (14, "day")),
    ({"interval": "day", "interval_count": 10}, (10, "day")),
])
def test_plan_normalises_the_interval_to_day_month_or_year(recurring, expected):
    mapped = plan({**GOLD, "recurring": recurring})
    assert (mapped["interval_count"], mapped["interval_unit"]) == expected
    assert (mapped["external_id"], mapped["name"]) == ("price_gold", "Gold")


def test_plan_reads_a_legacy_plan_object_and_names_it_after_the_product_without_nickname():
    legacy = {"id": "gold-annual", "object": "plan", "interval": "year", "interval_count": 1, "nickname": None,
              "product": {"id": "prod_gold", "name": "Gold"}}
    assert plan(legacy) == {"external_id": "gold-annual", "name": "Gold", "interval_count": 1,
                            "interval_unit": "year"}


@pytest.mark.parametrize("path, value, field", [
    ("recurring", None, "recurring"),  # a one-time price is no plan
    ("recurring.interval", "fortnight", "recurring.interval"),
    ("recurring.interval_count", 0, "recurring.interval_count"),
    ("recurring.interval_count", "1", "recurring.interval_count"),
    ("id", 7, "id"),
])
def test_plan_names_the_broken_field(path, value, field):
    with pytest.raises(MalformedObject) as exc_info:
        plan(broken(GOLD, path, value))
    assert exc_info.value.field == field


# -- invoices -------------------------------------------------------------------------------
def test_invoice_maps_a_paid_subscription_invoice():
    mapped = invoice(stripe_invoice(), {"price_gold": "pl_gold"}, charges=[charge()])
    assert mapped == {
        "external_id": "in_1", "customer_external_id": "cus_1", "date": "2024-01-01T00:00:00Z",
        "due_date": None, "currency": "USD", "collection_method": "automatic",
        "line_items": [{
            "type": "subscription", "external_id": "il_1", "amount_in_cents": 5000, "tax_amount_in_cents": 0,
            "discount_amount_in_cents": 0, "quantity": 1, "prorated": False, "description": "1 × Gold",
            "service_period_start": "2024-01-01T00:00:00Z", "service_period_end": "2024-02-01T00:00:00Z",
            "subscription_external_id": "sub_1", "plan_external_id": "price_gold", "plan_uuid": "pl_gold",
            "cancelled_at": None,
        }],
        "transactions": [{"type": "payment", "result": "successful", "date": "2024-01-01T00:00:00Z",
                          "amount_in_cents": 5000, "external_id": "ch_1"}],
    }


def test_invoice_amount_is_after_discounts_with_tax_included():
    taxed = line(amount=10000, tax_amounts=[{"amount": 1600}, {"amount": 400}],
                 discount_amounts=[{"amount": 2000}])
    [item] = invoice(stripe_invoice([taxed]), None)["line_items"]
    assert (item["amount_in_cents"], item["tax_amount_in_cents"], item["discount_amount_in_cents"]) == (
        10000, 2000, 2000)


def test_invoice_maps_one_off_lines_and_prorations():
    lines = [
        line(id="il_credit", amount=-2500, proration=True, period={"start": JAN_15, "end": FEB_1}),
        line(id="il_new", amount=4500, proration=True, period={"start": JAN_15, "end": FEB_1},
             price={**GOLD, "id": "price_platinum"}),
        line(id="il_setup", type="invoiceitem", amount=10000, subscription=None, price=None, plan=None,
             period=None, description="Setup fee"),
    ]
    mapped = invoice(stripe_invoice(lines, created=JAN_15), {"price_gold": "pl_g", "price_platinum": "pl_p"})
    credit, new, setup = mapped["line_items"]
    assert (credit["prorated"], credit["amount_in_cents"], credit["plan_uuid"]) == (True, -2500, "pl_g")
    assert (new["prorated"], new["plan_uuid"], new["service_period_start"]) == (
        True, "pl_p", "2024-01-15T00:00:00Z")
    assert setup["type"] == "one_time"
    assert (setup["subscription_external_id"], setup["plan_external_id"], setup["service_period_start"]) == (
        None, None, None)
    assert "plan_uuid" not in setup


def test_invoice_transactions_are_its_own_charges_and_their_refunds_oldest_first():
    charges = [charge("ch_fail", status="failed", created=JAN_1), charge("ch_ok", created=JAN_1 + 3600),
               charge("ch_pending", status="pending"), charge("ch_other", invoice_id="in_2")]
    refunds = [refund("re_1", "ch_ok"), refund("re_pending", "ch_ok", status="pending"),
               refund("re_other", "ch_other")]
    transactions = invoice(stripe_invoice(), None, charges=charges, refunds=refunds)["transactions"]
    assert [(t["external_id"], t["type"], t["result"], t["amount_in_cents"]) for t in transactions] == [
        ("ch_fail", "payment", "failed", 5000), ("ch_ok", "payment", "successful", 5000),
        ("re_1", "refund", "successful", 1000)]


def test_invoice_sets_cancelled_at_on_the_line_whose_period_holds_the_end():
    ended = {"sub_1": subscription_cancellations([{"id": "sub_1", "status": "canceled", "canceled_at": JAN_15,
                                                   "ended_at": FEB_1}])[0]["sub_1"]}
    january = invoice(stripe_invoice(), None, cancellations=ended)
    february = invoice(stripe_invoice([line(period={"start": FEB_1, "end": MAR_1})], id="in_2"), None,
                       cancellations=ended)
    assert january["line_items"][0]["cancelled_at"] == "2024-02-01T00:00:00Z"
    assert february["line_items"][0]["cancelled_at"] is None


def test_subscription_cancellations_use_ended_at_then_canceled_at_and_skip_active_ones():
    ended, errors = subscription_cancellations([
        {"id": "sub_a", "status": "canceled", "canceled_at": JAN_15, "ended_at": None},
        {"id": "sub_b", "status": "active", "canceled_at": JAN_15, "ended_at": FEB_1},
        {"id": "sub_c", "status": "active", "canceled_at": None, "ended_at": None},
        {"id": "sub_d", "status": "canceled"},
    ])
    assert {key: value.isoformat() for key, value in ended.items()} == {
        "sub_a": "2024-01-15T00:00:00+00:00", "sub_b": "2024-02-01T00:00:00+00:00"}
    assert [(e.object_id, e.field) for e in errors] == [("sub_d", "canceled_at")]


def test_invoice_with_a_plan_not_imported_raises_unknown_plan_naming_the_line():
    with pytest.raises(UnknownPlan) as exc_info:
        invoice(stripe_invoice([line(), line(id="il_2", price={**GOLD, "id": "price_x"})]), {"price_gold": "pl"})
    assert_malformed(exc_info, "in_1", "line_items[1].plan_external_id")


def test_with_plan_uuids_leaves_the_input_unchanged():
    mapped = invoice(stripe_invoice(), None)
    resolved = with_plan_uuids(mapped, {"price_gold": "pl_gold"})
    assert resolved["line_items"][0]["plan_uuid"] == "pl_gold"
    assert "plan_uuid" not in mapped["line_items"][0]


@pytest.mark.parametrize("path, value, field", [
    ("lines", ..., "lines"),
    ("lines.data", "nope", "lines.data"),
    ("lines.data", [], "lines.data"),
    ("lines.has_more", True, "lines.has_more"),
    ("currency", "dollars", "currency"),
    ("customer", None, "customer"),
    ("created", 1.5, "created"),
    ("due_date", "soon", "due_date"),
    ("lines.data.0.amount", "50.00", "lines.data[0].amount"),
    ("lines.data.0.type", "discount", "lines.data[0].type"),
    ("lines.data.0.period", ..., "lines.data[0].period"),
    ("lines.data.0.period.end", None, "lines.data[0].period.end"),
    ("lines.data.0.subscription", None, "lines.data[0].subscription"),
    ("lines.data.0.price", None, "lines.data[0].price"),
    ("lines.data.0.proration", "yes", "lines.data[0].proration"),
    ("lines.data.0.tax_amounts", [{"amount": None}], "lines.data[0].tax_amounts[0].amount"),
    ("lines.data.0", "a line", "lines.data[0]"),
])
def test_invoice_names_the_broken_field(path, value, field):
    with pytest.raises(MalformedObject) as exc_info:
        invoice(broken(stripe_invoice(), path, value), {"price_gold": "pl"})
    assert_malformed(exc_info, "in_1", field)


def test_a_broken_charge_of_the_invoice_is_named_by_its_own_id():
    with pytest.raises(MalformedObject) as exc_info:
        invoice(stripe_invoice(), None, charges=[{**charge(), "amount": "50"}])
    assert_malformed(exc_info, "ch_1", "amount")


# -- a whole customer ---------------------------------------------------------------------------
def test_map_bundle_maps_what_it_can_and_lists_each_broken_object():
    subscription = {"id": "sub_1", "status": "canceled", "canceled_at": FEB_1, "ended_at": FEB_1,
                    "items": {"data": [{"price": GOLD}]}}
    bundle = CustomerBundle(
        customer=CUSTOMER,
        subscriptions=[subscription],
        invoices=[stripe_invoice([line(period={"start": JAN_1, "end": FEB_1})], id="in_2", created=FEB_1 - 1),
                  broken(stripe_invoice(id="in_bad"), "currency", 5),
                  stripe_invoice(id="in_draft", status="draft"),
                  stripe_invoice(id="in_void", status="void"),
                  stripe_invoice(id="in_1")],
        charges=[charge("ch_1", "in_1"), charge("ch_2", "in_2")],
        refunds=[refund("re_1", "ch_2")],
    )
    mapped = map_bundle(bundle)
    assert mapped.customer["external_id"] == "cus_1"
    assert len(mapped.contacts) == 2
    assert mapped.plans == [{"external_id": "price_gold", "name": "Gold", "interval_count": 1,
                             "interval_unit": "month"}]
    assert [i["external_id"] for i in mapped.invoices] == ["in_1", "in_2"]  # oldest first
    assert [t["external_id"] for t in mapped.invoices[1]["transactions"]] == ["ch_2", "re_1"]
    assert mapped.cancellations == {"sub_1": "2024-02-01T00:00:00Z"}
    assert [(e.object_id, e.field) for e in mapped.errors] == [("in_bad", "currency")]


def test_map_bundle_of_a_broken_customer_maps_nothing_else():
    mapped = map_bundle(CustomerBundle(broken(CUSTOMER, "created", "yesterday"), invoices=[stripe_invoice()]))
    assert mapped.customer is None and mapped.invoices == []
    assert [(e.object_id, e.field) for e in mapped.errors] == [("cus_1", "created")]


def test_map_bundle_of_a_deleted_customer_says_so():
    mapped = map_bundle(CustomerBundle({"id": "cus_1", "object": "customer", "deleted": True}))
    assert mapped.deleted and mapped.customer is None and mapped.errors == []


def test_map_bundle_reports_a_broken_plan_once():
    bad_price = {**GOLD, "recurring": {"interval": "fortnight", "interval_count": 1}}
    bundle = CustomerBundle(CUSTOMER, subscriptions=[{"id": "sub_1", "status": "active",
                                                      "items": {"data": [{"price": bad_price}]}}],
                            invoices=[stripe_invoice([line(price=bad_price)])])
    mapped = map_bundle(bundle)
    assert mapped.plans == []
    assert [(e.object_id, e.field) for e in mapped.errors] == [("price_gold", "recurring.interval")]
    with pytest.raises(UnknownPlan):
        with_plan_uuids(mapped.invoices[0], {})


# -- hostile shapes fail one object, not the customer's job -------------------------------------
def test_map_bundle_a_subscription_whose_items_data_is_not_a_list_fails_alone():
    bundle = CustomerBundle(CUSTOMER, subscriptions=[{"id": "sub_bad", "status": "active", "items": {"data": 5}}],
                            invoices=[stripe_invoice()])
    mapped = map_bundle(bundle)
    assert [(e.object_id, e.field) for e in mapped.errors] == [("sub_bad", "items.data")]
    assert [inv["external_id"] for inv in mapped.invoices] == ["in_1"]


def test_map_bundle_an_invoice_whose_lines_data_is_not_a_list_fails_alone():
    bad = broken(stripe_invoice(id="in_bad"), "lines.data", 7)
    mapped = map_bundle(CustomerBundle(CUSTOMER, invoices=[bad, stripe_invoice()]))
    assert [(e.object_id, e.field) for e in mapped.errors] == [("in_bad", "lines.data")]
    assert [inv["external_id"] for inv in mapped.invoices] == ["in_1"]


def test_a_refund_with_an_expanded_charge_object_counts_for_that_charge():
    expanded = {**refund(), "charge": {"id": "ch_1", "object": "charge"}}
    mapped = map_bundle(CustomerBundle(CUSTOMER, invoices=[stripe_invoice()], charges=[charge()],
                                       refunds=[expanded]))
    assert mapped.errors == []
    [inv] = mapped.invoices
    assert [(t["type"], t["external_id"]) for t in inv["transactions"]] == [("payment", "ch_1"), ("refund", "re_1")]


def test_an_invoice_of_another_customer_is_refused_naming_customer():
    stray = stripe_invoice(id="in_stray", customer="cus_other")
    mapped = map_bundle(CustomerBundle(CUSTOMER, invoices=[stray, stripe_invoice()]))
    assert [(e.object_id, e.field) for e in mapped.errors] == [("in_stray", "customer")]
    assert "cus_other" in str(mapped.errors[0])
    assert [inv["external_id"] for inv in mapped.invoices] == ["in_1"]
    with pytest.raises(MalformedObject) as exc_info:
        invoice(stray, None, customer_id="cus_1")
    assert_malformed(exc_info, "in_stray", "customer")
