"""JSON on the bus: one strict encoder for events, one lenient codec for RPC messages.

Events are a public contract read by other teams in any language, so `encode_event` only
accepts what every JSON reader takes exactly: integers within signed 64 bits, finite floats,
strings without NUL; a Decimal travels as its exact decimal string. It runs when the event is
recorded, inside the transaction, so a value the bus cannot carry refuses the request
(`UnencodableValue` names the field) instead of jamming the outbox later.

RPC messages go through the codec registered under kombu's name `json`: orjson (~10x cheaper
than the standard library on a page of 200 customers), falling back to the standard library
for what orjson refuses (integers beyond 64 bits), so a reply can never fail to encode and
take its service down. A reply larger than MAX_MESSAGE_BYTES is refused (roster.rpc's responder
then answers the caller with AnswerTooLarge instead) rather than exceeding RabbitMQ's frame
limit, which would kill the sender's connection. (orjson reads an integer beyond 64 bits as a float; the owning services
bound integers to 64 bits, so none is ever stored.)
"""
import json
from datetime import date, datetime
from decimal import Decimal

import orjson
from kombu.serialization import register

from roster.errors import PayloadTooLarge, invalid

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


class UnencodableValue(ValueError):
    """A value an event cannot carry; `path` is the dotted name of the offending field."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _default(value):
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError("a Decimal must be finite")
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def encode_event(payload: dict) -> str:
    """Return the event's JSON text; raise UnencodableValue naming the field that cannot travel."""
    _check(payload, "")
    return orjson.dumps(payload, default=_default).decode()


def check_event_fields(fields: dict, prefix: str = "") -> None:
    """Raise the 422 that names the first field of `fields` an event could not carry."""
    try:
        _check(fields, prefix)
    except UnencodableValue as bad:
        raise invalid(bad.path, bad.reason)


def _check(value, path: str) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise UnencodableValue(path or "value", "integers must fit in 64 bits (-2^63 to 2^63-1)")
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise UnencodableValue(path or "value", "numbers must be finite")
    elif isinstance(value, str):
        if "\x00" in value:
            raise UnencodableValue(path or "value", "text may not contain NUL characters")
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise UnencodableValue(path or "value", "numbers must be finite")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnencodableValue(path or "value", "object keys must be strings")
            _check(item, f"{path}.{key}" if path else key)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]" if path else f"[{index}]")
    elif not isinstance(value, (datetime, date)):
        raise UnencodableValue(path or "value", f"a {type(value).__name__} cannot be sent as JSON")


def dumps(value) -> str:
    """Encode an RPC message; never fails on a value JSON can express."""
    try:
        text = orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # orjson refuses integers beyond 64 bits; the standard library does not
        text = json.dumps(value, default=_default, ensure_ascii=False).encode()
    if len(text) > MAX_MESSAGE_BYTES:
        raise PayloadTooLarge(f"the answer is larger than {MAX_MESSAGE_BYTES} bytes")
    return text.decode()


register("json", dumps, orjson.loads, content_type="application/json", content_encoding="utf-8")
