"""Durable event handlers: a failed event is retried with backoff, then dead-lettered, never lost.

`@event_handler("customers", "customer_deleted")` consumes from a durable queue shared by
the service's processes. Each event is applied once: the unit of work records the event id
in the handler's first write transaction and skips an event it has seen (roster.uow).

When the handler raises, the message is published again to the same queue with its attempt
count raised, after a pause that doubles each time (RETRY_BASE_SECONDS, ...), and only then
acknowledged, so a crash in between duplicates the event rather than losing it. The pause is
spent in a managed green thread, not in a worker. After MAX_ATTEMPTS, or at once for an
event that can never succeed (an envelope version this code does not know, no event_id, or
`UnprocessableEvent` raised by the handler), the message goes to the durable queue
`dead_letters.<service>`, with headers saying where it came from and why;
`python -m tools.dlq` lists and replays them.

`batch=N` lets one worker handle up to N waiting events of the handler in one transaction
(`roster.uow.UnitOfWork.batch`): one that fails leaves nothing behind and is retried or
dead-lettered on its own as above while the others commit together, marked handled in one
statement and acknowledged in one write. The batch runs first without a savepoint per event;
if an event fails, it runs again with one for each. A batch is what arrived while the previous
one ran; an event that arrives when the handler is idle starts one at once. Under sustained
load (the previous batch ended less than BUSY_WITHIN_SECONDS ago) a batch waits up to
BATCH_LINGER_SECONDS (`linger=` of the handler) for more events: a batch's fixed cost (its
transaction, its handled marks, its outbox rows and their publishing, its acks) was most of
what a small batch cost, and the events of a burst of API writes came a few per batch. A
handler whose effect a client waits for (a projection the API reads) says `linger=0`. Batch
queues are consumed on a channel of their own that lets each hold EVENT_BATCH unacknowledged
messages (`BatchQueueConsumer`).
The handler's work must all be in the database (the write lock is held): remote calls go in
`prepare=`, the name of a service method that takes the batch's payloads not handled before
and returns, outside any transaction, one value per payload for the handler's second argument
(an exception instead of a value fails that event alone).
`bulk=` names a service method that handles all of a batch's events not handled before at once
(`method(payloads)`, or `method(payloads, values)` with `prepare=`: set-based, one statement per
table, not per event), in the batch's transaction. It must do exactly what the handler would do
for each of them: if it raises, the batch runs again with the handler, event by event, each in
its savepoint.

`when=` names the events a handler cares about (e.g. `changes_any("name")`): any other is
acknowledged on arrival, before a worker, a transaction or a dedupe mark is spent on it.

`takes_over=` lists handlers (`Retired(source, event_type, method_name)`) this one replaces: at
start-up their durable queues stop receiving (unbound), what waits in them moves to this
handler's queue, and they are deleted, so an upgrade loses none of their events and leaves no
queue filling up without a consumer. The handler must accept their payloads too.
"""
import copy
import logging
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import eventlet
from amqp import Message
from kombu import Connection, Exchange, Queue
from nameko.amqp.publish import Publisher
from nameko.containers import ContainerBeingKilled
from nameko.events import SERVICE_POOL, EventHandler
from nameko.messaging import QueueConsumer
from nameko.standalone.events import get_event_exchange

from roster import metrics, tracing
from roster import serialization  # noqa: F401  (registers the bus codec)
from roster import transport  # noqa: F401  (buffers py-amqp's socket reads)
from roster.database import database_unavailable
from roster.errors import RosterError, UnprocessableEvent
from roster.publishing import coalesced_writes
from roster.events import ENVELOPE_VERSION
from roster.timestamps import render, utcnow
from roster.uow import AlreadyHandled, UnitOfWork

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
EVENT_BATCH = 100  # the most events a `batch=` worker takes, and what each batch queue may prefetch
BATCH_LINGER_SECONDS = 0.1  # how long a batch under sustained load waits to fill
BUSY_WITHIN_SECONDS = 0.2  # sustained load: the previous batch of the handler ended less than this ago
LINGER_STEP_SECONDS = 0.01  # how often a lingering batch looks whether it is full
RETRY_BASE_SECONDS = 0.5
ATTEMPTS = "x-roster-attempts"
DEFAULT_EXCHANGE = Exchange("")


class Retired(NamedTuple):
    """An event handler a service no longer has (for `takes_over=`)."""

    source_service: str
    event_type: str
    method_name: str

    def queue_name(self, service_name: str) -> str:
        return f"evt-{self.source_service}-{self.event_type}--{service_name}.{self.method_name}"  # nameko's


