"""The activities service's event handlers in a real container on the real broker and database,
fed with events dispatched by nameko's event_dispatcher in the payload shapes of the contracts
(billing_sync is built in parallel): applied once however often they are delivered, out of order
tolerated, and a malformed event dead-lettered at once without holding up the next one."""
import json
import time
import uuid

import eventlet
import pytest
from kombu import Connection
from nameko.containers import ServiceContainer
from nameko.standalone.events import event_dispatcher
from nameko.standalone.rpc import ClusterRpcProxy

from roster.events import envelope
from services.activities.service import ActivitiesService


def dead_letters(amqp_uri) -> list:
    with Connection(amqp_uri) as connection:
        channel = connection.default_channel
        found = []
        while (message := channel.basic_get("dead_letters.activities", no_ack=True)) is not None:
            found.append(message)
        return found


@pytest.fixture()
def activities(amqp_uri, own_database):
    container = ServiceContainer(ActivitiesService, {"AMQP_URI": amqp_uri})
    container.start()
    dead_letters(amqp_uri)  # start from an empty dead-letter queue
    yield container
    container.stop()


@pytest.fixture()
def send(amqp_uri):
    dispatch = event_dispatcher({"AMQP_URI": amqp_uri})

    def publish(service: str, event_type: str, payload: dict) -> dict:
        dispatch(service, event_type, payload)
        return payload

    return publish


@pytest.fixture()
def rpc(amqp_uri):
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=10) as cluster:
        yield cluster.activities


