"""Connector for a Stripe-compatible billing API.

Three layers, usable apart:
- `StripeClient`: GETs over a requests Session (key in the Authorization header, timeouts, retries with
  exponential backoff on 429, 5xx and connection errors honouring Retry-After) and `iter_list` paging.
- Pure mappers, no I/O: `customer_record`, `contacts`, `plan`, `invoice`, `map_bundle` turn Stripe
  objects into the import shapes of `shapes.py`. A broken object raises `MalformedObject` naming its field.
- `fetch_customer_bundle` / `iter_customer_ids`: what a one-customer re-sync and a full sync fetch.
"""
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader, MaxRetryError
from urllib3.util.retry import Retry

from roster.outbound import BodyInterrupted, BodyTooSlow, read_capped
from services.billing_sync.connectors.errors import (
    MalformedObject,
    UpstreamNotFound,
    UpstreamRejected,
    UpstreamUnavailable,
)
from services.billing_sync.connectors.shapes import iso_utc, with_plan_uuids

log = logging.getLogger(__name__)

BILLING_SYSTEM_TYPE = "Stripe"
DEFAULT_DASHBOARD_URL = "https://dashboard.stripe.com"
RETRY_STATUSES = frozenset([429, *range(500, 600)])
PAGE_SIZE = 100  # Stripe's maximum `limit`
SKIPPED_INVOICE_STATUSES = frozenset(["draft", "void"])  # not (or no longer) owed: nothing to import
DEFAULT_TIMEOUT = (3.05, 10)  # (connect, read) seconds: each wait for a connection or for the next bytes
REQUEST_DEADLINE = 30.0  # seconds one attempt may take in all: connect + headers + the whole body
MAX_BODY_BYTES = 16 * 1024 * 1024  # a larger answer is refused (malformed), not read on
CHUNK_BYTES = 64 * 1024


class _BodyFailed(Exception):
    """Reading an answer's body timed out, passed the deadline or broke off: retryable."""


# ---------------------------------------------------------------------------------------------
# HTTP client
# ---------------------------------------------------------------------------------------------
class _LoggedRetry(Retry):
    """urllib3's retry policy, logging each wait with its cause (status or error) and its basis."""

    clock: threading.local | None = None  # shared with the client: when the current attempt began

    def new(self, **kw):
        retry = super().new(**kw)
        retry.clock = self.clock
        return retry

    def sleep(self, response=None) -> None:
        delay, basis = None, "backoff"
        if self.respect_retry_after_header and response is not None:
            try:
                delay = self.get_retry_after(response)
            except InvalidHeader:
                delay = None
            basis = "Retry-After" if delay else basis
        if not delay:
            delay = self.get_backoff_time()
        last = self.history[-1] if self.history else None
        cause = (f"HTTP {last.status}" if last and last.status else
                 f"{type(last.error).__name__}" if last and last.error else "failure")
        log.warning("billing API %s %s: %s; retry %d in %.2fs (%s)", getattr(last, "method", "GET"),
                    getattr(last, "url", "?"), cause, len(self.history), delay, basis)
        if delay > 0:
            time.sleep(delay)
        if self.clock is not None:
            self.clock.started = time.monotonic()  # the deadline is per attempt, not counting waits


