"""The fake billing API behaves like the Stripe endpoints the connector reads, and its faults are real."""
import socket

import pytest
import requests

from tools.fake_billing import BASE_TIME, REMOVE, SEED_UNTIL, BillingModel, FakeBilling, add_interval, unix


@pytest.fixture()
def model():
    return BillingModel()


@pytest.fixture()
def fake(model):
    with FakeBilling(model) as server:
        yield server


def get(fake, path, key=None, **params):
    key = fake.api_key if key is None else key
    return requests.get(fake.url + path, params=params, headers={"Authorization": f"Bearer {key}"}, timeout=5)


def test_add_interval_moves_by_calendar_months_and_clamps_the_day():
    assert add_interval(unix(2024, 1, 31), "month") == unix(2024, 2, 29)
    assert add_interval(unix(2024, 11, 30), "month", 3) == unix(2025, 2, 28)
    assert add_interval(unix(2024, 2, 29), "year") == unix(2025, 2, 28)
    assert add_interval(unix(2024, 1, 1), "week", 2) == unix(2024, 1, 15)
    assert add_interval(unix(2024, 3, 31), "month", -1) == unix(2024, 2, 29)
    assert add_interval(unix(2024, 1, 15), "year", -2) == unix(2022, 1, 15)


def test_a_wrong_or_missing_key_is_401_with_a_stripe_error(fake):
    for key in ("sk_wrong", ""):
        response = get(fake, "/v1/customers", key=key)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "invalid_request_error"


def test_lists_page_newest_first_with_starting_after(fake, model):
    ids = [model.add_customer(f"C{n}", f"c{n}@example.com", created=BASE_TIME + n) for n in range(5)]
    first = get(fake, "/v1/customers", limit=2).json()
    assert (first["object"], [c["id"] for c in first["data"]], first["has_more"]) == (
        "list", [ids[4], ids[3]], True)
    last = get(fake, "/v1/customers", limit=3, starting_after=ids[3]).json()
    assert ([c["id"] for c in last["data"]], last["has_more"]) == ([ids[2], ids[1], ids[0]], False)


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"limit": "ten"},
                                    {"starting_after": "cus_unknown"}])
def test_bad_list_parameters_are_400_naming_the_parameter(fake, model, params):
    model.add_customer("C", "c@example.com")
    response = get(fake, "/v1/customers", **params)
    assert response.status_code == 400
    assert response.json()["error"]["param"] in params


def test_customer_filter_and_cancelled_subscriptions_only_with_status_all(fake, model):
    gold = model.add_price("Gold", 5000)
    ada, bob = model.add_customer("Ada", "ada@example.com"), model.add_customer("Bob", "bob@example.com")
    active = model.subscribe(ada, gold, periods=2)
    cancelled = model.subscribe(ada, gold)
    model.cancel(cancelled)
    model.subscribe(bob, gold)
    assert [s["id"] for s in get(fake, "/v1/subscriptions", customer=ada).json()["data"]] == [active]
    everything = get(fake, "/v1/subscriptions", customer=ada, status="all").json()["data"]
    assert {s["id"]: s["status"] for s in everything} == {active: "active", cancelled: "canceled"}
    invoices = get(fake, "/v1/invoices", customer=ada).json()["data"]
    assert len(invoices) == 3 and {i["customer"] for i in invoices} == {ada}
    assert len(get(fake, "/v1/charges", customer=bob).json()["data"]) == 1


def test_subscription_items_carry_price_and_plan_with_the_interval(fake, model):
    annual = model.add_price("Annual", 99000, interval="year")
    sub = model.subscribe(model.add_customer("Ada", None), annual, quantity=2)
    [item] = get(fake, f"/v1/subscriptions/{sub}").json()["items"]["data"]
    assert item["quantity"] == 2
    assert item["price"]["recurring"] == {"interval": "year", "interval_count": 1}
    assert (item["plan"]["interval"], item["plan"]["interval_count"]) == ("year", 1)


def test_invoices_have_periods_tax_proration_and_a_charge(fake, model):
    gold, platinum = model.add_price("Gold", 5000), model.add_price("Platinum", 9000)
    customer = model.add_customer("Ada", "ada@example.com")
    sub = model.subscribe(customer, gold, tax=1000)
    upgrade = model.change_plan(sub, platinum, at=unix(2024, 1, 16))
    body = get(fake, f"/v1/invoices/{upgrade}").json()
    credit, new = body["lines"]["data"]
    # 16 of January's 31 days remain
    assert (credit["amount"], credit["proration"], credit["price"]["id"]) == (-2581, True, gold)
    assert (new["amount"], new["proration"], new["price"]["id"]) == (4645, True, platinum)
    assert new["period"] == {"start": unix(2024, 1, 16), "end": unix(2024, 2, 1)}
    [first] = [i for i in get(fake, "/v1/invoices", customer=customer).json()["data"] if i["id"] != upgrade]
    assert (first["total"], first["lines"]["data"][0]["tax_amounts"]) == (6000, [{"amount": 1000, "inclusive": False}])
    charge = get(fake, f"/v1/charges/{first['charge']}").json()
    assert (charge["invoice"], charge["amount"], charge["status"]) == (first["id"], 6000, "succeeded")


