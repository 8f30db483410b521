"""The feed fed by other services' events, end to end: billing_sync's MRR movements and
transactions (sent here as billing_sync will send them), customers' merges and deletions,
`activity_recorded` for outside subscribers, and no fact lost or doubled across a restart of
the activities service or a redelivery of every event."""
import time
from collections import Counter

import chartmogul
import pytest
from kombu import Connection, Exchange, Queue

from tests.e2e.activities_support import Billing, envelope, feed, movement_event, transaction_event
from tests.e2e.support import eventually, unique


@pytest.fixture(scope="module")
def data_source(owner):
    return chartmogul.DataSource.create(owner, data={"name": unique("feed-e2e")}).get()


@pytest.fixture(scope="module")
def billing(amqp_uri):
    return Billing(amqp_uri)


@pytest.fixture
def new_customer(owner, data_source):
    def make(**fields):
        data = {"data_source_uuid": data_source.uuid, "external_id": unique("cus"), "name": unique("Acme"), **fields}
        return chartmogul.Customer.create(owner, data=data).get()

    return make


class EventTap:
    """An exclusive queue bound to every event of the given services' exchanges."""

    def __init__(self, amqp_uri: str, *services: str):
        self.connection = Connection(amqp_uri)
        channel = self.connection.channel()
        self.queue = Queue(unique("test-activities-tap"), exclusive=True, auto_delete=True, durable=False)(channel)
        self.queue.declare()
        for service in services:
            exchange = Exchange(f"{service}.events", type="topic", durable=True)(channel)
            exchange.declare()
            self.queue.bind_to(exchange=exchange, routing_key="#")
        self.events: list[tuple[str, str, dict]] = []  # (exchange, routing key, payload)

    def drain(self) -> list[tuple[str, str, dict]]:
        while True:
            message = self.queue.get(no_ack=True)
            if message is None:
                return self.events
            info = message.delivery_info
            self.events.append((info["exchange"], info["routing_key"], message.payload))

    def close(self):
        self.connection.release()


@pytest.fixture
def tap(amqp_uri):
    listener = EventTap(amqp_uri, "activities", "customers", "contacts")
    yield listener
    listener.close()


def kinds(http, customer_uuid, **params) -> list[str]:
    return [entry["kind"] for entry in feed(http, customer_uuid, **params)]


# ---- billing events -----------------------------------------------------------------------------

def test_mrr_movements_and_transactions_reach_the_feed_and_the_activity_lists(owner, http, billing, new_customer):
    customer = new_customer(name="Movers Inc")
    sent = [
        billing.send("mrr_movement_recorded", movement_event(customer.uuid, date="2024-03-01T00:00:00Z")),
        billing.send("mrr_movement_recorded", movement_event(
            customer.uuid, kind="expansion", date="2024-04-01T00:00:00Z", change=2000, mrr=6900,
            description="upgraded to Gold")),
        billing.send("mrr_movement_recorded", movement_event(
            customer.uuid, kind="churn", date="2024-05-01T00:00:00Z", change=-6900, mrr=0, description="cancelled")),
    ]
    billing.send("transaction_recorded", transaction_event(customer.uuid, date="2024-03-01T10:00:00Z"))
    billing.send("transaction_recorded", transaction_event(customer.uuid, kind="refund", amount=1000,
                                                           date="2024-03-05T10:00:00Z"))

    eventually(lambda: len(feed(http, customer.uuid, types="mrr_movement,transaction")) == 5)
    lines = [(e["type"], e["description"]) for e in feed(http, customer.uuid, types="mrr_movement,transaction")]
    assert lines == [
        ("mrr_movement", "Churn: cancelled (-$69.00 MRR)"),
        ("mrr_movement", "Expansion: upgraded to Gold (+$20.00 MRR)"),
        ("transaction", "Refund of $10.00 succeeded"),
        ("transaction", "Payment of $49.00 succeeded"),
        ("mrr_movement", "New business: purchased the Silver Monthly plan (+$49.00 MRR)"),
    ]

    mine = chartmogul.CustomerActivity.all(owner, uuid=customer.uuid).get()
    assert [a.type for a in mine.entries] == ["churn", "expansion", "new_biz"] and mine.has_more is False
    newest = mine.entries[0]
    assert (newest.activity_mrr_movement, newest.activity_mrr, newest.activity_arr) == (-6900, 0, 0)
    assert (newest.currency, newest.currency_sign, newest.subscription_external_id) == ("USD", "$", "sub-1")
    assert isinstance(newest.id, int) and newest.date.year == 2024
    paged = chartmogul.CustomerActivity.all(owner, uuid=customer.uuid, per_page=2).get()
    assert len(paged.entries) == 2 and paged.has_more is True and paged.cursor

    found = chartmogul.Activity.all(owner, start_date="2024-03-15", end_date="2024-04-30", order="date").get()
    ours = [a for a in found.entries if a.customer_uuid == customer.uuid]
    assert [a.uuid for a in ours] == [sent[1]["movement"]["uuid"]]
    assert (ours[0].customer_name, ours[0].customer_external_id) == ("Movers Inc", customer.external_id)
    assert (ours[0].plan_external_id, ours[0].billing_connector_uuid) == ("silver-monthly", "ds_billing")
    churned = chartmogul.Activity.all(owner, type="churn", per_page=200).get()
    assert sent[2]["movement"]["uuid"] in [a.uuid for a in churned.entries]
    assert all(a.type == "churn" for a in churned.entries)
    bad = http.get("/v1/activities", params={"type": "upsell"})
    assert (bad.status_code, bad.json()["param"]) == (400, "type")

    billing.send("mrr_movement_retracted", envelope(customer_uuid=customer.uuid,
                                                    movement_uuid=sent[2]["movement"]["uuid"]))
    eventually(lambda: kinds(http, customer.uuid, types="mrr_movement") == ["expansion", "new_biz"])
    assert [a.type for a in chartmogul.CustomerActivity.all(owner, uuid=customer.uuid).get().entries] == \
        ["expansion", "new_biz"]