class StripeClient:
    """Reads a Stripe-compatible API; raises UpstreamUnavailable, UpstreamRejected or MalformedObject."""

    def __init__(self, base_url: str, api_key: str, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                 max_retries: int = 4, backoff: float = 0.5, max_retry_after: int = 60,
                 max_backoff: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._clock = threading.local()
        self.session = requests.Session()
        # identity: the size cap counts the bytes that arrive, and no compressed answer can expand past it
        self.session.headers.update({"Authorization": f"Bearer {api_key}", "Accept": "application/json",
                                     "Accept-Encoding": "identity", "User-Agent": "roster-billing-sync"})
        # Waits are 0, 2b, 4b, 8b... (urllib3 retries the first failure at once); a Retry-After
        # header replaces the wait, capped so one answer cannot park a worker for hours.
        retry = _LoggedRetry(total=max_retries, backoff_factor=backoff, backoff_max=max_backoff,
                             status_forcelist=RETRY_STATUSES, allowed_methods=frozenset(["GET"]),
                             raise_on_status=False, respect_retry_after_header=True,
                             retry_after_max=max_retry_after)
        retry.clock = self._clock
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def get(self, path: str, **params) -> dict:
        """Return the JSON object at `path` (retrying transient failures, a slow or broken body too)."""
        query = {key: value for key, value in params.items() if value is not None}
        retries = 0
        while True:
            try:
                return self._get_once(path, query)
            except _BodyFailed as exc:
                if retries >= self.max_retries:
                    raise UpstreamUnavailable(f"GET {path}: {exc} (after {self.max_retries} retries)") from None
                retries += 1
                delay = 0 if retries == 1 else min(self.backoff * 2 ** (retries - 1), self.max_backoff)
                log.warning("billing API GET %s: %s; retry %d in %.2fs (backoff)", path, exc, retries, delay)
                if delay > 0:
                    time.sleep(delay)

    def _get_once(self, path: str, query: dict) -> dict:
        self._clock.started = time.monotonic()
        try:
            # no redirects: the billing API's configured host is the only one this ever asks
            # (a redirect would carry the Bearer key, or reach an internal address)
            response = self.session.get(self.base_url + path, params=query, timeout=self.timeout,
                                        allow_redirects=False, stream=True)
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"GET {path}: {_describe(exc, self.max_retries)}") from exc
        with response:
            status = response.status_code
            deadline = self._clock.started + REQUEST_DEADLINE
            content, complete = _read_body(response, deadline)
            response._content = content  # so .json()/.text (error messages) use what was read
            if status in RETRY_STATUSES:
                raise UpstreamUnavailable(
                    f"GET {path}: HTTP {status} after {self.max_retries} retries: {_error_message(response)}")
            if status == 404:
                raise UpstreamNotFound(status, f"GET {path}: {_error_message(response)}")
            if status != 200:
                raise UpstreamRejected(status, f"GET {path}: {_error_message(response)}")
            if not complete:
                raise MalformedObject(path, "body", f"the answer is larger than {MAX_BODY_BYTES} bytes")
        try:
            body = response.json()
        except ValueError:
            raise MalformedObject(path, "body", "the answer is not JSON") from None
        if not isinstance(body, dict):
            raise MalformedObject(path, "body", "the answer is not a JSON object")
        return body

    def iter_list(self, path: str, **params) -> Iterator[dict]:
        """Yield every object of a list endpoint, page by page (`starting_after` the last id while `has_more`)."""
        params.setdefault("limit", PAGE_SIZE)
        after = None
        seen: set[str] = set()
        while True:
            page = self.get(path, **params, starting_after=after)
            data, has_more = page.get("data"), page.get("has_more")
            if not isinstance(data, list):
                raise MalformedObject(path, "data", "a list page has no `data` list")
            if not isinstance(has_more, bool):
                raise MalformedObject(path, "has_more", "a list page has no boolean `has_more`")
            yield from data
            if not has_more:
                return
            last = data[-1].get("id") if data and isinstance(data[-1], dict) else None
            if not isinstance(last, str):
                raise MalformedObject(path, "data", "has_more is true but the page's last object has no id")
            if last in seen or last == after:
                raise MalformedObject(path, "data", f"paging loops: the cursor {last!r} was already used")
            seen.add(last)
            after = last


def _read_body(response: requests.Response, deadline: float) -> tuple[bytes, bool]:
    """Return (the body, whether it is whole): at most MAX_BODY_BYTES, read in chunks before the deadline.

    Raises _BodyFailed when the deadline passes, a read times out or the connection breaks.
    """
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        return b"", False
    try:
        return read_capped(response, max_bytes=MAX_BODY_BYTES, deadline=deadline, chunk_bytes=CHUNK_BYTES)
    except BodyTooSlow:
        raise _BodyFailed(f"the answer took longer than {REQUEST_DEADLINE:g} s") from None
    except BodyInterrupted as error:
        raise _BodyFailed(f"body interrupted: {error}") from error


def _describe(exc: requests.RequestException, max_retries: int) -> str:
    """Return why a request failed, naming the underlying cause rather than the wrapper."""
    cause = exc.args[0] if exc.args else exc
    if isinstance(cause, MaxRetryError):
        return f"{cause.reason} (after {max_retries} retries)"
    return str(cause)


