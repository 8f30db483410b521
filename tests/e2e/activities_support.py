"""What the activities end-to-end tests share: billing events sent as billing_sync sends them
(docs/events.md), so the feed's handling of each can be tested on its own."""
import uuid

from nameko.standalone.events import event_dispatcher
from tests.e2e.support import unique

def envelope(**fields) -> dict:
    return {"event_id": str(uuid.uuid4()), "occurred_at": "2024-03-01T00:00:00Z", "version": 1, **fields}


def movement_event(customer_uuid: str, *, kind="new_biz", date="2024-03-01T00:00:00Z", change=4900, mrr=4900,
                   currency="USD", description="purchased the Silver Monthly plan", movement_uuid=None) -> dict:
    return envelope(customer_uuid=customer_uuid, movement={
        "uuid": movement_uuid or str(uuid.uuid4()), "type": kind, "date": date, "mrr_movement": change, "mrr": mrr,
        "arr": mrr * 12, "currency": currency, "description": description, "subscription_external_id": "sub-1",
        "plan_external_id": "silver-monthly", "data_source_uuid": "ds_billing", "causes": []})


def transaction_event(customer_uuid: str, *, kind="payment", result="successful", amount=4900,
                      date="2024-03-02T10:00:00Z") -> dict:
    return envelope(customer_uuid=customer_uuid, invoice_uuid=str(uuid.uuid4()), transaction={
        "uuid": str(uuid.uuid4()), "external_id": unique("tr"), "type": kind, "result": result, "date": date,
        "amount_in_cents": amount, "currency": "USD"})


class Billing:
    """Publishes billing_sync events on the platform's broker, as billing_sync's outbox relay will."""

    def __init__(self, amqp_uri: str):
        self.dispatch = event_dispatcher({"AMQP_URI": amqp_uri})

    def send(self, event_type: str, payload: dict) -> dict:
        self.dispatch("billing_sync", event_type, payload)
        return payload


def feed(http, customer_uuid: str, **params) -> list[dict]:
    """Every entry of a customer's feed, newest first (all pages)."""
    entries, cursor = [], None
    while True:
        response = http.get(f"/v1/customers/{customer_uuid}/feed", params={**params, "cursor": cursor})
        assert response.status_code == 200, response.text
        page = response.json()
        entries += page["entries"]
        cursor = page["cursor"]
        if not page["has_more"]:
            return entries