# ---- merges and deletions -----------------------------------------------------------------------

def test_a_merge_moves_the_feed_and_engagement_to_the_survivor_and_a_delete_deletes(owner, http, billing,
                                                                                   new_customer):
    survivor, merged, doomed = new_customer(name="Survivor"), new_customer(name="Merged"), new_customer()
    note = chartmogul.Customer.createEntityNote(owner, uuid=merged.uuid, data={"type": "note", "text": "x"}).get()
    task = chartmogul.Customer.createTask(owner, uuid=merged.uuid, data={
        "task_details": "Follow up", "assignee": "sam@us.example", "due_date": "2025-01-01"}).get()
    billing.send("mrr_movement_recorded", movement_event(merged.uuid))
    doomed_note = chartmogul.Customer.createEntityNote(owner, uuid=doomed.uuid, data={"type": "note"}).get()
    eventually(lambda: "new_biz" in kinds(http, merged.uuid))

    chartmogul.Customer.merge(owner, data={"from": {"customer_uuid": merged.uuid},
                                           "into": {"customer_uuid": survivor.uuid}}).get()
    chartmogul.Customer.destroy(owner, uuid=doomed.uuid).get()

    # the merged customer's creation may be handled after its merge: it lands on the survivor too
    eventually(lambda: Counter(kinds(http, survivor.uuid)) == Counter(
        {"customer_created": 2, "customer_merged": 1, "note": 1, "new_biz": 1}))
    merged_line = next(e for e in feed(http, survivor.uuid) if e["kind"] == "customer_merged")
    assert merged_line["description"] == "Customer merged: Merged was merged into this customer"
    assert [n.uuid for n in chartmogul.Customer.entityNotes(owner, uuid=survivor.uuid).get().entries] == [note.uuid]
    assert chartmogul.Task.retrieve(owner, uuid=task.task_uuid).get().customer_uuid == survivor.uuid
    assert [a.type for a in chartmogul.CustomerActivity.all(owner, uuid=survivor.uuid).get().entries] == ["new_biz"]

    eventually(lambda: http.get(f"/v1/notes/{doomed_note.uuid}").status_code == 404)
    assert http.get(f"/v1/customers/{doomed.uuid}/feed").status_code == 404
    assert http.get("/v1/notes", params={"customer_uuid": doomed.uuid}).json()["entries"] == []
    # A fact about the merged-away customer that arrives later still lands on the survivor.
    billing.send("transaction_recorded", transaction_event(merged.uuid))
    eventually(lambda: kinds(http, survivor.uuid, types="transaction") == ["payment"])