def _error_message(response: requests.Response) -> str:
    """Return the message of a Stripe error body, or the start of the body."""
    try:
        message = response.json()["error"]["message"]
        if isinstance(message, str):
            return message
    except (ValueError, KeyError, TypeError):
        pass
    return response.text[:200] or response.reason or ""


# ---------------------------------------------------------------------------------------------
# Pure mappers: Stripe objects -> import shapes
# ---------------------------------------------------------------------------------------------
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "an object", list: "a list"}
_MAX_UNIX = 253402300799  # 9999-12-31T23:59:59Z


def _object_id(obj, kind: str) -> str:
    """Return the object's id, or a stand-in naming its kind when it has none."""
    if isinstance(obj, dict) and isinstance(obj.get("id"), str) and obj["id"]:
        return obj["id"]
    return f"<{kind} without id>"


def _field(obj, key: str, kind: type, *, oid: str, at: str = "", optional: bool = False):
    """Return obj[key] checked to be of `kind`; None when absent and optional. Raises MalformedObject."""
    if not isinstance(obj, dict):
        raise MalformedObject(oid, at.rstrip(".") or "object", "must be an object")
    value = obj.get(key)
    if value is None:
        if optional:
            return None
        raise MalformedObject(oid, at + key, "missing")
    if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
        raise MalformedObject(oid, at + key, f"must be {_TYPE_NAMES[kind]}, not {json_type(value)}")
    return value