def test_renewal_after_change_plan_invoices_the_new_price(fake, model):
    gold, platinum = model.add_price("Gold", 5000), model.add_price("Platinum", 9000)
    customer = model.add_customer("Ada", "ada@example.com")
    sub = model.subscribe(customer, gold)
    upgrade = model.change_plan(sub, platinum)
    body = get(fake, f"/v1/invoices/{upgrade}").json()
    assert (body["total"], body["lines"]["data"][0]["period"]["start"]) == (9000, unix(2024, 2, 1))


def test_refunds_are_embedded_in_their_charge_and_listed_by_charge(fake, model):
    customer = model.add_customer("Ada", "ada@example.com")
    invoice_id = model.one_off(customer, 20000, "Consulting", at=BASE_TIME)
    [charge_id] = model.charges_of(invoice_id)
    refund_id = model.refund(charge_id, amount=5000)
    charge = get(fake, f"/v1/charges/{charge_id}").json()
    assert ([r["id"] for r in charge["refunds"]["data"]], charge["amount_refunded"]) == ([refund_id], 5000)
    assert [r["id"] for r in get(fake, "/v1/refunds", charge=charge_id).json()["data"]] == [refund_id]


def test_more_than_ten_lines_are_paged_through_the_lines_endpoint(fake, model):
    customer = model.add_customer("Ada", "ada@example.com")
    invoice_id = model.add_invoice(customer, [{"type": "invoiceitem", "amount": n * 100} for n in range(1, 13)],
                                   created=BASE_TIME)
    embedded = get(fake, f"/v1/invoices/{invoice_id}").json()["lines"]
    assert (len(embedded["data"]), embedded["has_more"]) == (10, True)
    rest = get(fake, f"/v1/invoices/{invoice_id}/lines", limit=5, starting_after=embedded["data"][-1]["id"]).json()
    assert [line["amount"] for line in rest["data"]] == [1100, 1200]


def test_a_deleted_customer_leaves_the_list_and_reads_as_deleted(fake, model):
    gold = model.add_price("Gold", 5000)
    ada = model.add_customer("Ada", "ada@example.com")
    sub = model.subscribe(ada, gold)
    model.delete_customer(ada)
    assert get(fake, "/v1/customers").json()["data"] == []
    assert get(fake, f"/v1/customers/{ada}").json() == {"id": ada, "object": "customer", "deleted": True}
    assert get(fake, f"/v1/subscriptions/{sub}").json()["status"] == "canceled"
    assert get(fake, "/v1/customers/cus_nobody").status_code == 404


def test_malform_serves_one_object_broken_until_repaired(fake, model):
    ada = model.add_customer("Ada", "ada@example.com")
    bob = model.add_customer("Bob", "bob@example.com")
    model.malform(ada, {"created": "yesterday", "email": REMOVE, "address.country": 44})
    served = {c["id"]: c for c in get(fake, "/v1/customers").json()["data"]}
    assert (served[ada]["created"], "email" in served[ada], served[ada]["address"]["country"]) == (
        "yesterday", False, 44)
    assert served[bob]["email"] == "bob@example.com"
    model.repair(ada)
    assert get(fake, f"/v1/customers/{ada}").json()["email"] == "ada@example.com"


def test_fail_next_answers_the_next_requests_with_the_status_and_retry_after(fake):
    fake.fail_next(2, status=429, retry_after=3)
    first, second, third = (get(fake, "/v1/customers") for _ in range(3))
    assert (first.status_code, first.headers["Retry-After"]) == (429, "3")
    assert (second.status_code, third.status_code) == (429, 200)


def test_requests_are_counted_per_path(fake, model):
    ada = model.add_customer("Ada", "ada@example.com")
    get(fake, "/v1/customers")
    get(fake, "/v1/customers", limit=1)
    get(fake, f"/v1/customers/{ada}")
    get(fake, "/v1/customers", key="wrong")
    assert (fake.count("/v1/customers"), fake.count(f"/v1/customers/{ada}"), fake.count()) == (3, 1, 4)
    fake.reset_counts()
    assert fake.count() == 0


def test_go_down_refuses_connections_and_drops_open_ones_until_come_back(fake, model):
    session = requests.Session()  # keeps its connection open across requests
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    assert session.get(fake.url + "/v1/customers", headers=headers, timeout=5).status_code == 200
    fake.go_down()
    with pytest.raises(requests.ConnectionError):
        session.get(fake.url + "/v1/customers", headers=headers, timeout=5)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", fake.port), timeout=2).close()
    fake.come_back()
    assert session.get(fake.url + "/v1/customers", headers=headers, timeout=5).status_code == 200


def test_seed_gives_each_customer_a_subscription_with_its_invoices(model):
    ids = model.seed(customers=30, invoices_each=4)
    assert len(ids) == len(set(ids)) == 30
    assert len(model.invoices) == 120 and len(model.subscriptions) == 30
    assert {len(sub["_invoices"]) for sub in model.subscriptions.values()} == {4}
    assert sum(1 for c in model.charges.values() if c["status"] == "failed") == 3
    assert len(model.refunds) == 4
    assert sum(1 for s in model.subscriptions.values() if s["status"] == "canceled") == 3
    assert max(line["end"] for i in model.invoices.values() for line in i["lines"]) <= SEED_UNTIL
    again = BillingModel()
    again.seed(customers=30, invoices_each=4)
    assert again.render_invoice("in_000077") == model.render_invoice("in_000077")
