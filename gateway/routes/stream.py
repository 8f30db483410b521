"""Live updates of a customer record page: server-sent events (ours, beyond ChartMogul's API).

`POST /v1/customers/{uuid}/events/token` (any key: every role reads customers) answers a
short-lived signed token; `GET /v1/customers/{uuid}/events?token=...` streams, as server-sent
events, the bus events that concern that customer. EventSource cannot send an Authorization
header and the key must never travel in a URL, hence the token (gateway/live.py).

Per gateway process, the broadcast listener (roster/broadcast.py) is bound to the `LIVE_EVENTS`
only while the process has a stream open: the first stream binds them (before its response
starts, so nothing published after the page opened it is missed), the last one to close unbinds
them, and with no page open the process receives none of them. `StreamHub` fans each event out
to the open streams of the customers it concerns. A stream is
not a nameko worker: the handler returns at once with a Response whose body the WSGI server
iterates in the connection's own green thread, waiting on the stream's queue. Heartbeats every
STREAM_HEARTBEAT_SECONDS find a dead client (the write fails and the server closes the body,
which frees the slot); at most STREAM_MAX_PER_PROCESS streams are open per process, so they
cannot crowd out request handling: one more is a 503.

Note for the entrypoint's owner: nothing in gateway/http.py changes. A route returning a werkzeug
Response is passed through as-is (`ApiEndpoint.response_from_result`), and the handler sets
`environ["eventlet.minimum_write_chunk_size"] = 0` so eventlet's WSGI server flushes each frame
instead of buffering 4 KiB.
"""
from __future__ import annotations

import logging
import os
import time

from eventlet.queue import Empty, LightQueue
from nameko.extensions import DependencyProvider
from werkzeug.wrappers import Response

from gateway import live
from gateway.auth import READ, ApiKeys
from gateway.http import api
from gateway.schemas.stream import StreamTokenOut, TokenQuery
from roster.broadcast import BroadcastListener
from roster.errors import ServiceUnavailable, Unauthorized

log = logging.getLogger(__name__)

C = "/v1/customers/<string:uuid>"
QUEUE_SIZE = 64  # messages a slow stream may fall behind before it is told to re-fetch everything
RETRY_MS = 2000  # how soon EventSource reconnects after a dropped connection


def stream_settings() -> dict:
    """Return the stream limits from the environment (each with a working default)."""
    return {
        "max_streams": int(os.environ.get("STREAM_MAX_PER_PROCESS", "100")),
        "heartbeat": float(os.environ.get("STREAM_HEARTBEAT_SECONDS", "5")),
        "token_ttl": int(os.environ.get("STREAM_TOKEN_TTL", "60")),
    }


class Subscription:
    """One open stream: a bounded queue of messages for one customer's page."""

    def __init__(self, hub: "StreamHub", customer_uuid: str, role: str):
        self.hub = hub
        self.customer_uuid = customer_uuid
        self.role = role
        self.queue: LightQueue = LightQueue(QUEUE_SIZE)
        self.overflowed = False
        self.closed = False

    def offer(self, message: dict) -> None:
        """Queue `message`; a full queue means the page missed some and must re-fetch everything."""
        try:
            self.queue.put_nowait(message)
        except Exception:  # eventlet.queue.Full
            self.overflowed = True

    def next_message(self, timeout: float) -> dict | None:
        """Return the next message, or None when `timeout` seconds pass without one."""
        if self.overflowed:
            self.overflowed = False
            self._drain()
            return {"event": "stream.overflow", "customer_uuid": self.customer_uuid, "refresh": list(live.EVERYTHING)}
        try:
            return self.queue.get(timeout=timeout)
        except Empty:
            return None

    def _drain(self) -> None:
        while True:
            try:
                self.queue.get_nowait()
            except Empty:
                return

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub.unsubscribe(self)