def json_type(value) -> str:
    """Return the JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _timestamp(obj, key: str, *, oid: str, at: str = "", optional: bool = False) -> str | None:
    """Return a unix-seconds field as an ISO-8601 UTC string."""
    value = _field(obj, key, int, oid=oid, at=at, optional=optional)
    if value is None:
        return None
    if not 0 <= value <= _MAX_UNIX:
        raise MalformedObject(oid, at + key, f"{value} is not a plausible unix time")
    return iso_utc(datetime.fromtimestamp(value, UTC))


def _currency(obj, *, oid: str) -> str:
    value = _field(obj, "currency", str, oid=oid)
    if not re.fullmatch(r"[A-Za-z]{3}", value):
        raise MalformedObject(oid, "currency", f"{value!r} is not an ISO-4217 code")
    return value.upper()


def _split_name(name: str | None) -> tuple[str | None, str | None]:
    """Return (first name, last name): the first word, then the rest."""
    if not name or not name.strip():
        return None, None
    first, _, last = name.strip().partition(" ")
    return first, last.strip() or None


def customer_record(obj: dict, *, dashboard_url: str = DEFAULT_DASHBOARD_URL) -> dict:
    """Return the customer import shape of a Stripe customer (external_id = the Stripe id)."""
    oid = _object_id(obj, "customer")
    _field(obj, "id", str, oid=oid)
    if obj.get("deleted") is True:
        raise MalformedObject(oid, "deleted", "the customer was deleted in the billing system")
    address = _field(obj, "address", dict, oid=oid, optional=True) or {}
    metadata = _field(obj, "metadata", dict, oid=oid, optional=True) or {}
    email = _field(obj, "email", str, oid=oid, optional=True)
    name = (_field(obj, "name", str, oid=oid, optional=True)
            or _field(obj, "description", str, oid=oid, optional=True) or email or "")
    country = _field(address, "country", str, oid=oid, at="address.", optional=True)
    if country is not None:
        country = country.strip().upper()
        if not re.fullmatch(r"[A-Z]{2}", country):
            raise MalformedObject(oid, "address.country", f"{country!r} is not an ISO-3166 alpha-2 code")
    return {
        "external_id": oid,
        "name": name,
        "email": email or "",
        "company": _metadata_text(metadata, "company") or "",
        "country": country or None,
        "state": _field(address, "state", str, oid=oid, at="address.", optional=True),
        "city": _field(address, "city", str, oid=oid, at="address.", optional=True),
        "zip": _field(address, "postal_code", str, oid=oid, at="address.", optional=True),
        "website_url": _metadata_text(metadata, "website_url") or _metadata_text(metadata, "website"),
        "lead_created_at": _timestamp(obj, "created", oid=oid),
        "billing_system_type": BILLING_SYSTEM_TYPE,
        "billing_system_url": f"{dashboard_url.rstrip('/')}/customers/{oid}",
        "attributes": {"stripe": {key: value for key, value in metadata.items() if isinstance(value, str)}},
    }


def _metadata_text(metadata: dict, key: str) -> str | None:
    value = metadata.get(key)
    return value.strip() or None if isinstance(value, str) else None


def contacts(obj: dict) -> list[dict]:
    """Return the contact import shapes of a Stripe customer: its billing contact and a distinct shipping one."""
    oid = _object_id(obj, "customer")
    name = _field(obj, "name", str, oid=oid, optional=True)
    email = _field(obj, "email", str, oid=oid, optional=True)
    found = []
    if name or email:
        first, last = _split_name(name)
        found.append({"external_id": oid, "customer_external_id": oid, "first_name": first, "last_name": last,
                      "email": email, "phone": _field(obj, "phone", str, oid=oid, optional=True),
                      "title": None, "position": 1})
    shipping = _field(obj, "shipping", dict, oid=oid, optional=True)
    shipping_name = _field(shipping, "name", str, oid=oid, at="shipping.", optional=True) if shipping else None
    if shipping_name and shipping_name.strip() != (name or "").strip():
        first, last = _split_name(shipping_name)
        found.append({"external_id": f"{oid}:shipping", "customer_external_id": oid, "first_name": first,
                      "last_name": last, "email": None,
                      "phone": _field(shipping, "phone", str, oid=oid, at="shipping.", optional=True),
                      "title": "Shipping", "position": 2})
    return found


_INTERVALS = {"day": ("day", 1), "week": ("day", 7), "month": ("month", 1), "year": ("year", 1)}


def plan(price: dict) -> dict:
    """Return the plan import shape of a recurring Stripe price (or legacy plan object)."""
    oid = _object_id(price, "price")
    _field(price, "id", str, oid=oid)
    if price.get("object") == "plan":  # legacy plan objects carry the interval at the top level
        source, at = price, ""
    else:
        source, at = _field(price, "recurring", dict, oid=oid), "recurring."
    interval = _field(source, "interval", str, oid=oid, at=at)
    if interval not in _INTERVALS:
        raise MalformedObject(oid, at + "interval", f"{interval!r} is not one of day, week, month, year")
    count = _field(source, "interval_count", int, oid=oid, at=at)
    if count < 1:
        raise MalformedObject(oid, at + "interval_count", "must be at least 1")
    unit, factor = _INTERVALS[interval]
    product = price.get("product")
    product_name = product.get("name") if isinstance(product, dict) else product
    name = (_field(price, "nickname", str, oid=oid, optional=True)
            or (product_name if isinstance(product_name, str) else None) or oid)
    return {"external_id": oid, "name": name, "interval_count": count * factor, "interval_unit": unit}


def _line_price(line: dict, *, oid: str, at: str) -> dict:
    """Return a line's price object (or its legacy plan object)."""
    price = line.get("price") if line.get("price") is not None else line.get("plan")
    if price is None:
        raise MalformedObject(oid, at + "price", "missing on a subscription line")
    if not isinstance(price, dict):
        raise MalformedObject(oid, at + "price", f"must be an object, not {json_type(price)}")
    return price


def _amount_sum(line: dict, key: str, *, oid: str, at: str) -> int:
    """Return the sum of a line's `tax_amounts` or `discount_amounts`."""
    entries = _field(line, key, list, oid=oid, at=at, optional=True) or []
    return sum(_field(entry, "amount", int, oid=oid, at=f"{at}{key}[{n}].") for n, entry in enumerate(entries))


