"""The outbox relay's publisher: a batch of events per broker round trip, confirmed.

nameko's Publisher opens a producer from a pool, wraps every message in kombu's retry logic
and waits for the broker's confirmation of each message before sending the next. The relay
publishes from one green thread, in batches, and needs one thing only: to know that every
message of a batch reached the broker before it marks the rows published. So it keeps one
connection and channel (in confirm mode) of its own, sends the whole batch, then waits for
the confirmations, which RabbitMQ may give for many messages at once (`multiple`). Any
failure drops the connection: the next batch opens a new one, and the rows of the failed
batch, never marked, are published again (at least once; consumers dedupe on `event_id`).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import eventlet.semaphore
from amqp import Message, spec
from kombu import Connection, Exchange, Producer
from kombu.exceptions import EncodeError
from nameko.amqp.publish import Publisher

logger = logging.getLogger(__name__)

CONFIRM_TIMEOUT = 10.0  # seconds to wait for the broker to confirm a batch
PERSISTENT = 2
TRANSIENT = 1


@contextmanager
def coalesced_writes(connection) -> Iterator[None]:
    """Send every AMQP frame written on `connection` (py-amqp's) inside the block in one socket
    write when it ends.

    A send() per message costs more CPU here than building the message (a syscall, and the
    broker's read); a batch of publishes or acks goes out as one. Frames stay whole and in order.
    Nothing inside the block may wait for the broker's answer: it would be sent only at the end.
    """
    transport = getattr(connection, "transport", None)
    if transport is None or "_write" not in vars(transport):  # not connected, or not a transport we know
        yield
        return
    write = transport._write
    chunks: list[bytes] = []
    transport._write = lambda data: chunks.append(bytes(data))  # py-amqp reuses its frame buffer: copy
    try:
        yield
    finally:
        transport._write = write
        if chunks:
            transport.write(b"".join(chunks))


class BrokerRefused(Exception):
    """The broker did not take a message of the batch (a basic.nack)."""


class BatchPublisher:
    """Publishes lists of (routing key, JSON body) to one exchange, each list confirmed as a whole."""

    def __init__(self, amqp_uri: str, exchange: Exchange, **connection_options):
        self.amqp_uri = amqp_uri
        self.exchange = exchange
        self.connection_options = {key: value for key, value in connection_options.items() if value is not None}
        self._connection = None
        self._channel = None
        self._sent = 0  # delivery tags of this channel: the nth message published is tag n
        self._unconfirmed: set[int] = set()
        self._refused = False

    def publish(self, messages: list[tuple[str, str]]) -> None:
        """Publish every message; return once the broker confirmed them all, else raise."""
        if not messages:
            return
        try:
            channel = self._open()
            with coalesced_writes(channel.connection):
                for routing_key, body in messages:
                    channel.basic_publish(
                        Message(body.encode(), content_type="application/json", content_encoding="utf-8",
                                delivery_mode=PERSISTENT),
                        exchange=self.exchange.name, routing_key=routing_key)
                    self._sent += 1
                    self._unconfirmed.add(self._sent)
            while self._unconfirmed and not self._refused:
                channel.wait([spec.Basic.Ack, spec.Basic.Nack], timeout=CONFIRM_TIMEOUT)
            if self._refused:
                raise BrokerRefused("the broker refused a message of the batch")
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        _close_quietly(connection)

    def _open(self):
        if self._channel is None:
            self._connection = Connection(self.amqp_uri, **self.connection_options)
            channel = self._connection.channel()
            self.exchange(channel).declare()  # as nameko's dispatcher does: consumers may not exist yet
            channel.confirm_select()
            channel.events["basic_ack"].add(self._acked)
            channel.events["basic_nack"].add(self._nacked)
            self._channel, self._sent, self._unconfirmed, self._refused = channel, 0, set(), False
        return self._channel

    def _acked(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._unconfirmed = {tag for tag in self._unconfirmed if tag > delivery_tag}
        else:
            self._unconfirmed.discard(delivery_tag)

    def _nacked(self, delivery_tag: int, multiple: bool) -> None:
        self._refused = True


class SharedChannelPublisher(Publisher):
    """nameko's Publisher, lean for unconfirmed messages (RPC replies, and requests to a service
    the broker is known to route to: roster.rpc).

    Its messages are transient: an RPC request or reply is worth nothing once its caller stopped
    waiting (seconds), so the broker need not write it to disk, and after a broker restart a
    request is gone rather than run long after its caller was told 503.

    nameko takes a producer from kombu's pool and wraps each message in kombu's retry logic.
    An unconfirmed message needs neither: it goes on one connection per process and broker URI,
    shared by the process's green threads under a lock (`_SharedProducer`). A failure drops that
    connection and the message goes nameko's way after all, retries included. Confirmed messages
    always do.
    """

    delivery_mode = TRANSIENT

    def publish(self, payload, **kwargs):
        if kwargs.get("use_confirms", self.use_confirms) or self.declare or kwargs.get("declare"):
            return super().publish(payload, **kwargs)
        options = self.publish_kwargs.copy()
        headers = options.pop("headers", {}).copy()
        headers.update(kwargs.get("headers", {}))
        headers.update(kwargs.get("extra_headers", {}))
        passed = {key: value for key, value in kwargs.items()
                  if key not in ("headers", "extra_headers", "use_confirms", "transport_options", "retry",
                                 "retry_policy", "declare")}
        for name in ("delivery_mode", "priority", "expiration", "serializer", "compression"):
            passed.setdefault(name, getattr(self, name))
        passed["mandatory"] = False  # unconfirmed, a returned message would go unnoticed
        options.update(passed)
        shared = _shared_producer(self.amqp_uri, self.ssl, self.login_method)
        with shared.lock:
            try:
                shared.producer().publish(payload, headers=headers, retry=False, **options)
                shared.if_unsent(partial(super().publish, payload, **kwargs))
                return
            except EncodeError:  # the message itself cannot go (e.g. too large): not the connection's fault
                raise
            except Exception as error:
                logger.warning("publishing on the shared connection failed (%s: %s); reconnecting",
                               type(error).__name__, error)
                unsent = shared.drop()
        _publish_all(unsent)  # other green threads' messages, buffered before the failure
        return super().publish(payload, **kwargs)


class _SharedProducer:
    """One connection for a process's unconfirmed messages. What the green threads publish while
    one of them runs goes out in one socket write just after (`_flush`, spawned at the first
    message): under load several requests or replies share a send(), and the broker a read.
    Should that write fail, the connection is dropped and its messages go nameko's way, as a
    publish that failed at once does. Only unconfirmed messages go here: nothing waits for the
    broker on this connection."""

    def __init__(self, amqp_uri: str, ssl, login_method):
        self.options = {"ssl": ssl, "login_method": login_method}
        self.amqp_uri = amqp_uri
        self.lock = eventlet.semaphore.Semaphore()
        self._connection = None
        self._producer = None
        self._transport = None  # py-amqp's, whose writes are buffered
        self._send = None  # its own write, which _flush calls
        self._pending: list[bytes] = []
        self._fallbacks: list = []  # how each buffered message goes if the write fails

    def producer(self) -> Producer:
        if self._producer is None:
            self._connection = Connection(self.amqp_uri, **{k: v for k, v in self.options.items() if v is not None})
            self._producer = Producer(self._connection.channel())
            transport = self._connection.connection.transport
            if "_write" in vars(transport):  # a transport we know: buffer its writes
                self._transport, self._send, transport._write = transport, transport._write, self._buffer
        return self._producer

    def if_unsent(self, fallback) -> None:
        """Publish the message just buffered with `fallback` should its write fail."""
        if self._pending:
            self._fallbacks.append(fallback)

    def _buffer(self, data) -> None:
        if not self._pending:
            eventlet.spawn_n(self._flush)
        self._pending.append(bytes(data))  # py-amqp reuses its frame buffer: copy

    def _flush(self) -> None:
        with self.lock:
            data, fallbacks = b"".join(self._pending), self._fallbacks
            self._pending, self._fallbacks = [], []
            if not data:
                return
            try:
                self._send(data)
                return
            except Exception as error:
                logger.warning("sending %d messages on the shared connection failed (%s: %s); reconnecting",
                               len(fallbacks), type(error).__name__, error)
                self.drop()
        _publish_all(fallbacks)

    def drop(self) -> list:
        """Close the connection; return the fallbacks of the messages it had not sent."""
        connection, self._connection, self._producer = self._connection, None, None
        if self._transport is not None:  # close it with its own writes, at once
            self._transport._write = self._send
        unsent = self._fallbacks
        self._transport, self._send, self._pending, self._fallbacks = None, None, [], []
        _close_quietly(connection)
        return unsent


def _publish_all(fallbacks: list) -> None:
    for fallback in fallbacks:
        try:
            fallback()
        except Exception:
            logger.exception("publishing a message the shared connection could not send failed")


def _close_quietly(connection) -> None:
    """Close a connection being dropped (usually because it failed, so closing may fail too)."""
    if connection is not None:
        try:
            connection.close()
        except Exception:
            logger.debug("closing a dropped connection failed", exc_info=True)


_SHARED: dict[tuple, _SharedProducer] = {}


def _shared_producer(amqp_uri: str, ssl, login_method) -> _SharedProducer:
    key = (amqp_uri, repr(ssl), login_method)
    if key not in _SHARED:
        _SHARED[key] = _SharedProducer(amqp_uri, ssl, login_method)
    return _SHARED[key]