# ---- activity_recorded --------------------------------------------------------------------------

def test_every_new_feed_entry_is_announced_as_activity_recorded(http, tap, new_customer):
    customer = new_customer()
    note = http.post("/v1/notes", json={"customer_uuid": customer.uuid, "type": "call", "call_duration": 120,
                                        "text": "Pricing"}).json()

    def announced():
        return [payload for exchange, key, payload in tap.drain()
                if exchange == "activities.events" and key == "activity_recorded"
                and payload["customer_uuid"] == customer.uuid]

    events = eventually(lambda: len(announced()) >= 2 and announced())
    by_kind = {event["activity"]["kind"]: event for event in events}
    assert set(by_kind) == {"customer_created", "call"}
    call = by_kind["call"]
    assert call["version"] == 1 and call["event_id"] and call["occurred_at"]
    assert call["activity"]["source_id"] == note["uuid"] and call["activity"]["type"] == "call"
    assert call["activity"]["description"] == "Call of 2 min: Pricing"
    [entry] = [e for e in feed(http, customer.uuid) if e["kind"] == "call"]
    assert call["activity"]["uuid"] == entry["uuid"] and call["activity"]["date"] == entry["date"]


# ---- restart and redelivery ---------------------------------------------------------------------

CUSTOMERS = 50
EXPECTED_KINDS = Counter({"customer_created": 1, "contact_created": 1, "new_biz": 1, "payment": 1})


def test_facts_published_while_activities_is_down_appear_once_and_a_redelivery_changes_nothing(
        stack, http, billing, tap, data_source):
    stack.stop_service("activities")
    try:
        customers = []
        for n in range(CUSTOMERS):
            response = http.post("/v1/customers", json={
                "data_source_uuid": data_source.uuid, "external_id": unique("down"), "name": f"Down {n}",
                "primary_contact": {"first_name": "Pat", "email": f"pat{n}@down.example"}})
            assert response.status_code == 201, response.text
            customers.append(response.json()["uuid"])
        billing_events = []
        for uuid in customers:
            billing_events.append(("mrr_movement_recorded", billing.send("mrr_movement_recorded", movement_event(uuid))))
            billing_events.append(("transaction_recorded", billing.send("transaction_recorded", transaction_event(uuid))))
        time.sleep(1)
    finally:
        stack.start_service("activities")
        stack.wait_ready(timeout=60)

    def complete():
        return all(Counter(kinds(http, uuid)) == EXPECTED_KINDS for uuid in customers)

    eventually(complete, timeout=90, interval=1)
    before = {uuid: feed(http, uuid) for uuid in customers}
    upstream = [(exchange.removesuffix(".events"), key, payload) for exchange, key, payload in tap.drain()
                if exchange in ("customers.events", "contacts.events")
                and key in ("customer_created", "contact_created")]
    assert len(upstream) == 2 * CUSTOMERS
    announced = [payload for exchange, key, payload in tap.events
                 if exchange == "activities.events" and payload.get("customer_uuid") in set(customers)]
    assert len(announced) == 4 * CUSTOMERS  # one activity_recorded per fact

    # Every event again, with the same event ids; then one new fact per queue, to know they were all read.
    for service, key, payload in upstream:
        billing.dispatch(service, key, payload)
    for key, payload in billing_events:
        billing.send(key, payload)
    sentinel = customers[0]
    billing.send("mrr_movement_recorded", movement_event(sentinel, kind="expansion", change=100, mrr=5000))
    billing.send("transaction_recorded", transaction_event(sentinel, kind="refund", amount=100))
    late = http.post("/v1/customers", json={"data_source_uuid": data_source.uuid, "external_id": unique("late"),
                                            "primary_contact": {"first_name": "Lee"}}).json()["uuid"]
    eventually(lambda: {"expansion", "refund"} <= set(kinds(http, sentinel)))
    eventually(lambda: Counter(kinds(http, late)) == Counter({"customer_created": 1, "contact_created": 1}))
    time.sleep(2)  # room for a straggler to show up

    after = {uuid: feed(http, uuid) for uuid in customers[1:]}
    assert after == {uuid: before[uuid] for uuid in customers[1:]}
    assert Counter(kinds(http, sentinel)) == EXPECTED_KINDS + Counter({"expansion": 1, "refund": 1})