class StreamHub:
    """The open streams of one gateway process, by customer; at most `max_streams` at once."""

    def __init__(self, max_streams: int, on_first=None, on_last=None):
        self.max_streams = max_streams
        self._by_customer: dict[str, set[Subscription]] = {}
        self.open_count = 0
        self._on_first = on_first  # the first stream opens: start receiving events
        self._on_last = on_last  # the last stream closed: stop

    def subscribe(self, customer_uuid: str, role: str) -> Subscription:
        """Return a new subscription; ServiceUnavailable (503) when the process holds its maximum."""
        if self.open_count >= self.max_streams:
            raise ServiceUnavailable(
                f"This gateway process already serves {self.max_streams} live streams; try again later "
                "(the page keeps working, without live updates)")
        subscription = Subscription(self, customer_uuid, role)
        self._by_customer.setdefault(customer_uuid, set()).add(subscription)
        self.open_count += 1
        if self.open_count == 1 and self._on_first is not None:
            self._on_first()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        streams = self._by_customer.get(subscription.customer_uuid)
        if streams and subscription in streams:
            streams.discard(subscription)
            self.open_count -= 1
            if not streams:
                del self._by_customer[subscription.customer_uuid]
            if self.open_count == 0 and self._on_last is not None:
                self._on_last()

    def publish(self, source: str, event: str, payload: dict) -> int:
        """Hand an event to the open streams of every customer it concerns that may read it; return how many."""
        delivered = 0
        for customer_uuid in live.customers_concerned(source, event, payload):
            for subscription in list(self._by_customer.get(customer_uuid, ())):
                if live.may_read(subscription.role, source, event):
                    subscription.offer(live.live_message(source, event, payload, customer_uuid))
                    delivered += 1
        return delivered


class EventStream:
    """The body of one SSE response: a greeting, then messages and heartbeats until the client goes.

    An iterator with `close()` (not a generator), so the slot is freed even when the server closes
    the body before iterating it.
    """

    def __init__(self, subscription: Subscription, heartbeat: float):
        self.subscription = subscription
        self.heartbeat = heartbeat
        self.greeted = False

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        if self.subscription.closed:
            raise StopIteration
        if not self.greeted:
            self.greeted = True
            hello = {"customer_uuid": self.subscription.customer_uuid, "heartbeat_seconds": self.heartbeat}
            return f"retry: {RETRY_MS}\n".encode() + live.sse_frame(hello, event="ready")
        message = self.subscription.next_message(self.heartbeat)
        if message is None:
            return live.sse_comment("heartbeat")
        return live.sse_frame(message, event="change", event_id=message.get("event_id"))

    def close(self) -> None:
        self.subscription.close()


class LiveStreams(DependencyProvider):
    """The process's StreamHub, fed by the broadcast listener while any stream is open."""

    listener = BroadcastListener()

    def setup(self):
        self.settings = stream_settings()
        self.hub = StreamHub(self.settings["max_streams"], on_first=self._start_feed, on_last=self._stop_feed)
        self._feed = None

    def _start_feed(self) -> None:
        if self._feed is None:
            self._feed = self.listener.watch(live.LIVE_EVENTS, self.hub.publish)

    def _stop_feed(self) -> None:
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.close()

    def get_dependency(self, worker_ctx):
        return self


class CallerKeys(DependencyProvider):
    """The gateway's API keys (the same shared extension the entrypoint checks them with)."""

    keys = ApiKeys()

    def get_dependency(self, worker_ctx):
        return self.keys


class StreamRoutes:
    live_streams = LiveStreams()
    caller_keys = CallerKeys()

    @api("POST", f"{C}/events/token", permission=READ, response=StreamTokenOut(),
         summary="A short-lived token to open the customer's live event stream (every role may read customers)")
    def customer_events_token(self, request, uuid):
        self.customers_rpc.get_customer(uuid)  # 404 for an unknown customer
        role = self.caller_keys.role_for(request.headers.get("Authorization"))
        ttl = self.live_streams.settings["token_ttl"]
        grant = live.StreamGrant(customer_uuid=uuid, role=role, expires_at=int(time.time()) + ttl)
        token = live.make_token(grant, self._stream_secret())
        return {"token": token, "expires_in": ttl, "url": f"/v1/customers/{uuid}/events?token={token}"}

    @api("GET", f"{C}/events", permission=None, query=TokenQuery(),
         summary="The customer's changes as server-sent events (`ready`, then `change` frames naming what to "
                 "re-fetch; heartbeat comments). Authenticated by the token, not the key; 503 when the process "
                 "serves its maximum of streams")
    def customer_events(self, request, uuid, query):
        try:
            grant = live.read_token(query["token"], self._stream_secret(), customer_uuid=uuid, now=time.time())
        except live.BadToken as bad:
            raise Unauthorized(str(bad), param="token")
        subscription = self.live_streams.hub.subscribe(uuid, grant.role)
        request.environ["eventlet.minimum_write_chunk_size"] = 0  # flush every frame
        body = EventStream(subscription, self.live_streams.settings["heartbeat"])
        return Response(body, status=200, mimetype="text/event-stream", headers={
            "Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff",
        })

    def _stream_secret(self) -> bytes:
        return live.token_secret(self.caller_keys.secret_material(), os.environ.get("STREAM_TOKEN_SECRET"))
