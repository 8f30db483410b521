"""Dead letters: list and replay the event messages a service gave up on.

A service moves an event message that failed too often to the durable queue
`dead_letters.<service>` in its vhost: the original JSON body, with headers saying where it came
from (`x-roster-original-queue|exchange|routing-key`), how often it was tried
(`x-roster-attempts`), why it failed last (`x-roster-error`) and when (`x-roster-dead-lettered-at`).

    python -m tools.dlq list [SERVICE]                    # read without consuming (make dlq)
    python -m tools.dlq replay SERVICE (--all | EVENT_ID)  # back onto its original queue

Replaying publishes the body to the original queue through the default exchange with
`x-roster-attempts` reset to 0, waits for the broker's confirm, and only then removes the dead
letter: a crash in between duplicates the event (consumers skip a seen event_id), never loses it.
Uses AMQP_URI.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator

QUEUE_PREFIX = "dead_letters."
ORIGINAL_QUEUE = "x-roster-original-queue"
ORIGINAL_EXCHANGE = "x-roster-original-exchange"
ORIGINAL_ROUTING_KEY = "x-roster-original-routing-key"
ATTEMPTS = "x-roster-attempts"
ERROR = "x-roster-error"
DEAD_LETTERED_AT = "x-roster-dead-lettered-at"
# What describes the stay in the dead-letter queue, not the event: not carried back on replay.
_DEAD_LETTER_ONLY = (ERROR, DEAD_LETTERED_AT)


class DeadLetterError(Exception):
    """A list or replay could not be done; the message says why, ready to print."""


def dead_letter_queue(service: str) -> str:
    """Return the name of a service's dead-letter queue."""
    return QUEUE_PREFIX + service


@dataclass(frozen=True)
class DeadLetter:
    """One message in a dead-letter queue, as read from the broker (position 1 is the oldest)."""

    service: str
    position: int
    body: bytes
    headers: dict
    content_type: str | None = "application/json"
    content_encoding: str | None = "utf-8"

    @property
    def event_id(self) -> str | None:
        """Return the event_id of the JSON body, or None when the body has none."""
        try:
            payload = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None
        event_id = payload.get("event_id") if isinstance(payload, dict) else None
        return str(event_id) if event_id is not None else None

    @property
    def original_queue(self) -> str | None:
        return _text(self.headers.get(ORIGINAL_QUEUE))

    @property
    def event_name(self) -> str:
        """Return `<source>.<event type>` (nameko routes events by type on `<source>.events`)."""
        routing_key = _text(self.headers.get(ORIGINAL_ROUTING_KEY)) or "?"
        exchange = _text(self.headers.get(ORIGINAL_EXCHANGE)) or ""
        source = exchange.removesuffix(".events")
        return f"{source}.{routing_key}" if source else routing_key

    def describe(self) -> str:
        """Return one line: service, position, event, event_id, attempts, when, error."""
        error = " ".join((_text(self.headers.get(ERROR)) or "-").split())
        return (f"{self.service} #{self.position} {self.event_name} event_id={self.event_id or '-'} "
                f"attempts={_text(self.headers.get(ATTEMPTS)) or '?'} "
                f"at={_text(self.headers.get(DEAD_LETTERED_AT)) or '?'} error: {error}")


def _text(value) -> str | None:
    """Return a header value as text (AMQP tables may hold bytes, ints or datetimes)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def replay_headers(headers: dict) -> dict:
    """Return the headers of a replayed message: the original's, attempts back to 0, no error."""
    replayed = {key: value for key, value in headers.items() if key not in _DEAD_LETTER_ONLY}
    replayed[ATTEMPTS] = 0
    return replayed


# --- on the broker ----------------------------------------------------------------------------

def _connect(amqp_uri: str):
    from kombu import Connection

    # confirm_publish: a replayed message is acknowledged by the broker before its dead letter goes
    return Connection(amqp_uri, connect_timeout=10, transport_options={"confirm_publish": True})


def _queue_depth(connection, name: str) -> int | None:
    """Return how many messages wait in queue `name`, or None when there is no such queue."""
    from amqp.exceptions import NotFound

    channel = connection.channel()  # a failed passive declare closes its channel: use a spare one
    try:
        _, count, _ = channel.queue_declare(queue=name, passive=True)
        return count
    except NotFound:
        return None
    finally:
        try:
            channel.close()
        except Exception:  # already closed by the broker
            pass