def _line_item(line, index: int, *, oid: str, cancellations: Mapping[str, datetime]) -> dict:
    at = f"lines.data[{index}]."
    if not isinstance(line, dict):
        raise MalformedObject(oid, at.rstrip("."), "must be an object")
    kind = _field(line, "type", str, oid=oid, at=at)
    if kind not in ("subscription", "invoiceitem"):
        raise MalformedObject(oid, at + "type", f"{kind!r} is not subscription or invoiceitem")
    recurring = kind == "subscription"
    amount = _field(line, "amount", int, oid=oid, at=at)
    tax = _amount_sum(line, "tax_amounts", oid=oid, at=at)
    discount = _amount_sum(line, "discount_amounts", oid=oid, at=at)
    period = _field(line, "period", dict, oid=oid, at=at, optional=not recurring) or {}
    start = _timestamp(period, "start", oid=oid, at=at + "period.", optional=not recurring)
    end = _timestamp(period, "end", oid=oid, at=at + "period.", optional=not recurring)
    quantity = _field(line, "quantity", int, oid=oid, at=at, optional=True)
    item = {
        "type": "subscription" if recurring else "one_time",
        "external_id": _field(line, "id", str, oid=oid, at=at, optional=True),
        # Stripe's line amount is before discounts and tax; the import wants what was charged, tax included.
        "amount_in_cents": amount - discount + tax,
        "tax_amount_in_cents": tax,
        "discount_amount_in_cents": discount,
        "quantity": 1 if quantity is None else quantity,
        "prorated": bool(_field(line, "proration", bool, oid=oid, at=at, optional=True)),
        "description": _field(line, "description", str, oid=oid, at=at, optional=True),
        "service_period_start": start,
        "service_period_end": end,
        "subscription_external_id": None,
        "plan_external_id": None,
        "cancelled_at": None,
    }
    if recurring:
        subscription_id = _field(line, "subscription", str, oid=oid, at=at)
        price = _line_price(line, oid=oid, at=at)
        item["subscription_external_id"] = subscription_id
        item["plan_external_id"] = _field(price, "id", str, oid=oid, at=at + "price.")
        cancelled = cancellations.get(subscription_id)
        if cancelled is not None and _parse_iso(start) < cancelled <= _parse_iso(end):
            item["cancelled_at"] = iso_utc(cancelled)
    return item


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _ref_id(value):
    """Return the id an object field refers to: the id itself, or the "id" of its expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


def _transactions(invoice_id: str, charges: Iterable[dict], refunds: Iterable[dict]) -> list[dict]:
    """Return the invoice's payments (its charges) and refunds (of those charges), oldest first."""
    found = []
    charge_ids = set()
    for charge in charges:
        if not isinstance(charge, dict) or _ref_id(charge.get("invoice")) != invoice_id:
            continue
        cid = _object_id(charge, "charge")
        charge_ids.add(cid)
        status = _field(charge, "status", str, oid=cid)
        if status == "pending":
            continue  # not settled yet: the next sync will see how it ends
        if status not in ("succeeded", "failed"):
            raise MalformedObject(cid, "status", f"{status!r} is not succeeded, failed or pending")
        found.append({"type": "payment", "result": "successful" if status == "succeeded" else "failed",
                      "date": _timestamp(charge, "created", oid=cid),
                      "amount_in_cents": _field(charge, "amount", int, oid=cid), "external_id": cid})
    for refund in refunds:
        if not isinstance(refund, dict) or _ref_id(refund.get("charge")) not in charge_ids:
            continue
        rid = _object_id(refund, "refund")
        status = _field(refund, "status", str, oid=rid)
        if status in ("pending", "requires_action"):
            continue
        if status not in ("succeeded", "failed", "canceled"):
            raise MalformedObject(rid, "status", f"{status!r} is not a refund status")
        found.append({"type": "refund", "result": "successful" if status == "succeeded" else "failed",
                      "date": _timestamp(refund, "created", oid=rid),
                      "amount_in_cents": _field(refund, "amount", int, oid=rid), "external_id": rid})
    return sorted(found, key=lambda transaction: transaction["date"])