def take_over_queue(connection: Connection, retired: str, exchange: str, routing_key: str, into: str) -> int:
    """Unbind the durable queue `retired` from `exchange`, move its messages (each confirmed by the
    broker before it is removed there) to the queue `into`, and delete it; return how many moved.
    Nothing to do if it does not exist. Processes starting together may run it at once: each
    message moves once, and a queue another one deleted first is fine."""
    channel = connection.channel()
    try:
        channel.queue_declare(retired, passive=True)
    except connection.channel_errors:  # never existed, or gone already: the channel is closed
        return 0
    moved = 0
    try:
        channel.queue_unbind(retired, exchange, routing_key)
        channel.confirm_select()
        while (message := channel.basic_get(retired, no_ack=False)) is not None:
            channel.basic_publish_confirm(Message(message.body, **message.properties),
                                          exchange="", routing_key=into)
            channel.basic_ack(message.delivery_tag)
            moved += 1
        # a process of the earlier version still consuming it keeps it (unbound, it drains): the
        # next start deletes it
        channel.queue_delete(retired, if_empty=True, if_unused=True)
    except connection.channel_errors as error:  # another process deleted it meanwhile, or one still uses it
        logger.info("queue %s: not deleted (%s)", retired, error)
    finally:
        if channel.is_open:
            channel.close()
    return moved


def dead_letter_queue(service_name: str) -> Queue:
    return Queue(f"dead_letters.{service_name}", exchange=DEFAULT_EXCHANGE,
                 routing_key=f"dead_letters.{service_name}", durable=True)


class BatchQueueConsumer(QueueConsumer):
    """The consumer of a service's `batch=` handlers, on a channel of its own: each of their queues
    may hold a whole batch unacknowledged. nameko's QueueConsumer allows max_workers per queue,
    which would cap every batch at that many events (and it is right for RPC and the other
    handlers, whose messages each wait for a worker of their own)."""

    @property
    def prefetch_count(self):
        return EVENT_BATCH