def wait_for(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        eventlet.sleep(0.1)
    return value


def movement(customer_uuid, *, movement_uuid=None, kind="new_biz", change=4900, date="2024-03-01"):
    return envelope(customer_uuid=customer_uuid, movement={
        "uuid": movement_uuid or str(uuid.uuid4()), "type": kind, "date": date, "mrr_movement": change,
        "mrr": max(change, 0), "arr": max(change, 0) * 12, "currency": "USD", "description": "plan change",
        "subscription_external_id": "sub", "plan_external_id": "plan", "data_source_uuid": "ds", "causes": []})


def transaction(customer_uuid, *, amount=4900):
    return envelope(customer_uuid=customer_uuid, invoice_uuid="inv", transaction={
        "uuid": str(uuid.uuid4()), "external_id": "t", "type": "payment", "result": "successful",
        "date": "2024-03-02T00:00:00Z", "amount_in_cents": amount, "currency": "USD"})


def kinds(rpc, customer_uuid) -> list[str]:
    return [entry["kind"] for entry in rpc.feed(customer_uuid)["entries"]]


def test_billing_events_are_applied_once_however_often_they_arrive(activities, send, rpc):
    first = send("billing_sync", "mrr_movement_recorded", movement("cus_a", date="2024-03-01"))
    paid = send("billing_sync", "transaction_recorded", transaction("cus_a"))
    for _ in range(3):  # redeliveries: the same event ids
        send("billing_sync", "mrr_movement_recorded", first)
        send("billing_sync", "transaction_recorded", paid)
    send("billing_sync", "mrr_movement_recorded", {**first, "event_id": str(uuid.uuid4())})  # same fact, new id
    retracted = str(uuid.uuid4())
    send("billing_sync", "mrr_movement_retracted", envelope(customer_uuid="cus_a", movement_uuid=retracted))
    send("billing_sync", "mrr_movement_recorded", movement("cus_a", movement_uuid=retracted, date="2024-04-01"))
    send("billing_sync", "mrr_movement_recorded", movement("cus_a", kind="expansion", change=100,
                                                           date="2024-05-01"))  # the last one sent

    wait_for(lambda: "expansion" in kinds(rpc, "cus_a"))
    eventlet.sleep(1)
    assert kinds(rpc, "cus_a") == ["expansion", "payment", "new_biz"]
    assert [a["type"] for a in rpc.customer_activities("cus_a")["entries"]] == ["expansion", "new_biz"]


def test_customers_events_move_and_delete_what_the_feed_holds(activities, send, rpc):
    for customer_uuid, name in (("cus_keep", "Keep"), ("cus_gone", "Gone"), ("cus_dead", "Dead")):
        send("customers", "customer_created", envelope(customer={
            "uuid": customer_uuid, "name": name, "external_id": f"x-{name}", "created_at": "2024-01-01T00:00:00Z"}))
        send("billing_sync", "mrr_movement_recorded", movement(customer_uuid))
    wait_for(lambda: all(kinds(rpc, c) == ["new_biz", "customer_created"] for c in ("cus_keep", "cus_gone",
                                                                                   "cus_dead")))

    send("customers", "customer_merged", envelope(from_uuid="cus_gone", into_uuid="cus_keep",
                                                  into_external_id="x-Keep", moved_external_ids=[]))
    send("customers", "customer_deleted", envelope(uuid="cus_dead", external_ids=["x-Dead"], data_source_uuids=[]))
    send("contacts", "contact_created", envelope(uuid="con_1", customer_uuid="cus_gone", contact={
        "uuid": "con_1", "customer_uuid": "cus_gone", "first_name": "Pat", "created_at": "2024-06-01T00:00:00Z"}))

    wait_for(lambda: "contact_created" in kinds(rpc, "cus_keep") and "customer_merged" in kinds(rpc, "cus_keep")
             and rpc.feed("cus_dead")["entries"] == [])
    assert sorted(kinds(rpc, "cus_keep")) == ["contact_created", "customer_created", "customer_created",
                                              "customer_merged", "new_biz", "new_biz"]
    assert rpc.feed("cus_gone")["entries"] == []
    names = {a["customer_uuid"]: a["customer_name"] for a in rpc.list_activities({})["entries"]}
    assert names == {"cus_keep": "Keep"}


def test_a_malformed_event_is_dead_lettered_at_once_and_the_next_one_applies(activities, send, rpc, amqp_uri):
    bad = send("billing_sync", "mrr_movement_recorded", movement("cus_b", kind="upsell"))
    send("billing_sync", "mrr_movement_recorded", movement("cus_b"))

    wait_for(lambda: kinds(rpc, "cus_b") == ["new_biz"])
    [letter] = wait_for(lambda: dead_letters(amqp_uri))
    assert json.loads(letter.body)["event_id"] == bad["event_id"]
    assert letter.headers["x-roster-attempts"] == 1
    assert "movement.type" in letter.headers["x-roster-error"]


def test_retractions_and_deletions_racing_the_facts_they_undo_win_on_every_database(activities, send, rpc):
    """Each pair goes out at once on two queues, so the handlers run side by side (on PostgreSQL
    in concurrent transactions): the movement and customer locks must order them."""
    pairs = 25
    for n in range(pairs):
        retracted = str(uuid.uuid4())
        send("billing_sync", "mrr_movement_retracted", envelope(customer_uuid="cus_race", movement_uuid=retracted))
        send("billing_sync", "mrr_movement_recorded", movement("cus_race", movement_uuid=retracted))
        send("billing_sync", "mrr_movement_recorded", movement(f"cus_doomed_{n}"))
        send("customers", "customer_deleted", envelope(uuid=f"cus_doomed_{n}", external_ids=[], data_source_uuids=[]))
        send("billing_sync", "transaction_recorded", transaction(f"cus_doomed_{n}"))
    send("billing_sync", "mrr_movement_recorded", movement("cus_race", kind="expansion", date="2024-09-01"))
    send("billing_sync", "transaction_recorded", transaction("cus_race"))

    wait_for(lambda: {"expansion", "payment"} <= set(kinds(rpc, "cus_race")))
    eventlet.sleep(1.5)
    assert kinds(rpc, "cus_race") == ["expansion", "payment"]
    assert all(rpc.feed(f"cus_doomed_{n}")["entries"] == [] for n in range(pairs))
    assert {a["customer_uuid"] for a in rpc.list_activities({})["entries"]} == {"cus_race"}
