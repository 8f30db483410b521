"""An outside service subscribes to billing_sync's events from docs/events.md alone."""
import uuid

import eventlet
import pytest
from eventlet.queue import Queue
from nameko.containers import ServiceContainer
from nameko.events import event_handler

received: Queue = Queue()
NAMES = ("invoice_imported", "transaction_recorded", "mrr_movement_recorded", "mrr_movement_retracted",
         "customer_metrics_changed")


def _handler(name):
    @event_handler("billing_sync", name)
    def handle(self, payload):
        received.put((name, payload))
    return handle


OutsideBillingSubscriber = type("OutsideBillingSubscriber", (), {
    "name": "outside_billing_subscriber", **{f"on_{name}": _handler(name) for name in NAMES}})


@pytest.fixture()
def subscriber(amqp_uri):
    container = ServiceContainer(OutsideBillingSubscriber, {"AMQP_URI": amqp_uri})
    container.start()
    while not received.empty():
        received.get_nowait()
    yield received
    container.stop()


def collect(queue: Queue, customer_uuid: str, wanted: dict, timeout: float = 15) -> dict:
    """Return {event name: [payloads]} of this customer once `wanted` counts have arrived."""
    found = {name: [] for name in NAMES}
    with eventlet.Timeout(timeout):
        while any(len(found[name]) < count for name, count in wanted.items()):
            name, payload = queue.get()
            if payload.get("customer_uuid") == customer_uuid:
                found[name].append(payload)
    return found


def test_billing_events_reach_an_outside_subscriber(subscriber, http):
    source = http.post("/v1/data_sources", json={"name": "Billing events"}).json()["uuid"]
    plan = http.post("/v1/plans", json={"data_source_uuid": source, "name": "Silver Monthly", "interval_count": 1,
                                        "interval_unit": "month"}).json()
    customer = http.post("/v1/customers", json={"data_source_uuid": source, "external_id": uuid.uuid4().hex,
                                                "name": "Evented"}).json()["uuid"]

    def paid_invoice(external_id, start, end, amount, sub):
        return {"external_id": external_id, "date": start, "currency": "USD",
                "line_items": [{"type": "subscription", "subscription_external_id": sub, "plan_uuid": plan["uuid"],
                                "service_period_start": start, "service_period_end": end,
                                "amount_in_cents": amount, "external_id": f"{external_id}-line"}],
                "transactions": [{"date": start, "type": "payment", "result": "successful"}]}

    path = f"/v1/import/customers/{customer}/invoices"
    assert http.post(path, json={"invoices": [paid_invoice("e1", "2020-03-01", "2020-04-01", 5000, "s1")]}) \
        .status_code == 201
    assert http.post(path, json={"invoices": [paid_invoice("e0", "2020-03-01", "2020-04-01", 1000, "s0")]}) \
        .status_code == 201  # same instant as the new_biz: it is retracted and recorded again

    found = collect(subscriber, customer, {"invoice_imported": 2, "transaction_recorded": 2,
                                           "mrr_movement_recorded": 2, "mrr_movement_retracted": 1,
                                           "customer_metrics_changed": 2})

    for payloads in found.values():
        for payload in payloads:
            uuid.UUID(payload["event_id"])
            assert payload["version"] == 1 and payload["occurred_at"].endswith("Z")
    first, second = found["mrr_movement_recorded"][:2]
    assert found["mrr_movement_retracted"][0]["movement_uuid"] == first["movement"]["uuid"]
    assert (second["movement"]["type"], second["movement"]["mrr_movement"], second["movement"]["arr"]) == \
        ("new_biz", 6000, 72000)
    assert {c["line_item_external_id"] for c in second["movement"]["causes"]} == {"e1-line", "e0-line"}
    figures = found["customer_metrics_changed"]
    assert [f["sequence"] for f in figures] == [1, 2]
    assert (figures[1]["mrr"], figures[1]["arr"], figures[1]["status"], figures[1]["net_payments"]) == \
        (6000, 72000, "Active", 6000)
    assert found["invoice_imported"][0]["invoice"]["total_in_cents"] == 5000
    assert found["transaction_recorded"][0]["transaction"]["amount_in_cents"] == 5000