def invoice(obj: dict, plan_uuid_by_external_id: Mapping[str, str] | None, *, charges: Iterable[dict] = (),
            refunds: Iterable[dict] = (), cancellations: Mapping[str, datetime] | None = None,
            customer_id: str | None = None) -> dict:
    """Return the invoice import shape (contract §2.8) of a Stripe invoice whose lines are all present.

    `charges`/`refunds` may be all of the customer's: those of this invoice become its transactions.
    `cancellations` ({subscription id: ended at}) sets `cancelled_at` on the line whose service period
    holds the end. With `plan_uuid_by_external_id` (None: leave them out), subscription lines get `plan_uuid`.
    With `customer_id`, an invoice of another customer is refused (MalformedObject naming `customer`).
    """
    oid = _object_id(obj, "invoice")
    _field(obj, "id", str, oid=oid)
    lines = _field(obj, "lines", dict, oid=oid)
    data = _field(lines, "data", list, oid=oid, at="lines.")
    if lines.get("has_more") is True:
        raise MalformedObject(oid, "lines.has_more", "not every line of the invoice was fetched")
    if not data:
        raise MalformedObject(oid, "lines.data", "an invoice needs at least one line")
    collection = _field(obj, "collection_method", str, oid=oid, optional=True)
    owner = _ref_id(obj.get("customer")) if isinstance(obj.get("customer"), dict) else _field(
        obj, "customer", str, oid=oid)
    if owner is None:
        raise MalformedObject(oid, "customer.id", "missing")
    if customer_id is not None and owner != customer_id:
        raise MalformedObject(oid, "customer", f"{owner!r} is not the customer being synced ({customer_id!r})")
    mapped = {
        "external_id": oid,
        "customer_external_id": owner,
        "date": _timestamp(obj, "created", oid=oid),
        "due_date": _timestamp(obj, "due_date", oid=oid, optional=True),
        "currency": _currency(obj, oid=oid),
        "collection_method": {"charge_automatically": "automatic", "send_invoice": "manual"}.get(collection),
        "line_items": [_line_item(line, index, oid=oid, cancellations=cancellations or {})
                       for index, line in enumerate(data)],
        "transactions": _transactions(oid, charges, refunds),
    }
    return mapped if plan_uuid_by_external_id is None else with_plan_uuids(mapped, plan_uuid_by_external_id)


def subscription_cancellations(subscriptions: Iterable[dict]) -> tuple[dict[str, datetime], list[MalformedObject]]:
    """Return ({subscription id: when it ended or ends}, errors) for the cancelled subscriptions."""
    ended: dict[str, datetime] = {}
    errors = []
    for sub in subscriptions:
        oid = _object_id(sub, "subscription")
        try:
            _field(sub, "id", str, oid=oid)
            status = _field(sub, "status", str, oid=oid)
            moment = (_timestamp(sub, "ended_at", oid=oid, optional=True)
                      or (_timestamp(sub, "canceled_at", oid=oid) if status == "canceled" else None))
        except MalformedObject as exc:
            errors.append(exc)
            continue
        if moment is not None:
            ended[oid] = _parse_iso(moment)
    return ended, errors


# ---------------------------------------------------------------------------------------------
# Fetching: what a sync needs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CustomerBundle:
    """One customer and everything billed to it, as the billing system serves them."""

    customer: dict
    subscriptions: list[dict] = field(default_factory=list)
    invoices: list[dict] = field(default_factory=list)
    charges: list[dict] = field(default_factory=list)
    refunds: list[dict] = field(default_factory=list)

    @property
    def deleted(self) -> bool:
        return self.customer.get("deleted") is True


def iter_customer_ids(client: StripeClient, *,
                      on_malformed: Callable[[MalformedObject], None] | None = None) -> Iterator[str]:
    """Yield the id of every (not deleted) customer; an entry without an id goes to `on_malformed`."""
    for position, obj in enumerate(client.iter_list("/v1/customers")):
        if isinstance(obj, dict) and isinstance(obj.get("id"), str) and obj["id"]:
            yield obj["id"]
        else:
            error = MalformedObject(f"/v1/customers entry {position}", "id", "missing")
            if on_malformed is None:
                log.warning("skipped: %s", error)
            else:
                on_malformed(error)


def fetch_customer_bundle(client: StripeClient, customer_id: str) -> CustomerBundle:
    """Return the customer with its subscriptions (cancelled too), invoices (every line), charges and refunds.

    Raises UpstreamNotFound for an unknown id; a deleted customer comes back with `deleted` true and no data.
    Four requests for a typical customer (customer, subscriptions, invoices, charges).
    """
    customer = client.get(f"/v1/customers/{quote(customer_id, safe='')}")
    if customer.get("deleted") is True:
        return CustomerBundle(customer)
    subscriptions = list(client.iter_list("/v1/subscriptions", customer=customer_id, status="all"))
    invoices = [_with_all_lines(client, obj) for obj in client.iter_list("/v1/invoices", customer=customer_id)]
    charges = list(client.iter_list("/v1/charges", customer=customer_id))
    refunds = []
    for charge in charges:
        embedded = charge.get("refunds") if isinstance(charge, dict) else None
        if isinstance(embedded, dict) and isinstance(embedded.get("data"), list) and embedded.get("has_more") is False:
            refunds.extend(embedded["data"])
        elif isinstance(charge, dict) and isinstance(charge.get("id"), str):
            refunds.extend(client.iter_list("/v1/refunds", charge=charge["id"]))
    return CustomerBundle(customer, subscriptions, invoices, charges, refunds)


