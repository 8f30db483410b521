"""The live stream hub of one gateway process: fan-out to the streams of the customer an event
concerns, the bound on open streams, slow streams, and a stream body that frees its slot."""
import json

import pytest

from gateway import live
from gateway.routes.stream import QUEUE_SIZE, EventStream, StreamHub
from roster.errors import ServiceUnavailable

CUS = "cus_1"
OTHER = "cus_2"


def frames(stream: EventStream, count: int) -> list[bytes]:
    return [next(stream) for _ in range(count)]


def data_of(frame: bytes) -> dict:
    line = next(line for line in frame.decode().split("\n") if line.startswith("data: "))
    return json.loads(line.removeprefix("data: "))


def test_an_event_reaches_every_stream_of_its_customer_and_no_other():
    hub = StreamHub(max_streams=10)
    first, second, elsewhere = hub.subscribe(CUS, "read_only"), hub.subscribe(CUS, "owner"), hub.subscribe(OTHER, "staff")
    delivered = hub.publish("customers", "customer_updated", {"uuid": CUS, "event_id": "e-1"})
    assert delivered == 2
    assert first.next_message(0.01)["event_id"] == "e-1"
    assert second.next_message(0.01)["event"] == "customers.customer_updated"
    assert elsewhere.next_message(0.01) is None


def test_a_merge_reaches_both_pages_with_what_each_must_do():
    hub = StreamHub(max_streams=10)
    away, survivor = hub.subscribe(OTHER, "read_only"), hub.subscribe(CUS, "read_only")
    hub.publish("customers", "customer_merged", {"from_uuid": OTHER, "into_uuid": CUS})
    assert away.next_message(0.01)["merged_into"] == CUS
    assert "merged_into" not in survivor.next_message(0.01)


def test_events_not_meant_for_pages_reach_no_stream():
    hub = StreamHub(max_streams=10)
    stream = hub.subscribe(CUS, "owner")
    assert hub.publish("billing_sync", "data_source_deleted", {"uuid": "ds_1", "customer_uuid": CUS}) == 0
    assert stream.next_message(0.01) is None


def test_one_stream_more_than_the_bound_is_a_503_and_closing_one_makes_room():
    hub = StreamHub(max_streams=2)
    first = hub.subscribe(CUS, "owner")
    hub.subscribe(OTHER, "owner")
    with pytest.raises(ServiceUnavailable) as refused:
        hub.subscribe(CUS, "owner")
    assert refused.value.status == 503 and "2 live streams" in refused.value.message
    first.close()
    first.close()  # closing twice frees one slot, not two
    assert hub.open_count == 1
    hub.subscribe(CUS, "owner")
    with pytest.raises(ServiceUnavailable):
        hub.subscribe(CUS, "owner")


def test_a_stream_that_falls_behind_is_told_to_refetch_everything():
    hub = StreamHub(max_streams=1)
    stream = hub.subscribe(CUS, "owner")
    for number in range(QUEUE_SIZE + 5):
        hub.publish("contacts", "contact_created", {"customer_uuid": CUS, "event_id": str(number)})
    message = stream.next_message(0.01)
    assert message["event"] == "stream.overflow" and set(message["refresh"]) == set(live.EVERYTHING)
    assert stream.next_message(0.01) is None  # what was queued is covered by the full re-fetch
    hub.publish("contacts", "contact_created", {"customer_uuid": CUS, "event_id": "after"})
    assert stream.next_message(0.01)["event_id"] == "after"


def test_the_body_greets_then_sends_changes_and_heartbeats():
    hub = StreamHub(max_streams=1)
    stream = EventStream(hub.subscribe(CUS, "read_only"), heartbeat=0.01)
    hello = next(stream)
    assert hello.startswith(b"retry: ") and b"event: ready" in hello
    assert next(stream) == b": heartbeat\n\n"
    hub.publish("avatars", "avatar_resolved", {"customer_uuid": CUS, "event_id": "e-9"})
    change = next(stream)
    assert b"event: change\nid: e-9\n" in change and data_of(change)["refresh"] == ["avatar"]


def test_closing_the_body_frees_its_slot_even_before_it_was_read():
    hub = StreamHub(max_streams=1)
    stream = EventStream(hub.subscribe(CUS, "owner"), heartbeat=0.01)
    stream.close()  # what the WSGI server does when the client has gone
    assert hub.open_count == 0
    with pytest.raises(StopIteration):
        next(stream)
    assert hub.publish("customers", "customer_updated", {"uuid": CUS}) == 0
