"""Live updates of a customer record: which bus events concern which customer, what the page
must re-fetch for each, the signed stream tokens, and server-sent event frames.

Pure code (no nameko, no I/O): `gateway/routes/stream.py` wires it to the bus and to HTTP.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

from gateway.auth import READ, ROLE_PERMISSIONS

# What the page re-fetches (its own names for the parts of the record):
CUSTOMER = "customer"          # the header's name and status, details, custom attributes, tags
METRICS = "metrics"            # MRR, ARR, net payments, subscriber since
AVATAR = "avatar"
CONTACTS = "contacts"
ACTIVITIES = "activities"      # the feed
TASKS = "tasks"
OPPORTUNITIES = "opportunities"
BILLING = "billing"            # the Subscriptions tab: chart, subscriptions, movements, revenue, transactions
EVERYTHING = (CUSTOMER, METRICS, AVATAR, CONTACTS, ACTIVITIES, TASKS, OPPORTUNITIES, BILLING)

# (source service, event) → what it makes stale. Every event here is about data any key may read
# (all roles hold READ), so the permission column only guards a future event that is not.
LIVE_EVENTS: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    ("customers", "customer_created"): ((CUSTOMER,), READ),
    ("customers", "customer_updated"): ((CUSTOMER, METRICS), READ),
    ("customers", "customer_deleted"): ((), READ),
    ("customers", "customer_merged"): (EVERYTHING, READ),
    ("contacts", "contact_created"): ((CONTACTS,), READ),
    ("contacts", "contact_updated"): ((CONTACTS,), READ),
    ("contacts", "contact_deleted"): ((CONTACTS,), READ),
    ("contacts", "contact_merged"): ((CONTACTS,), READ),
    ("activities", "activity_recorded"): ((ACTIVITIES, TASKS, OPPORTUNITIES), READ),
    ("billing_sync", "customer_metrics_changed"): ((CUSTOMER, METRICS, BILLING), READ),
    ("billing_sync", "mrr_movement_recorded"): ((BILLING, ACTIVITIES), READ),
    ("billing_sync", "mrr_movement_retracted"): ((BILLING, ACTIVITIES), READ),
    ("billing_sync", "transaction_recorded"): ((BILLING, METRICS, ACTIVITIES), READ),
    ("billing_sync", "invoice_imported"): ((BILLING,), READ),
    ("avatars", "avatar_resolved"): ((AVATAR,), READ),
}


def customers_concerned(source: str, event: str, payload: dict) -> list[str]:
    """Return the uuids of the customers whose open pages `event` changes (none for a foreign event)."""
    if (source, event) not in LIVE_EVENTS or not isinstance(payload, dict):
        return []
    if source == "customers" and event == "customer_merged":
        names = [payload.get("from_uuid"), payload.get("into_uuid")]
    elif source == "customers":
        names = [payload.get("uuid")]
    else:
        names = [payload.get("customer_uuid")]
    found: list[str] = []
    for name in names:
        if isinstance(name, str) and name and name not in found:
            found.append(name)
    return found


def live_message(source: str, event: str, payload: dict, customer_uuid: str) -> dict:
    """Return what the page of `customer_uuid` is told about `event`: its name and what to re-fetch."""
    refresh, _ = LIVE_EVENTS[(source, event)]
    message = {
        "event": f"{source}.{event}",
        "customer_uuid": customer_uuid,
        "event_id": payload.get("event_id"),
        "occurred_at": payload.get("occurred_at"),
        "refresh": list(refresh),
    }
    if (source, event) == ("customers", "customer_updated") and isinstance(payload.get("updated_at"), str):
        # the record's revision: a copy older than this (a gateway cache not yet told) is fetched again
        message["revision"] = payload["updated_at"]
    if (source, event) == ("customers", "customer_deleted"):
        message["deleted"] = True
    if (source, event) == ("customers", "customer_merged") and payload.get("from_uuid") == customer_uuid:
        message["merged_into"] = payload.get("into_uuid")
        message["refresh"] = []
    return message


def may_read(role: str, source: str, event: str) -> bool:
    """Return True when a key of `role` may see `event` on its stream."""
    entry = LIVE_EVENTS.get((source, event))
    return entry is not None and entry[1] in ROLE_PERMISSIONS.get(role, frozenset())


# ---- stream tokens ----------------------------------------------------------------------------
# EventSource cannot send an Authorization header, so the page first asks (with its key, in the
# header) for a short-lived token naming one customer and the key's role, then opens the stream
# with that token in the URL. The key itself never appears in a URL.

class BadToken(Exception):
    """The token is malformed, forged, for another customer, or expired (the message says which)."""


@dataclass(frozen=True)
class StreamGrant:
    customer_uuid: str
    role: str
    expires_at: int  # seconds since the epoch


def token_secret(api_keys_spec: str, configured: str | None = None) -> bytes:
    """Return the key that signs tokens: STREAM_TOKEN_SECRET when set, else one derived from API_KEYS.

    Derived, every gateway process sharing the configuration signs alike (a token made by one is
    good at another), and a change of the keys ends every outstanding token.
    """
    if configured:
        return configured.encode()
    return hashlib.sha256(b"roster stream token\x00" + api_keys_spec.encode()).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(grant: StreamGrant, secret: bytes) -> str:
    """Return the signed token carrying `grant`."""
    body = _b64(json.dumps({"c": grant.customer_uuid, "r": grant.role, "e": grant.expires_at},
                           separators=(",", ":")).encode())
    signature = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    return f"{body}.{signature}"


def read_token(token: str | None, secret: bytes, *, customer_uuid: str, now: float) -> StreamGrant:
    """Return the grant in `token` after checking its signature, customer and expiry; BadToken otherwise."""
    if not token or not isinstance(token, str) or token.count(".") != 1 or len(token) > 1024:
        raise BadToken("token: missing or malformed; ask POST /v1/customers/{uuid}/events/token for one")
    body, signature = token.split(".")
    expected = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(signature, expected):
        raise BadToken("token: not signed by this gateway (or the API keys changed); ask for a new one")
    try:
        fields = json.loads(_unb64(body))
        grant = StreamGrant(customer_uuid=str(fields["c"]), role=str(fields["r"]), expires_at=int(fields["e"]))
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise BadToken("token: malformed")
    if grant.customer_uuid != customer_uuid:
        raise BadToken("token: made for another customer")
    if grant.expires_at < now:
        raise BadToken("token: expired; ask for a new one")
    if grant.role not in ROLE_PERMISSIONS:
        raise BadToken("token: unknown role")
    return grant


# ---- server-sent event frames -----------------------------------------------------------------

def sse_frame(data: dict, *, event: str | None = None, event_id: str | None = None) -> bytes:
    """Return one server-sent event: optional `event:` and `id:` lines, the JSON on one `data:` line."""
    lines = []
    if event:
        lines.append(f"event: {_one_line(event)}")
    if event_id:
        lines.append(f"id: {_one_line(event_id)}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))  # JSON escapes newlines
    return ("\n".join(lines) + "\n\n").encode()


def sse_comment(text: str) -> bytes:
    """Return a comment frame (ignored by EventSource; keeps proxies and the connection alive)."""
    return f": {_one_line(text)}\n\n".encode()


def _one_line(text: str) -> str:
    return str(text).replace("\r", " ").replace("\n", " ")
