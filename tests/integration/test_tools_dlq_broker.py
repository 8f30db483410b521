"""The dead-letter tool on a real broker, in a throwaway vhost: list without consuming, replay one."""
import json
import os
import uuid

import pytest
from kombu import Connection, Producer, Queue

from tools import dlq
from tools.isolation import create_vhost, delete_vhost
from tools.stack import DEFAULT_AMQP_URI

ORIGINAL_QUEUE = "evt-customers-customer_deleted--contacts.customer_deleted"


@pytest.fixture()
def vhost_uri():
    base_uri = os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI
    vhost, uri = create_vhost(base_uri, prefix="roster_it")
    yield uri
    delete_vhost(vhost, base_uri)


def event(**fields) -> bytes:
    return json.dumps({"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-26T20:59:00+00:00",
                       "version": 1, **fields}).encode()


def dead_letter(connection, body: bytes, error: str) -> None:
    """Put a dead letter in dead_letters.contacts by hand, as the contacts service would."""
    Producer(connection.default_channel).publish(
        body, exchange="", routing_key="dead_letters.contacts", content_type="application/json",
        content_encoding="utf-8", delivery_mode=2, headers={
            "x-roster-original-queue": ORIGINAL_QUEUE,
            "x-roster-original-exchange": "customers.events",
            "x-roster-original-routing-key": "customer_deleted",
            "x-roster-attempts": 5,
            "x-roster-error": error,
            "x-roster-dead-lettered-at": "2026-11-26T21:00:00+00:00",
        })


def drain(connection, name: str) -> list:
    """Return (and ack) every message now in queue `name`."""
    queue = Queue(name, channel=connection.default_channel, no_declare=True)
    messages = []
    while (message := queue.get(no_ack=False, accept=None)) is not None:
        message.ack()
        messages.append(message)
    return messages


@pytest.fixture()
def two_dead_letters(vhost_uri):
    first, second = event(uuid="cus_1"), event(uuid="cus_2")
    with Connection(vhost_uri) as connection:
        channel = connection.default_channel
        channel.queue_declare(queue="dead_letters.contacts", durable=True, auto_delete=False)
        channel.queue_declare(queue=ORIGINAL_QUEUE, durable=True, auto_delete=False)
        dead_letter(connection, first, "KeyError: 'uuid'")
        dead_letter(connection, second, "ValueError: bad payload")
    return json.loads(first)["event_id"], json.loads(second)["event_id"], second


def test_list_shows_every_dead_letter_and_consumes_none(vhost_uri, two_dead_letters, monkeypatch, capsys):
    first_id, second_id, _ = two_dead_letters
    monkeypatch.setenv("AMQP_URI", vhost_uri)

    assert dlq.main(["list"]) == 0
    assert dlq.main(["list", "contacts"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == lines[2:]  # the second listing sees the same, in the same order
    assert lines[:2] == [
        f"contacts #1 customers.customer_deleted event_id={first_id} attempts=5 "
        "at=2026-11-26T21:00:00+00:00 error: KeyError: 'uuid'",
        f"contacts #2 customers.customer_deleted event_id={second_id} attempts=5 "
        "at=2026-11-26T21:00:00+00:00 error: ValueError: bad payload",
    ]


def test_replay_one_puts_it_on_its_original_queue_and_takes_it_out_of_the_dead_letters(
        vhost_uri, two_dead_letters, monkeypatch, capsys):
    first_id, second_id, second_body = two_dead_letters
    monkeypatch.setenv("AMQP_URI", vhost_uri)

    assert dlq.main(["replay", "contacts", second_id]) == 0

    with Connection(vhost_uri) as connection:
        arrived = drain(connection, ORIGINAL_QUEUE)
        assert len(arrived) == 1
        assert arrived[0].body.encode() == second_body  # py-amqp decoded it as utf-8
        assert arrived[0].content_type == "application/json"
        assert arrived[0].headers["x-roster-attempts"] == 0
        assert arrived[0].headers["x-roster-original-routing-key"] == "customer_deleted"
        assert arrived[0].delivery_info["routing_key"] == ORIGINAL_QUEUE
    assert [letter.event_id for letter in dlq.list_dead_letters(vhost_uri, ["contacts"])] == [first_id]
    assert "1 dead letter(s) replayed." in capsys.readouterr().out


def test_replay_all_empties_the_dead_letter_queue_in_order(vhost_uri, two_dead_letters):
    first_id, second_id, _ = two_dead_letters

    replayed = dlq.replay(vhost_uri, "contacts")

    assert [letter.event_id for letter in replayed] == [first_id, second_id]
    with Connection(vhost_uri) as connection:
        assert [json.loads(m.body)["event_id"] for m in drain(connection, ORIGINAL_QUEUE)] == [first_id, second_id]
    assert dlq.list_dead_letters(vhost_uri, ["contacts"]) == []


def test_replaying_an_unknown_event_id_fails_and_changes_nothing(vhost_uri, two_dead_letters, monkeypatch, capsys):
    monkeypatch.setenv("AMQP_URI", vhost_uri)

    assert dlq.main(["replay", "contacts", "no-such-event"]) == 1

    assert "no dead letter with event_id no-such-event in dead_letters.contacts" in capsys.readouterr().err
    assert len(dlq.list_dead_letters(vhost_uri, ["contacts"])) == 2


def test_a_dead_letter_whose_original_queue_is_gone_stays(vhost_uri, two_dead_letters):
    first_id, _, _ = two_dead_letters
    with Connection(vhost_uri) as connection:
        connection.default_channel.queue_delete(ORIGINAL_QUEUE)

    with pytest.raises(dlq.DeadLetterError, match="does not exist"):
        dlq.replay(vhost_uri, "contacts", event_id=first_id)

    assert len(dlq.list_dead_letters(vhost_uri, ["contacts"])) == 2
