"""An outside service subscribes to the customers service's events from docs/events.md alone."""
import uuid

import eventlet
import pytest
from eventlet.queue import Queue
from nameko.containers import ServiceContainer
from nameko.events import event_handler

received: Queue = Queue()


class OutsideSubscriber:
    """What another team would write: durable nameko event handlers, nothing imported from Roster."""

    name = "outside_subscriber"

    @event_handler("customers", "customer_created")
    def on_created(self, payload):
        received.put(("customer_created", payload))

    @event_handler("customers", "customer_updated")
    def on_updated(self, payload):
        received.put(("customer_updated", payload))

    @event_handler("customers", "customer_merged")
    def on_merged(self, payload):
        received.put(("customer_merged", payload))

    @event_handler("customers", "customer_deleted")
    def on_deleted(self, payload):
        received.put(("customer_deleted", payload))


@pytest.fixture()
def subscriber(amqp_uri):
    container = ServiceContainer(OutsideSubscriber, {"AMQP_URI": amqp_uri})
    container.start()
    while not received.empty():
        received.get_nowait()
    yield received
    container.stop()


def next_event(queue: Queue, name: str, customer_uuid: str, timeout: float = 10) -> dict:
    with eventlet.Timeout(timeout):
        while True:
            event_name, payload = queue.get()
            uuids = {payload.get("uuid"), payload.get("from_uuid"), payload.get("into_uuid"),
                     (payload.get("customer") or {}).get("uuid")}
            if event_name == name and customer_uuid in uuids:
                return payload


def test_customer_events_reach_an_outside_subscriber(subscriber, http):
    source = http.post("/v1/data_sources", json={"name": "Events"}).json()["uuid"]
    make = lambda: http.post("/v1/customers", json={  # noqa: E731
        "data_source_uuid": source, "external_id": uuid.uuid4().hex, "name": "Evented"}).json()
    customer, other = make(), make()

    created = next_event(subscriber, "customer_created", customer["uuid"])
    http.patch(f"/v1/customers/{customer['uuid']}", json={"name": "Renamed"})
    updated = next_event(subscriber, "customer_updated", customer["uuid"])
    http.post("/v1/customers/merges", json={"from": {"customer_uuid": other["uuid"]},
                                            "into": {"customer_uuid": customer["uuid"]}})
    merged = next_event(subscriber, "customer_merged", customer["uuid"])
    http.delete(f"/v1/customers/{customer['uuid']}")
    deleted = next_event(subscriber, "customer_deleted", customer["uuid"])

    for payload in (created, updated, merged, deleted):
        uuid.UUID(payload["event_id"])
        assert payload["version"] == 1 and payload["occurred_at"]
    assert created["customer"]["name"] == "Evented" and created["customer"]["external_id"] == customer["external_id"]
    assert updated["changes"] == {"name": "Renamed"}
    assert (merged["from_uuid"], merged["into_uuid"]) == (other["uuid"], customer["uuid"])
    assert merged["moved_external_ids"] == [{"data_source_uuid": source, "external_id": other["external_id"]}]
    assert deleted["external_ids"] == [customer["external_id"], other["external_id"]]
    assert deleted["data_source_uuids"] == [source]