def _with_all_lines(client: StripeClient, obj) -> dict:
    """Return the invoice with every line, fetching the ones Stripe does not embed."""
    lines = obj.get("lines") if isinstance(obj, dict) else None
    if not (isinstance(lines, dict) and lines.get("has_more") is True and isinstance(obj.get("id"), str)):
        return obj  # complete, or malformed: `invoice()` will say which field
    every_line = list(client.iter_list(f"/v1/invoices/{quote(obj['id'], safe='')}/lines"))
    return {**obj, "lines": {**lines, "data": every_line, "has_more": False}}


@dataclass
class MappedCustomer:
    """A bundle in import shapes. Invoices have no `plan_uuid` yet: import `plans`, then `with_plan_uuids`."""

    customer: dict | None
    contacts: list[dict] = field(default_factory=list)
    plans: list[dict] = field(default_factory=list)
    invoices: list[dict] = field(default_factory=list)
    cancellations: dict[str, str] = field(default_factory=dict)  # subscription external id -> ISO UTC
    errors: list[MalformedObject] = field(default_factory=list)
    deleted: bool = False


def map_bundle(bundle: CustomerBundle, *, dashboard_url: str = DEFAULT_DASHBOARD_URL) -> MappedCustomer:
    """Return the bundle in import shapes; each broken object is left out and listed in `errors`.

    Draft and void invoices are left out (nothing is owed on them). Invoices come oldest first.
    """
    if bundle.deleted:
        return MappedCustomer(None, deleted=True)
    try:
        customer = customer_record(bundle.customer, dashboard_url=dashboard_url)
        people = contacts(bundle.customer)
    except MalformedObject as exc:
        return MappedCustomer(None, errors=[exc])
    result = MappedCustomer(customer, contacts=people)
    result.plans = _bundle_plans(bundle, result.errors)
    cancellations, errors = subscription_cancellations(bundle.subscriptions)
    result.errors.extend(errors)
    result.cancellations = {sub_id: iso_utc(moment) for sub_id, moment in cancellations.items()}
    for obj in bundle.invoices:
        if isinstance(obj, dict) and obj.get("status") in SKIPPED_INVOICE_STATUSES:
            continue
        try:
            result.invoices.append(invoice(obj, None, charges=bundle.charges, refunds=bundle.refunds,
                                           cancellations=cancellations, customer_id=customer["external_id"]))
        except MalformedObject as exc:
            result.errors.append(exc)
    result.invoices.sort(key=lambda mapped: (mapped["date"], mapped["external_id"]))
    return result


def _bundle_plans(bundle: CustomerBundle, errors: list) -> list[dict]:
    """Return the distinct plans of the bundle's subscription items and subscription lines."""
    prices: dict[str, dict] = {}
    for sub in bundle.subscriptions:
        items = sub.get("items") if isinstance(sub, dict) else None
        item_list = items.get("data") if isinstance(items, dict) else None
        if item_list is not None and not isinstance(item_list, list):
            errors.append(MalformedObject(_object_id(sub, "subscription"), "items.data",
                                          f"must be a list, not {json_type(item_list)}"))
            continue
        for item in item_list or []:
            price = (item.get("price") or item.get("plan")) if isinstance(item, dict) else None
            if isinstance(price, dict) and isinstance(price.get("id"), str):
                prices.setdefault(price["id"], price)
    for obj in bundle.invoices:
        lines = obj.get("lines") if isinstance(obj, dict) else None
        line_list = lines.get("data") if isinstance(lines, dict) else None
        for line in line_list if isinstance(line_list, list) else []:  # not a list: `invoice()` says so
            if isinstance(line, dict) and line.get("type") == "subscription":
                price = line.get("price") or line.get("plan")
                if isinstance(price, dict) and isinstance(price.get("id"), str):
                    prices.setdefault(price["id"], price)
    plans = []
    for price in prices.values():
        try:
            plans.append(plan(price))
        except MalformedObject as exc:
            errors.append(exc)
    return plans