class DurableEventHandler(EventHandler):
    """An event handler on a durable queue with capped retries and a dead-letter queue."""

    def __init__(self, source_service: str, event_type: str, when: Callable[[dict], bool] | None = None,
                 batch: int = 0, prepare: str | None = None, bulk: str | None = None,
                 linger: float | None = None, takes_over: tuple[Retired, ...] = (), **kwargs):
        if (prepare is not None or bulk is not None or linger is not None) and not batch:
            raise TypeError("prepare=, bulk= and linger= are for batch= handlers")
        self.when = when
        self.takes_over = tuple(takes_over)
        self.batch = batch
        self.linger = BATCH_LINGER_SECONDS if linger is None else linger
        self.prepare = prepare
        self.bulk = bulk
        self._waiting: list = []  # (body, message) that arrived while a batch ran
        self._batch_running = False
        self._batch_ended = float("-inf")  # time.monotonic() when the last batch ended
        self._batch_entrypoint = None
        kwargs.setdefault("expected_exceptions", ())
        expected = kwargs.pop("expected_exceptions")
        if not isinstance(expected, tuple):
            expected = (expected,)
        super().__init__(source_service, event_type, handler_type=SERVICE_POOL, reliable_delivery=True,
                         requeue_on_error=False, expected_exceptions=(AlreadyHandled, RosterError) + expected,
                         **kwargs)
        self.publisher = None
        if batch:
            self.queue_consumer = BatchQueueConsumer()

    def setup(self):
        super().setup()
        if self.batch:
            self._batch_entrypoint = copy.copy(self)
            self._batch_entrypoint.method_name = f"_roster_batch_{self.method_name}"
            setattr(self.container.service_cls, self._batch_entrypoint.method_name,
                    _batch_runner(self.method_name, self.prepare, self.bulk))
        amqp_uri = self.container.config["AMQP_URI"]
        self.dead_letters = dead_letter_queue(self.container.service_name)
        self.publisher = Publisher(amqp_uri, declare=[self.dead_letters])
        with Connection(amqp_uri) as connection:  # exists from the start, so `tools.dlq` finds it
            self.dead_letters.declare(channel=connection.default_channel)
            if self.takes_over:
                self.queue(connection.default_channel).declare()  # bound before anything moves in
                for retired in self.takes_over:
                    exchange = get_event_exchange(retired.source_service, self.container.config).name
                    moved = take_over_queue(connection, retired.queue_name(self.container.service_name),
                                            exchange, retired.event_type, self.queue.name)
                    if moved:
                        logger.info("%s: moved %d waiting event(s) of the retired handler %s to %s",
                                    self.container.service_name, moved, retired.method_name, self.queue.name)

    def handle_message(self, body, message):
        problem = unprocessable(body)
        if problem is not None:
            self._dead_letter(message, attempts=_attempts(message) + 1, error=problem)
            return
        if not self._wanted(body):
            metrics.EVENTS_SKIPPED.labels(self.container.service_name, self.method_name).inc()
            self.queue_consumer.ack_message(message)
            return
        if self.batch:
            self._waiting.append((body, message))
            if not self._batch_running:
                self._start_batch()
            return
        super().handle_message(body, message)

    def _start_batch(self) -> None:
        # The worker takes its events when it starts, not now: the consumer reads every message
        # already on its socket before the worker runs, so a burst becomes one batch, not 1 + rest.
        self._batch_running = True
        busy = time.monotonic() - self._batch_ended < BUSY_WITHIN_SECONDS
        batch = EventBatch(take=self._take_waiting, linger=self.linger if busy else 0.0,
                           full=lambda: len(self._waiting) >= self.batch)
        try:
            self.container.spawn_worker(
                self._batch_entrypoint, (batch,), {}, context_data=self.unpack_message_headers(self._waiting[0][1]),
                handle_result=partial(self._batch_done, batch))
        except ContainerBeingKilled:
            self._batch_running = False
            for _, message in self._waiting:
                self.queue_consumer.requeue_message(message)
            self._waiting = []

    def _take_waiting(self) -> list:
        taken, self._waiting = self._waiting[:self.batch], self._waiting[self.batch:]
        return taken

    def _batch_done(self, batch, worker_ctx, result=None, exc_info=None):
        """Settle each message of a batch by its own outcome (all of them by the batch's, if it failed)."""
        batch.take(linger=False)  # a worker that failed before it took its events fails them all
        messages = batch.messages
        outcomes = result if exc_info is None else [exc_info] * len(messages)
        settled = list(zip(messages, outcomes))
        # the acks of the applied events go out in one write; failures (which publish
        # elsewhere and wait for it) are settled after that
        with coalesced_writes(messages[0].channel.connection if messages else None):
            for message, outcome in settled:
                if _applied(outcome):
                    self.handle_message_processed(message, exc_info=outcome)
        for message, outcome in settled:
            if not _applied(outcome):
                self.handle_message_processed(message, exc_info=outcome)
        self._batch_running = False
        self._batch_ended = time.monotonic()
        if self._waiting:
            self._start_batch()
        return result, exc_info

    def _wanted(self, body: dict) -> bool:
        if self.when is None:
            return True
        try:
            return bool(self.when(body))
        except Exception:  # a predicate that cannot tell leaves the decision to the handler
            logger.warning("%s: %s: the `when` predicate failed; handling the event", self.container.service_name,
                           self.method_name, exc_info=True)
            return True

    def handle_message_processed(self, message, result=None, exc_info=None):
        service = self.container.service_name
        if _applied(exc_info):
            metrics.EVENTS_HANDLED.labels(service, self.method_name).inc()
            self.queue_consumer.ack_message(message)
            return
        metrics.EVENTS_FAILED.labels(service, self.method_name).inc()
        error = exc_info[1]
        attempts = _attempts(message) + 1
        reason = f"{type(error).__name__}: {error}".splitlines()[0][:500]
        if database_unavailable(error):
            # not the event's fault: retry (at the longest backoff) until the database is back,
            # however long that takes, instead of dead-lettering every event of an outage
            attempts = min(attempts, MAX_ATTEMPTS - 1)
        elif isinstance(error, UnprocessableEvent) or attempts >= MAX_ATTEMPTS:
            self._dead_letter(message, attempts, reason)
            return
        pause = RETRY_BASE_SECONDS * 2 ** (attempts - 1)
        logger.warning("%s: %s failed (attempt %d of %d), retrying in %.1fs: %s", self.container.service_name,
                       self.method_name, attempts, MAX_ATTEMPTS, pause, reason)
        self.container.spawn_managed_thread(partial(self._retry_later, message, attempts, pause))

    def _retry_later(self, message, attempts: int, pause: float) -> None:
        eventlet.sleep(pause)
        self._publish_copy(message, self.queue.name, {ATTEMPTS: attempts})
        self.queue_consumer.ack_message(message)

    def _dead_letter(self, message, attempts: int, error: str) -> None:
        metrics.EVENTS_DEAD_LETTERED.labels(self.container.service_name, self.method_name).inc()
        logger.error("%s: dead-lettering %s event after %d attempt(s): %s", self.container.service_name,
                     self.event_type, attempts, error)
        self._publish_copy(message, self.dead_letters.name, {
            ATTEMPTS: attempts,
            "x-roster-error": error,
            "x-roster-original-queue": self.queue.name,
            "x-roster-original-exchange": self.queue.exchange.name,
            "x-roster-original-routing-key": self.event_type,
            "x-roster-dead-lettered-at": render(utcnow()),
        })
        self.queue_consumer.ack_message(message)

    def _publish_copy(self, message, queue_name: str, headers: dict) -> None:
        self.publisher.publish(
            message.body, exchange=DEFAULT_EXCHANGE, routing_key=queue_name,
            headers={**(message.headers or {}), **headers},
            content_type=message.content_type or "application/json",
            content_encoding=message.content_encoding or "utf-8",
        )


