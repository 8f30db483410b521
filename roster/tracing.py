"""Request ids: one id follows a client's request through the gateway, every RPC and every event.

The gateway takes `X-Request-Id` from the client (or makes one), answers with it, and puts it
into the call context (`REQUEST_ID`), which nameko carries in the headers of every RPC made for
the request. Events carry it in their envelope (`request_id`, docs/events.md), so a consumer's
work is tied to the request that caused it. Each worker binds its id to the green thread it runs
in (`bind`), and `roster.logs.RequestIdFilter` stamps it on every log record made there.

Plain Python: `threading.local` is per green thread once eventlet has monkey-patched (nameko run).
"""
from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

REQUEST_ID = "request_id"  # context-data key, and the events' envelope field
HEADER = "X-Request-Id"
MAX_LENGTH = 128
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:/+=-]{1,%d}$" % MAX_LENGTH)

_local = threading.local()


def new_id() -> str:
    return uuid.uuid4().hex


def accept(value: str | None) -> str:
    """Return the client's request id when it is sane (short, no spaces or controls), else a new one.

    An id ends up in every log line, so anything that could forge or break a log line is replaced.
    """
    if value and _ACCEPTABLE.fullmatch(value):
        return value
    return new_id()


def bind(request_id: str | None) -> None:
    """Make `request_id` the current one of this (green) thread; None clears it."""
    _local.request_id = request_id


def current() -> str | None:
    return getattr(_local, "request_id", None)


def from_worker(context_data: dict, args: tuple) -> str | None:
    """The request id of a worker: from its call context, else from the event it handles."""
    found = context_data.get(REQUEST_ID)
    if not found and args and isinstance(args[0], dict):
        found = args[0].get(REQUEST_ID)
    return found if isinstance(found, str) and found else None


@contextmanager
def event_bound(payload) -> Iterator[None]:
    """Within the block the request id an event carries is the current one (a batch worker handles
    several events); the one before is current again after it."""
    before = current()
    bind(from_worker({}, (payload,)))
    try:
        yield
    finally:
        bind(before)
