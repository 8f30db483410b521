"""The Stripe connector against the fake billing API over real HTTP: paging, retries, errors, bundles."""
import logging

import pytest

from services.billing_sync.connectors.errors import (
    MalformedObject,
    UpstreamNotFound,
    UpstreamRejected,
    UpstreamUnavailable,
)
from services.billing_sync.connectors.shapes import with_plan_uuids
from services.billing_sync.connectors.stripe import (
    StripeClient,
    fetch_customer_bundle,
    iter_customer_ids,
    map_bundle,
)
from tools.fake_billing import BASE_TIME, REMOVE, BillingModel, FakeBilling, unix

FAST = {"backoff": 0.01, "timeout": (2, 5)}  # short waits: these tests count retries, not seconds


@pytest.fixture()
def model():
    return BillingModel()


@pytest.fixture()
def fake(model):
    with FakeBilling(model) as server:
        yield server


@pytest.fixture()
def client(fake):
    client = StripeClient(fake.url, fake.api_key, **FAST)
    yield client
    client.close()


def add_customers(model, n):
    return [model.add_customer(f"Customer {i}", f"c{i}@example.com", created=BASE_TIME + i) for i in range(n)]


# -- the client ---------------------------------------------------------------------------------
def test_iter_list_follows_starting_after_across_pages(fake, model, client):
    ids = add_customers(model, 25)
    assert list(obj["id"] for obj in client.iter_list("/v1/customers", limit=10)) == ids[::-1]
    assert fake.count("/v1/customers") == 3
    assert [query.get("starting_after") for _, query in fake.request_log] == [None, ids[15], ids[5]]


def test_iter_customer_ids_pages_by_a_hundred(fake, model, client):
    ids = add_customers(model, 250)
    assert sorted(iter_customer_ids(client)) == sorted(ids)
    assert fake.count("/v1/customers") == 3


def test_the_key_goes_in_the_authorization_header_and_a_wrong_key_is_rejected_once(fake, model):
    [ada] = add_customers(model, 1)
    assert StripeClient(fake.url, fake.api_key, **FAST).get(f"/v1/customers/{ada}")["id"] == ada
    with pytest.raises(UpstreamRejected) as exc_info:
        StripeClient(fake.url, "sk_wrong", **FAST).get("/v1/customers")
    assert exc_info.value.status == 401
    assert "Invalid API Key" in str(exc_info.value)
    assert fake.count("/v1/customers") == 1  # a 4xx is not retried


def test_an_unknown_object_is_upstream_not_found(client):
    with pytest.raises(UpstreamNotFound) as exc_info:
        client.get("/v1/customers/cus_nobody")
    assert exc_info.value.status == 404


def test_429_with_retry_after_is_waited_out_then_succeeds(fake, model, client, caplog):
    [ada] = add_customers(model, 1)
    fake.fail_next(1, status=429, retry_after=1)
    with caplog.at_level(logging.WARNING, logger="services.billing_sync.connectors.stripe"):
        assert client.get(f"/v1/customers/{ada}")["id"] == ada
    assert fake.count(f"/v1/customers/{ada}") == 2
    [waited] = caplog.messages
    assert "HTTP 429" in waited and "in 1.00s (Retry-After)" in waited


def test_500s_are_retried_with_backoff_until_one_succeeds(fake, model, client, caplog):
    [ada] = add_customers(model, 1)
    fake.fail_next(3, status=500)
    with caplog.at_level(logging.WARNING, logger="services.billing_sync.connectors.stripe"):
        assert client.get(f"/v1/customers/{ada}")["id"] == ada
    assert fake.count() == 4
    # urllib3's schedule: the first retry at once, then backoff × 2^n
    assert [m.split(" in ")[1] for m in caplog.messages] == ["0.00s (backoff)", "0.02s (backoff)",
                                                              "0.04s (backoff)"]


def test_500s_until_the_retries_run_out_are_upstream_unavailable_with_the_reason(fake, model):
    fake.fail_next(10, status=503)
    client = StripeClient(fake.url, fake.api_key, max_retries=2, **FAST)
    with pytest.raises(UpstreamUnavailable) as exc_info:
        client.get("/v1/customers")
    assert fake.count() == 3
    assert exc_info.value.reason == "GET /v1/customers: HTTP 503 after 2 retries: Injected failure (503)"