def _applied(exc_info) -> bool:
    """Whether a worker's outcome means the event is handled (now or before): ack it."""
    return exc_info is None or isinstance(exc_info[1], AlreadyHandled)


def _attempts(message) -> int:
    try:
        return int((message.headers or {}).get(ATTEMPTS, 0))
    except (TypeError, ValueError):
        return 0


def unprocessable(body) -> str | None:
    """Return why an event can never be handled by this code (None when it can be)."""
    if not isinstance(body, dict) or not isinstance(body.get("event_id"), str):
        return "UnprocessableEvent: not an event envelope (no event_id)"
    version = body.get("version", ENVELOPE_VERSION)
    if not isinstance(version, int) or version > ENVELOPE_VERSION:
        return f"UnprocessableEvent: envelope version {version!r} is newer than this service knows ({ENVELOPE_VERSION})"
    return None


class EventBatch(list):
    """The event payloads a batch worker handles, in the order they arrived: up to the handler's
    batch size of those waiting when the worker starts (`take`), after up to `linger` seconds
    for more unless `full()` says the batch is full, their messages in `messages`."""

    def __init__(self, payloads=(), take: Callable[[], list] | None = None, linger: float = 0.0,
                 full: Callable[[], bool] | None = None):
        super().__init__(payloads)
        self.messages: list = []
        self._take = take
        self._linger = linger
        self._full = full

    def take(self, linger: bool = True) -> None:
        """Take the waiting events (once; a batch made of payloads has nothing to take)."""
        if self._take is not None:
            if linger and self._linger > 0:
                deadline = time.monotonic() + self._linger
                while time.monotonic() < deadline and not (self._full is not None and self._full()):
                    eventlet.sleep(min(LINGER_STEP_SECONDS, max(0.0, deadline - time.monotonic())))
            taken, self._take = self._take(), None
            self.extend(body for body, _ in taken)
            self.messages = [message for _, message in taken]


def _batch_runner(method_name: str, prepare: str | None = None, bulk: str | None = None):
    """The service method a batch worker runs: the handler once per event, in one transaction
    (after `prepare`, when given, for the events not handled before), or `bulk` once for them all.

    Returns one outcome per event: None (applied, or applied before) or the exc_info it raised.
    """
    def run_batch(service, batch: EventBatch) -> list:
        handler = getattr(service, method_name)
        uows = [value for value in vars(service).values() if isinstance(value, UnitOfWork)]
        if len(uows) != 1:
            raise TypeError(f"{method_name}: batch= needs a service with exactly one UnitOfWorkProvider")
        uow = uows[0]
        batch.take()
        outcomes: list = [None] * len(batch)
        items = [(index, payload, NOT_PREPARED) for index, payload in enumerate(batch)]
        if prepare is not None:
            items = _prepared(uow, getattr(service, prepare), method_name, batch, outcomes)
        try:  # events rarely fail: first without a savepoint per event
            done = _handle_batch(uow, handler, method_name, items, isolated=False,
                                 bulk=getattr(service, bulk) if bulk is not None else None)
        except _BatchAbandoned:  # one failed: all again, each in its savepoint
            done = _handle_batch(uow, handler, method_name, items, isolated=True)
        for (index, _, _), outcome in zip(items, done):
            outcomes[index] = outcome
        return outcomes

    run_batch.__name__ = f"_roster_batch_{method_name}"
    return run_batch


