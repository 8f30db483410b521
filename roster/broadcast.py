"""Per-process listening to other services' events, bound only to what is wanted right now.

nameko's `event_handler(handler_type=BROADCAST)` gives every process its own queue, bound at start
for as long as the process lives, and spawns a whole worker (every dependency set up and torn
down) per message. That is the right tool for work, and far too heavy for what a gateway does with
a broadcast: drop a cache entry, or hand an event to the open live streams of a page, which most of
the time nobody has open. Under an invoice import every gateway process received and ran a worker
for five to eight events per invoice for streams that did not exist.

`BroadcastListener` is one queue per process (exclusive: it goes with the connection) consumed in
one green thread that calls plain functions, no worker per message:
- `listen(source, event, handler)` (during setup) binds for the life of the process;
- `watch(keys, handler)` binds when the first watcher of a key arrives and unbinds when the last
  one leaves, so an event nobody watches is never routed to the process. `watch` returns once the
  bindings exist (or after `BIND_WAIT` seconds), so an event published after it returns is seen.
Delivery is best effort, as for nameko's broadcast handlers (`reliable_delivery=False`): while the
connection is down, events are missed; the loop reconnects with backoff, re-declares and re-binds,
and calls the `on_reconnect` hooks so their owners can drop what might have gone stale.
"""
from __future__ import annotations

import itertools
import logging
import socket
import time
import uuid
from collections.abc import Callable, Iterable

import eventlet
from kombu import Connection, Consumer, Queue
from nameko.constants import (
    AMQP_SSL_CONFIG_KEY,
    AMQP_URI_CONFIG_KEY,
    DEFAULT_HEARTBEAT,
    HEARTBEAT_CONFIG_KEY,
    LOGIN_METHOD_CONFIG_KEY,
)
from nameko.extensions import SharedExtension
from nameko.standalone.events import get_event_exchange

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (source service, event type)
Handler = Callable[[str, str, dict], None]

POLL_SECONDS = 0.1  # how often the loop looks for binding changes between messages
BIND_WAIT = 2.0  # how long `watch` waits for its bindings before returning anyway
MAX_BACKOFF = 10.0


class Watch:
    """What `BroadcastListener.watch` returns; `close()` stops the handler getting these events."""

    def __init__(self, listener: "BroadcastListener", number: int):
        self._listener = listener
        self._number = number

    def close(self) -> None:
        self._listener._unwatch(self._number)


class BroadcastListener(SharedExtension):
    """One exclusive queue per process, bound on demand; handlers run in the listener's thread."""

    def __init__(self):
        super().__init__()
        self._permanent: dict[Key, list[Handler]] = {}
        self._watches: dict[int, tuple[frozenset[Key], Handler]] = {}
        self._numbers = itertools.count(1)
        self._reconnect_hooks: list[Callable[[], None]] = []
        self._bound: set[Key] = set()
        self._stopped = False
        self._thread = None
        self.queue_name = ""

    # -- registration ---------------------------------------------------------------------
    def listen(self, source: str, event: str, handler: Handler) -> None:
        """Call `handler(source, event, payload)` for every such event while the process runs."""
        self._permanent.setdefault((source, event), []).append(handler)

    def on_reconnect(self, hook: Callable[[], None]) -> None:
        """Call `hook()` after the connection was lost and is back (events may have been missed)."""
        self._reconnect_hooks.append(hook)

    def watch(self, keys: Iterable[Key], handler: Handler, *, wait: float = BIND_WAIT) -> Watch:
        """Call `handler` for these events until the returned Watch is closed."""
        keys = frozenset(keys)
        number = next(self._numbers)
        self._watches[number] = (keys, handler)
        deadline = time.monotonic() + wait
        while not keys <= self._bound and time.monotonic() < deadline and self._thread is not None:
            eventlet.sleep(POLL_SECONDS / 4)
        return Watch(self, number)

    def _unwatch(self, number: int) -> None:
        self._watches.pop(number, None)  # the loop unbinds what nobody wants any more

    def wanted(self) -> set[Key]:
        wanted = set(self._permanent)
        for keys, _ in list(self._watches.values()):
            wanted |= keys
        return wanted

    def handlers_for(self, key: Key) -> list[Handler]:
        found = list(self._permanent.get(key, ()))
        found.extend(handler for keys, handler in list(self._watches.values()) if key in keys)
        return found

    # -- nameko lifecycle -----------------------------------------------------------------
    def setup(self):
        config = self.container.config
        self.amqp_uri = config[AMQP_URI_CONFIG_KEY]
        self.connection_options = {
            "heartbeat": config.get(HEARTBEAT_CONFIG_KEY, DEFAULT_HEARTBEAT),
            "ssl": config.get(AMQP_SSL_CONFIG_KEY),
            "login_method": config.get(LOGIN_METHOD_CONFIG_KEY),
        }
        self.queue_name = f"{self.container.service_name}.listener-{uuid.uuid4().hex}"

    def start(self):
        self._stopped = False
        self._thread = self.container.spawn_managed_thread(self._run)

    def stop(self):
        self._stopped = True
        if self._thread is not None:
            self._thread.kill()
            self._thread = None

    def kill(self):
        self.stop()

    # -- the loop -------------------------------------------------------------------------
    def _run(self) -> None:
        delay, connected_before = 0.5, False
        while not self._stopped:
            try:
                with Connection(self.amqp_uri, **self.connection_options) as connection:
                    connection.ensure_connection(max_retries=1)
                    if connected_before:
                        self._after_reconnect()
                    connected_before, delay = True, 0.5
                    self._serve(connection)
            except Exception as exc:  # any connection or channel failure: start over
                if self._stopped:
                    return
                log.warning("broadcast listener %s lost the broker (%s); retrying in %.1fs",
                            self.queue_name, exc, delay)
                self._bound = set()
                eventlet.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    def _serve(self, connection: Connection) -> None:
        channel = connection.channel()
        queue = Queue(self.queue_name, exclusive=True, auto_delete=True, no_declare=False)(channel)
        queue.declare()
        consumer = Consumer(channel, [queue], callbacks=[self._on_message], accept=["json"], no_ack=True)
        consumer.consume()
        self._bound = set()
        while not self._stopped:
            self._sync_bindings(channel, queue)
            try:
                connection.drain_events(timeout=POLL_SECONDS)
            except socket.timeout:
                connection.heartbeat_check()

    def _sync_bindings(self, channel, queue: Queue) -> None:
        wanted = self.wanted()
        for source, event in sorted(wanted - self._bound):
            exchange = get_event_exchange(source, self.container.config)(channel)
            exchange.declare()  # as nameko's own consumers do: the source may not have started yet
            queue.bind_to(exchange=exchange, routing_key=event)
            self._bound.add((source, event))
        for source, event in sorted(self._bound - wanted):
            queue.unbind_from(exchange=f"{source}.events", routing_key=event)
            self._bound.discard((source, event))

    def _on_message(self, body, message) -> None:
        exchange = message.delivery_info.get("exchange") or ""
        key = (exchange.removesuffix(".events"), message.delivery_info.get("routing_key") or "")
        for handler in self.handlers_for(key):
            try:
                handler(key[0], key[1], body)
            except Exception:
                log.exception("broadcast handler for %s.%s failed", *key)

    def _after_reconnect(self) -> None:
        for hook in self._reconnect_hooks:
            try:
                hook()
            except Exception:
                log.exception("broadcast listener reconnect hook failed")