def test_a_failure_in_the_middle_of_paging_is_retried_and_paging_goes_on(fake, model, client):
    ids = add_customers(model, 5)
    pages = client.iter_list("/v1/customers", limit=2)
    assert [next(pages)["id"], next(pages)["id"]] == [ids[4], ids[3]]
    fake.fail_next(2, status=502)
    assert [obj["id"] for obj in pages] == [ids[2], ids[1], ids[0]]


def test_latency_below_the_timeout_is_only_slower(fake, model, client):
    add_customers(model, 3)
    fake.latency = 0.02
    assert len(list(client.iter_list("/v1/customers", limit=1))) == 3


def test_latency_beyond_the_read_timeout_is_retried_then_upstream_unavailable(fake, model):
    fake.latency = 0.5
    client = StripeClient(fake.url, fake.api_key, timeout=(1, 0.1), max_retries=1, backoff=0.01)
    with pytest.raises(UpstreamUnavailable) as exc_info:
        client.get("/v1/customers")
    assert "timed out" in exc_info.value.reason and "after 1 retries" in exc_info.value.reason
    assert fake.count() == 2


def test_api_down_is_upstream_unavailable_and_the_same_client_recovers(fake, model, client):
    [ada] = add_customers(model, 1)
    assert client.get(f"/v1/customers/{ada}")["id"] == ada  # leaves a pooled connection open
    fake.go_down()
    with pytest.raises(UpstreamUnavailable) as exc_info:
        client.get(f"/v1/customers/{ada}")
    assert "Failed to establish a new connection" in exc_info.value.reason  # refused: nobody listens
    fake.come_back()
    assert client.get(f"/v1/customers/{ada}")["id"] == ada


def test_a_body_that_is_not_json_is_a_malformed_object(fake, client):
    fake.fail_next(1, status=200, body=b"<html>maintenance</html>")
    with pytest.raises(MalformedObject) as exc_info:
        client.get("/v1/customers")
    assert (exc_info.value.object_id, exc_info.value.field) == ("/v1/customers", "body")


# -- bundles ----------------------------------------------------------------------------------
@pytest.fixture()
def ada(model):
    """A customer two months into Gold, one cancelled Bronze, a refunded one-off and a 12-line invoice."""
    gold, bronze = model.add_price("Gold", 5000, id="price_gold"), model.add_price("Bronze", 1000)
    customer = model.add_customer("Ada Lovelace", "ada@example.com", country="GB", city="London",
                                  metadata={"company": "Engines Ltd"})
    model.subscribe(customer, gold, periods=2, tax=500)
    model.cancel(model.subscribe(customer, bronze, start=unix(2024, 1, 10)))
    model.refund(model.charges_of(model.one_off(customer, 20000, "Setup", at=unix(2024, 1, 5)))[0], amount=5000)
    model.add_invoice(customer, [{"type": "invoiceitem", "amount": 100, "description": f"Extra {n}"}
                                 for n in range(12)], created=unix(2024, 1, 20))
    return customer


def test_fetch_customer_bundle_gets_everything_in_five_requests(fake, model, client, ada):
    bundle = fetch_customer_bundle(client, ada)
    assert bundle.customer["id"] == ada and not bundle.deleted
    assert sorted(s["status"] for s in bundle.subscriptions) == ["active", "canceled"]
    assert len(bundle.invoices) == 5 and len(bundle.charges) == 5 and len(bundle.refunds) == 1
    [long_invoice] = [i for i in bundle.invoices if len(i["lines"]["data"]) > 1]
    assert (len(long_invoice["lines"]["data"]), long_invoice["lines"]["has_more"]) == (12, False)
    assert dict(fake.request_counts) == {
        f"/v1/customers/{ada}": 1, "/v1/subscriptions": 1, "/v1/invoices": 1, "/v1/charges": 1,
        f"/v1/invoices/{long_invoice['id']}/lines": 1}