NOT_PREPARED = object()  # the handler of a batch without prepare= gets the payload alone


def _handled_key(method_name: str, payload: dict) -> str:
    return f"{method_name}:{payload['event_id']}"


def _prepared(uow: UnitOfWork, prepare, method_name: str, batch: EventBatch, outcomes: list) -> list:
    """Run `prepare` outside any transaction on the events of `batch` not handled before; return
    (index, payload, value) of those it prepared and put the failures of the rest in `outcomes`."""
    keys = [_handled_key(method_name, payload) for payload in batch]
    handled = uow.handled(keys)
    todo = [(index, payload) for index, (payload, key) in enumerate(zip(batch, keys)) if key not in handled]
    if not todo:
        return []
    try:
        values = prepare([payload for _, payload in todo])
        if len(values) != len(todo):
            raise TypeError(f"{method_name}: prepare returned {len(values)} values for {len(todo)} events")
    except Exception:
        failed = sys.exc_info()
        for index, _ in todo:
            outcomes[index] = failed
        return []
    items = []
    for (index, payload), value in zip(todo, values):
        if isinstance(value, Exception):
            outcomes[index] = (type(value), value, value.__traceback__)
        else:
            items.append((index, payload, value))
    return items


class _BatchAbandoned(Exception):
    """An event of a batch run without savepoints failed: the batch's transaction is rolled back."""


def _handle_batch(uow: UnitOfWork, handler, method_name: str, items: list, isolated: bool, bulk=None) -> list:
    """Handle (index, payload, prepared value) items in one transaction; return their outcomes."""
    outcomes = []
    if not items:
        return outcomes
    with uow.batch():
        keys = [_handled_key(method_name, payload) for _, payload, _ in items]
        fresh = uow.mark_handled(keys)  # one statement for the batch, not one per event
        if bulk is not None:
            _handle_in_bulk(uow, bulk, items, keys, fresh)
            return [None] * len(items)
        for (_, payload, prepared), key in zip(items, keys):
            if key not in fresh:  # handled before (or a second copy in this batch)
                outcomes.append(None)
                continue
            fresh.discard(key)
            with tracing.event_bound(payload):  # its log lines carry its request id
                outcomes.append(_handle_item(uow, handler, method_name, payload, key, prepared, isolated))
    return outcomes


def _handle_in_bulk(uow: UnitOfWork, bulk, items: list, keys: list[str], fresh: set[str]) -> None:
    """Run `bulk` on the events of `items` not handled before (each once), with their prepared values
    when the batch was prepared; any failure abandons the batch."""
    payloads, values = [], []
    for (_, payload, value), key in zip(items, keys):
        if key in fresh:
            fresh.discard(key)  # a second copy in this batch is handled by the first
            payloads.append(payload)
            values.append(value)
    if not payloads:
        return
    try:
        with uow.batch_item(_handled_key("bulk", payloads[0]), marked=True, isolated=False):
            if values[0] is NOT_PREPARED:
                bulk(payloads)
            else:
                bulk(payloads, values)
    except Exception as error:
        if not isinstance(error, RosterError):  # a bad event is the event-by-event run's to report
            logger.warning("%s: handling %d events at once failed; handling them one by one",
                           getattr(bulk, "__name__", bulk), len(payloads), exc_info=True)
        raise _BatchAbandoned() from error


def _handle_item(uow: UnitOfWork, handler, method_name: str, payload: dict, key: str, prepared, isolated: bool):
    """Handle one event of a batch; return its outcome (None, or the exc_info it raised)."""
    try:
        with uow.batch_item(key, marked=True, isolated=isolated):
            if prepared is NOT_PREPARED:
                handler(payload)
            else:
                handler(payload, prepared)
        return None
    except AlreadyHandled:
        return None
    except Exception as error:
        if not isolated:
            raise _BatchAbandoned() from error
        if not isinstance(error, RosterError):
            logger.warning("%s: event %s failed", method_name, payload.get("event_id"), exc_info=True)
        return sys.exc_info()


def changes_any(*fields: str) -> Callable[[dict], bool]:
    """A `when=` predicate for `*_updated` events: the event's `changes` name one of `fields`."""
    wanted = frozenset(fields)

    def changes_any_of(payload: dict) -> bool:
        changes = payload.get("changes")
        return not isinstance(changes, dict) or not wanted.isdisjoint(changes)

    changes_any_of.__qualname__ = f"changes_any{tuple(fields)}"
    return changes_any_of


event_handler = DurableEventHandler.decorator