def _read(connection, service: str) -> Iterator[tuple[DeadLetter, object]]:
    """Yield (dead letter, raw message) for each message now in the queue, without acking.

    Messages not acked go back to the queue, in their places, when the caller's channel closes.
    """
    from kombu import Queue

    name = dead_letter_queue(service)
    count = _queue_depth(connection, name)
    if not count:
        return
    queue = Queue(name, channel=connection.default_channel, no_declare=True)
    # only as many as were there when we looked: replayed events that fail again come back later
    for position in range(1, count + 1):
        message = queue.get(no_ack=False, accept=None)
        if message is None:
            return
        encoding = message.properties.get("content_encoding")
        body = message.body
        if isinstance(body, str):  # py-amqp decodes a body that declares a text encoding
            body = body.encode(encoding or "utf-8")
        yield DeadLetter(service, position, body, dict(message.headers or {}),
                         message.properties.get("content_type"), encoding), message


def list_dead_letters(amqp_uri: str, services: list[str]) -> list[DeadLetter]:
    """Return every dead letter of `services`, oldest first, leaving them all in their queues."""
    letters = []
    for service in services:
        with _connect(amqp_uri) as connection:  # closing requeues what was read
            letters += [letter for letter, _ in _read(connection, service)]
    return letters


def replay(amqp_uri: str, service: str, *, event_id: str | None = None,
           report: Callable[[str], None] = lambda line: None) -> list[DeadLetter]:
    """Put dead letters of `service` back on their original queues; return the ones replayed.

    `event_id=None` replays all of them; otherwise the one with that event_id (DeadLetterError
    when there is none). A dead letter whose original queue is unknown or gone stays where it is.
    """
    from kombu import Producer

    replayed = []
    skipped = []
    with _connect(amqp_uri) as connection:
        producer = Producer(connection.default_channel)
        for letter, message in _read(connection, service):
            if event_id is not None and letter.event_id != event_id:
                continue
            queue = letter.original_queue
            if not queue or _queue_depth(connection, queue) is None:
                skipped.append(f"{letter.describe()} (original queue {queue or 'not recorded'} does not exist)")
                if event_id is not None:
                    break
                continue
            producer.publish(letter.body, exchange="", routing_key=queue, headers=replay_headers(letter.headers),
                             content_type=letter.content_type or "application/json",
                             content_encoding=letter.content_encoding or "utf-8", delivery_mode=2)
            message.ack()  # only now that the broker confirmed the copy
            replayed.append(letter)
            report(f"replayed {letter.describe()} -> {queue}")
            if event_id is not None:
                break
    for line in skipped:
        report(f"not replayed: {line}")
    if event_id is not None and not replayed:
        raise DeadLetterError(skipped[0] if skipped else
                              f"no dead letter with event_id {event_id} in {dead_letter_queue(service)}")
    return replayed


# --- command line -------------------------------------------------------------------------------

def known_services() -> list[str]:
    """Return the services whose dead-letter queues `list` looks at by default."""
    from tools.stack import SERVICES

    return list(SERVICES)


def main(argv: list[str]) -> int:
    """Run `list` or `replay`; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tools.dlq", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="print the dead letters without consuming them")
    listing.add_argument("service", nargs="?", help="one service (default: every service)")
    replaying = commands.add_parser("replay", help="put dead letters back on their original queues")
    replaying.add_argument("service")
    which = replaying.add_mutually_exclusive_group(required=True)
    which.add_argument("event_id", nargs="?", help="the event_id of the dead letter to replay")
    which.add_argument("--all", action="store_true", help="replay every dead letter of the service")
    args = parser.parse_args(argv)

    from tools.stack import DEFAULT_AMQP_URI

    amqp_uri = os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI
    try:
        if args.command == "list":
            services = [args.service] if args.service else known_services()
            letters = list_dead_letters(amqp_uri, services)
            for letter in letters:
                print(letter.describe())
            if not letters:
                print(f"No dead letters ({', '.join(dead_letter_queue(s) for s in services)}).")
            return 0
        replayed = replay(amqp_uri, args.service, event_id=None if args.all else args.event_id, report=print)
        print(f"{len(replayed)} dead letter(s) replayed.")
        return 0
    except DeadLetterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the broker does not answer
        print(f"error: cannot reach RabbitMQ at AMQP_URI ({exc})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    sys.exit(main(sys.argv[1:]))