def test_a_fetched_bundle_maps_to_import_shapes(client, ada):
    mapped = map_bundle(fetch_customer_bundle(client, ada), dashboard_url="http://billing.local")
    assert mapped.errors == []
    assert (mapped.customer["external_id"], mapped.customer["company"], mapped.customer["country"]) == (
        ada, "Engines Ltd", "GB")
    assert mapped.customer["billing_system_url"] == f"http://billing.local/customers/{ada}"
    assert [c["email"] for c in mapped.contacts] == ["ada@example.com"]
    assert sorted(p["name"] for p in mapped.plans) == ["Bronze", "Gold"]
    assert [i["date"][:10] for i in mapped.invoices] == ["2024-01-01", "2024-01-05", "2024-01-10", "2024-01-20",
                                                         "2024-02-01"]
    gold_january = mapped.invoices[0]["line_items"][0]
    assert (gold_january["amount_in_cents"], gold_january["tax_amount_in_cents"]) == (5500, 500)
    setup = mapped.invoices[1]
    assert [(t["type"], t["amount_in_cents"]) for t in setup["transactions"]] == [("payment", 20000),
                                                                                  ("refund", 5000)]
    bronze = mapped.invoices[2]["line_items"][0]
    assert bronze["cancelled_at"] == "2024-02-10T00:00:00Z"
    resolved = with_plan_uuids(mapped.invoices[0], {p["external_id"]: f"pl_{p['name']}" for p in mapped.plans})
    assert resolved["line_items"][0]["plan_uuid"] == "pl_Gold"


def test_an_upgrade_shows_as_a_new_invoice_with_a_higher_amount(model, client, ada):
    platinum = model.add_price("Platinum", 9000)
    [gold_sub] = [s for s in model.subscriptions.values() if s["price"] == "price_gold"]
    model.change_plan(gold_sub["id"], platinum)
    latest = map_bundle(fetch_customer_bundle(client, ada)).invoices[-1]
    assert (latest["date"][:10], latest["line_items"][0]["amount_in_cents"]) == ("2024-03-01", 9500)


def test_a_malformed_invoice_fails_alone(model, client, ada):
    [second_gold] = [i for i in model.invoices.values() if i["created"] == unix(2024, 2, 1)]
    model.malform(second_gold["id"], {"lines.data.0.period": REMOVE})
    mapped = map_bundle(fetch_customer_bundle(client, ada))
    assert [(e.object_id, e.field, e.reason) for e in mapped.errors] == [
        (second_gold["id"], "lines.data[0].period", "missing")]
    assert len(mapped.invoices) == 4


def test_a_malformed_customer_fails_alone_in_a_full_sync(model, client):
    good, bad = add_customers(model, 2)
    model.malform(bad, {"created": "last tuesday"})
    outcomes = {}
    for customer_id in iter_customer_ids(client):
        mapped = map_bundle(fetch_customer_bundle(client, customer_id))
        outcomes[customer_id] = [str(e) for e in mapped.errors] or "ok"
    assert outcomes == {good: "ok", bad: [f"{bad}: created: must be an integer, not a string"]}


def test_a_customer_deleted_upstream_comes_back_deleted_in_one_request(fake, model, client, ada):
    model.delete_customer(ada)
    bundle = fetch_customer_bundle(client, ada)
    assert bundle.deleted and map_bundle(bundle).deleted
    assert fake.count() == 1
    assert list(iter_customer_ids(client)) == []


def test_a_refund_list_too_long_to_embed_is_fetched_per_charge(fake, model, client, ada):
    [charge] = [c for c in model.charges.values() if c["amount"] == 20000]
    model.malform(charge["id"], {"refunds.has_more": True})
    bundle = fetch_customer_bundle(client, ada)
    assert len(bundle.refunds) == 1
    assert fake.count("/v1/refunds") == 1


def test_a_full_sync_of_seeded_data_maps_every_customer_without_errors(fake, model, client):
    ids = model.seed(customers=30, invoices_each=3)
    mapped = [map_bundle(fetch_customer_bundle(client, customer_id)) for customer_id in iter_customer_ids(client)]
    assert sorted(m.customer["external_id"] for m in mapped) == sorted(ids)
    assert [m.errors for m in mapped if m.errors] == []
    assert {len(m.invoices) for m in mapped} == {3}
    transactions = [t for m in mapped for i in m.invoices for t in i["transactions"]]
    assert sum(t["result"] == "failed" for t in transactions) == 3
    assert sum(t["type"] == "refund" for t in transactions) == 4
    assert sum(len(m.cancellations) for m in mapped) == 3
    assert fake.count() == 1 + 4 * 30  # one page of ids, then four requests per customer
