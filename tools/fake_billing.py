"""A local Stripe-compatible billing API, for tests and benchmarks.

`BillingModel` is the fixture data: plain in-memory objects shaped like Stripe's, changed by methods
that do what a billing system does (subscribe, renew, change plan, cancel, refund, delete). Tests may
change it while the server runs. `FakeBilling` serves it over real HTTP from a thread:

    GET /v1/customers[/{id}]        GET /v1/subscriptions[/{id}]   GET /v1/invoices[/{id}[/lines]]
    GET /v1/charges[/{id}]          GET /v1/refunds[/{id}]         GET /v1/prices[/{id}]

Lists take `limit` (1-100, default 10) and `starting_after`, newest first, and answer
`{"object": "list", "data": [...], "has_more": bool}`; `customer=` filters subscriptions, invoices
and charges, `charge=` filters refunds. As in Stripe, subscriptions lists leave out cancelled ones unless
`status=all`, invoices embed at most 10 lines (the rest via `/v1/invoices/{id}/lines`) and charges embed
their refunds. A deleted customer is gone from lists; retrieving it answers `{"id", "deleted": true}`.

Faults: `latency` seconds per request, `fail_next(n, status=500|429, retry_after=...)`, `malform(id, ...)`
to serve one object broken, `go_down()`/`come_back()` to stop listening (connection refused). Every request
is counted per path (`count("/v1/customers")`). `seed(customers=N, invoices_each=M)` fills a model for
benchmarks. Works with and without eventlet's monkey-patching (green or real threads).
"""
import calendar
import itertools
import json
import random
import re
import socket
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DEFAULT_API_KEY = "sk_test_roster_fake"
BASE_TIME = 1704067200  # 2024-01-01T00:00:00Z: where fixture timelines start unless told otherwise
SEED_UNTIL = 1767225600  # 2026-01-01T00:00:00Z: `seed` keeps every invoice before this
DAY = 86400
EMBEDDED_LINES = 10  # Stripe embeds this many invoice lines; the rest are paged separately
REMOVE = object()  # in `malform`: drop this field from the served object


def unix(year: int, month: int = 1, day: int = 1) -> int:
    """Return midnight UTC of that date as unix seconds (for readable fixtures)."""
    return calendar.timegm((year, month, day, 0, 0, 0))


def add_interval(ts: int, interval: str, count: int = 1) -> int:
    """Return `ts` moved on by `count` billing intervals, months by the calendar (31 Jan + 1 month = 29 Feb)."""
    if interval == "day":
        return ts + count * DAY
    if interval == "week":
        return ts + count * 7 * DAY
    moment = datetime.fromtimestamp(ts, UTC)
    months = count * (12 if interval == "year" else 1)
    if interval not in ("month", "year"):
        raise ValueError(f"interval: unknown {interval!r}")
    year, month0 = divmod(moment.month - 1 + months, 12)
    year += moment.year
    day = min(moment.day, calendar.monthrange(year, month0 + 1)[1])
    return calendar.timegm(moment.replace(year=year, month=month0 + 1, day=day).timetuple())


class BillingModel:
    """Billing data as a billing system keeps it; every method is safe to call while the server runs."""

    def __init__(self):
        self.lock = threading.RLock()
        self._ids = Counter()
        self._seq = itertools.count(1)
        self.customers: dict[str, dict] = {}
        self.prices: dict[str, dict] = {}
        self.subscriptions: dict[str, dict] = {}
        self.invoices: dict[str, dict] = {}
        self.charges: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.deleted: set[str] = set()
        self.overlays: dict[str, dict] = {}
        # (kind, owner id) -> stored objects, so a per-customer list does not scan every object
        self._owned: dict[tuple[str, str], list[dict]] = {}

    # -- building blocks ------------------------------------------------------------------------
    def _new_id(self, prefix: str, given: str | None = None) -> str:
        if given:
            return given
        self._ids[prefix] += 1
        return f"{prefix}_{self._ids[prefix]:06d}"

    def _stamp(self, obj: dict) -> dict:
        obj["_seq"] = next(self._seq)
        return obj

    def _own(self, kind: str, owner_id: str, obj: dict) -> None:
        self._owned.setdefault((kind, owner_id), []).append(obj)

    def add_price(self, nickname: str, unit_amount: int, *, interval: str | None = "month",
                  interval_count: int = 1, currency: str = "usd", id: str | None = None) -> str:
        """Add a price (a plan); `interval=None` makes a one-time price. Returns its id."""
        with self.lock:
            price_id = self._new_id("price", id)
            self.prices[price_id] = self._stamp({
                "id": price_id, "object": "price", "active": True, "created": BASE_TIME,
                "currency": currency, "nickname": nickname, "product": f"prod_{price_id[6:]}",
                "unit_amount": unit_amount, "type": "recurring" if interval else "one_time",
                "recurring": {"interval": interval, "interval_count": interval_count} if interval else None,
            })
            return price_id

    def add_customer(self, name: str | None, email: str | None, *, created: int = BASE_TIME,
                     country: str | None = "US", state: str | None = None, city: str | None = None,
                     postal_code: str | None = None, phone: str | None = None, metadata: dict | None = None,
                     shipping_name: str | None = None, id: str | None = None) -> str:
        """Add a customer. Returns its id."""
        with self.lock:
            customer_id = self._new_id("cus", id)
            self.deleted.discard(customer_id)
            self.customers[customer_id] = self._stamp({
                "id": customer_id, "object": "customer", "created": created, "name": name, "email": email,
                "phone": phone, "description": None, "currency": "usd", "delinquent": False,
                "address": {"line1": None, "line2": None, "city": city, "state": state,
                            "postal_code": postal_code, "country": country},
                "shipping": ({"name": shipping_name, "phone": None, "address": None}
                             if shipping_name else None),
                "metadata": dict(metadata or {}),
            })
            return customer_id

    def add_invoice(self, customer_id: str, lines: list[dict], *, created: int, paid: bool | None = True,
                    subscription_id: str | None = None, due_date: int | None = None,
                    status: str | None = None, collection_method: str = "charge_automatically") -> str:
        """Add an invoice and, unless `paid` is None, the charge that paid it (`paid=False`: a failed one).

        A line is {"type": "subscription"|"invoiceitem", "amount", "price", "start", "end", "tax"?,
        "proration"?, "quantity"?, "subscription"?, "description"?}. Returns the invoice id.
        """
        with self.lock:
            invoice_id = self._new_id("in")
            stored_lines = [{
                "id": self._new_id("il"), "type": line["type"], "amount": line["amount"],
                "tax": line.get("tax", 0), "price": line.get("price"), "start": line.get("start", created),
                "end": line.get("end", created), "proration": line.get("proration", False),
                "quantity": line.get("quantity", 1), "subscription": line.get("subscription"),
                "description": line.get("description"),
            } for line in lines]
            total = sum(line["amount"] + line["tax"] for line in stored_lines)
            self.invoices[invoice_id] = self._stamp({
                "id": invoice_id, "customer": customer_id, "subscription": subscription_id,
                "created": created, "due_date": due_date, "collection_method": collection_method,
                "currency": "usd", "lines": stored_lines, "total": total,
                "status": status or ("paid" if paid else "open"), "charge": None,
            })
            self._own("invoices", customer_id, self.invoices[invoice_id])
            if subscription_id:
                self.subscriptions[subscription_id]["_invoices"].append(invoice_id)
            if paid is not None:
                self._charge(invoice_id, succeeded=paid, at=created)
            return invoice_id

    def _charge(self, invoice_id: str, *, succeeded: bool, at: int) -> str:
        invoice = self.invoices[invoice_id]
        charge_id = self._new_id("ch")
        self.charges[charge_id] = self._stamp({
            "id": charge_id, "customer": invoice["customer"], "invoice": invoice_id,
            "amount": invoice["total"], "currency": invoice["currency"], "created": at,
            "status": "succeeded" if succeeded else "failed",
            "failure_message": None if succeeded else "Your card was declined.",
        })
        self._own("charges", invoice["customer"], self.charges[charge_id])
        invoice["charge"] = charge_id
        if succeeded:
            invoice["status"] = "paid"
        return charge_id

    # -- what a billing system does -------------------------------------------------------------
    def subscribe(self, customer_id: str, price_id: str, *, start: int = BASE_TIME, quantity: int = 1,
                  periods: int = 1, paid: bool | None = True, tax: int = 0) -> str:
        """Start a subscription at `start` and invoice its first `periods` periods. Returns its id."""
        with self.lock:
            price = self.prices[price_id]
            subscription_id = self._new_id("sub")
            self.subscriptions[subscription_id] = self._stamp({
                "id": subscription_id, "customer": customer_id, "price": price_id, "quantity": quantity,
                "status": "active", "created": start, "start_date": start, "current_period_start": start,
                "current_period_end": add_interval(start, price["recurring"]["interval"],
                                                   price["recurring"]["interval_count"]),
                "canceled_at": None, "ended_at": None, "tax": tax,
                "item_id": self._new_id("si"), "_invoices": [],
            })
            self._own("subscriptions", customer_id, self.subscriptions[subscription_id])
            self._invoice_period(subscription_id, paid=paid)
            if periods > 1:
                self.renew(subscription_id, periods=periods - 1, paid=paid)
            return subscription_id

    def _invoice_period(self, subscription_id: str, *, paid: bool | None) -> str:
        sub = self.subscriptions[subscription_id]
        price = self.prices[sub["price"]]
        start, end = sub["current_period_start"], sub["current_period_end"]
        return self.add_invoice(sub["customer"], [{
            "type": "subscription", "amount": price["unit_amount"] * sub["quantity"], "tax": sub["tax"],
            "price": price["id"], "start": start, "end": end, "quantity": sub["quantity"],
            "subscription": subscription_id, "description": f"{sub['quantity']} × {price['nickname']}",
        }], created=start, paid=paid, subscription_id=subscription_id)

    def renew(self, subscription_id: str, *, periods: int = 1, paid: bool | None = True) -> list[str]:
        """Move an active subscription into its next period(s), invoicing each. Returns the invoice ids."""
        with self.lock:
            sub = self.subscriptions[subscription_id]
            if sub["status"] == "canceled":
                raise ValueError(f"{subscription_id} is cancelled")
            invoice_ids = []
            for _ in range(periods):
                price = self.prices[sub["price"]]["recurring"]
                sub["current_period_start"] = sub["current_period_end"]
                sub["current_period_end"] = add_interval(sub["current_period_start"], price["interval"],
                                                         price["interval_count"])
                invoice_ids.append(self._invoice_period(subscription_id, paid=paid))
            return invoice_ids

    def change_plan(self, subscription_id: str, price_id: str, *, quantity: int | None = None,
                    at: int | None = None, paid: bool | None = True) -> str:
        """Upgrade or downgrade: switch the subscription's price and invoice the change. Returns the invoice id.

        Without `at`, the change starts the next period: that period is invoiced at the new price.
        With `at` inside the current period, Stripe-style proration: one invoice at `at` crediting the
        unused time of the old price and charging the rest of the period at the new one.
        """
        with self.lock:
            sub = self.subscriptions[subscription_id]
            old_price, old_quantity = self.prices[sub["price"]], sub["quantity"]
            sub["price"], sub["quantity"] = price_id, quantity or sub["quantity"]
            if at is None:
                return self.renew(subscription_id, paid=paid)[0]
            start, end = sub["current_period_start"], sub["current_period_end"]
            if not start < at < end:
                raise ValueError("at: must fall inside the current period")
            share = (end - at) / (end - start)
            new_price = self.prices[price_id]
            return self.add_invoice(sub["customer"], [
                {"type": "subscription", "amount": -round(old_price["unit_amount"] * old_quantity * share),
                 "price": old_price["id"], "start": at, "end": end, "proration": True,
                 "quantity": old_quantity, "subscription": subscription_id,
                 "description": f"Unused time on {old_price['nickname']}"},
                {"type": "subscription", "amount": round(new_price["unit_amount"] * sub["quantity"] * share),
                 "price": price_id, "start": at, "end": end, "proration": True, "quantity": sub["quantity"],
                 "subscription": subscription_id, "description": f"Remaining time on {new_price['nickname']}"},
            ], created=at, paid=paid, subscription_id=subscription_id)

    def cancel(self, subscription_id: str, *, at: int | None = None) -> None:
        """Cancel a subscription at `at` (default: the end of its current period)."""
        with self.lock:
            sub = self.subscriptions[subscription_id]
            when = sub["current_period_end"] if at is None else at
            sub.update(status="canceled", canceled_at=when, ended_at=when)

    def one_off(self, customer_id: str, amount: int, description: str, *, at: int,
                paid: bool | None = True, tax: int = 0) -> str:
        """Invoice a one-time charge. Returns the invoice id."""
        return self.add_invoice(customer_id, [{"type": "invoiceitem", "amount": amount, "tax": tax,
                                               "start": at, "end": at, "description": description}],
                                created=at, paid=paid)

    def pay(self, invoice_id: str, *, at: int) -> str:
        """Pay an open invoice with a new successful charge. Returns the charge id."""
        with self.lock:
            return self._charge(invoice_id, succeeded=True, at=at)

    def refund(self, charge_id: str, *, amount: int | None = None, at: int | None = None,
               status: str = "succeeded") -> str:
        """Refund (part of) a charge. Returns the refund id."""
        with self.lock:
            charge = self.charges[charge_id]
            refund_id = self._new_id("re")
            self.refunds[refund_id] = self._stamp({
                "id": refund_id, "charge": charge_id, "amount": charge["amount"] if amount is None else amount,
                "currency": charge["currency"], "created": charge["created"] + DAY if at is None else at,
                "status": status,
            })
            self._own("refunds", charge_id, self.refunds[refund_id])
            return refund_id

    def delete_customer(self, customer_id: str) -> None:
        """Delete a customer: gone from lists, its active subscriptions end with their current period."""
        with self.lock:
            self.deleted.add(customer_id)
            for sub in self.subscriptions.values():
                if sub["customer"] == customer_id and sub["status"] != "canceled":
                    self.cancel(sub["id"])

    def malform(self, object_id: str, changes: dict) -> None:
        """Serve this object with `changes` applied: {"dotted.path": value or REMOVE} (list indexes allowed)."""
        with self.lock:
            self.overlays.setdefault(object_id, {}).update(changes)

    def repair(self, object_id: str) -> None:
        """Serve this object as it is again."""
        with self.lock:
            self.overlays.pop(object_id, None)

    def charges_of(self, invoice_id: str) -> list[str]:
        """Return the ids of the charges made for an invoice."""
        with self.lock:
            return [c["id"] for c in self.charges.values() if c["invoice"] == invoice_id]

    # -- how the objects look on the wire -----------------------------------------------------
    def render_price(self, price_id: str) -> dict:
        return _public(self.prices[price_id])

    def render_plan(self, price_id: str) -> dict:
        price = self.prices[price_id]
        recurring = price["recurring"] or {}
        return {"id": price_id, "object": "plan", "active": True, "amount": price["unit_amount"],
                "currency": price["currency"], "interval": recurring.get("interval"),
                "interval_count": recurring.get("interval_count"), "nickname": price["nickname"],
                "product": price["product"]}

    def render_customer(self, customer_id: str) -> dict:
        if customer_id in self.deleted:
            return {"id": customer_id, "object": "customer", "deleted": True}
        return _public(self.customers[customer_id])

    def render_subscription(self, subscription_id: str) -> dict:
        sub = self.subscriptions[subscription_id]
        item = {"id": sub["item_id"], "object": "subscription_item", "quantity": sub["quantity"],
                "subscription": subscription_id, "price": self.render_price(sub["price"]),
                "plan": self.render_plan(sub["price"])}
        return {"id": subscription_id, "object": "subscription", "customer": sub["customer"],
                "status": sub["status"], "created": sub["created"], "start_date": sub["start_date"],
                "current_period_start": sub["current_period_start"],
                "current_period_end": sub["current_period_end"], "cancel_at_period_end": False,
                "canceled_at": sub["canceled_at"], "ended_at": sub["ended_at"], "currency": "usd",
                "quantity": sub["quantity"],
                "items": {"object": "list", "data": [item], "has_more": False,
                          "url": f"/v1/subscription_items?subscription={subscription_id}"}}

    def render_line(self, invoice_id: str, line: dict) -> dict:
        price_id = line["price"]
        recurring = price_id is not None and self.prices[price_id]["recurring"] is not None
        return {"id": line["id"], "object": "line_item", "invoice": invoice_id, "type": line["type"],
                "amount": line["amount"], "currency": "usd", "description": line["description"],
                "period": {"start": line["start"], "end": line["end"]}, "proration": line["proration"],
                "quantity": line["quantity"], "subscription": line["subscription"],
                "price": self.render_price(price_id) if price_id else None,
                "plan": self.render_plan(price_id) if recurring else None,
                "tax_amounts": [{"amount": line["tax"], "inclusive": False}] if line["tax"] else [],
                "discount_amounts": []}

    def render_invoice(self, invoice_id: str) -> dict:
        invoice = self.invoices[invoice_id]
        lines = [self.render_line(invoice_id, line) for line in invoice["lines"]]
        tax = sum(line["tax"] for line in invoice["lines"])
        paid = invoice["status"] == "paid"
        return {"id": invoice_id, "object": "invoice", "customer": invoice["customer"],
                "subscription": invoice["subscription"], "created": invoice["created"],
                "due_date": invoice["due_date"], "collection_method": invoice["collection_method"],
                "currency": invoice["currency"], "status": invoice["status"], "paid": paid,
                "subtotal": invoice["total"] - tax, "tax": tax, "total": invoice["total"],
                "amount_due": invoice["total"], "amount_paid": invoice["total"] if paid else 0,
                "charge": invoice["charge"],
                "lines": {"object": "list", "data": lines[:EMBEDDED_LINES],
                          "has_more": len(lines) > EMBEDDED_LINES, "url": f"/v1/invoices/{invoice_id}/lines"}}

    def render_refund(self, refund_id: str) -> dict:
        return {**_public(self.refunds[refund_id]), "object": "refund"}

    def render_charge(self, charge_id: str) -> dict:
        charge = self.charges[charge_id]
        refunds = [self.render_refund(r["id"]) for r in _newest_first(self._owned.get(("refunds", charge_id), []))]
        refunded = sum(r["amount"] for r in refunds if r["status"] == "succeeded")
        return {**_public(charge), "object": "charge", "paid": charge["status"] == "succeeded",
                "amount_refunded": refunded, "refunded": refunded >= charge["amount"] > 0,
                "refunds": {"object": "list", "data": refunds, "has_more": False,
                            "url": f"/v1/charges/{charge_id}/refunds"}}

    def render(self, kind: str, object_id: str) -> dict:
        """Return one object as the API serves it, `malform` changes applied."""
        renderer = {"customers": self.render_customer, "subscriptions": self.render_subscription,
                    "invoices": self.render_invoice, "charges": self.render_charge,
                    "refunds": self.render_refund, "prices": self.render_price}[kind]
        return self.served(renderer(object_id))

    def served(self, obj: dict) -> dict:
        """Return `obj` with its `malform` changes applied, if any."""
        changes = self.overlays.get(obj.get("id"))
        if not changes:
            return obj
        obj = json.loads(json.dumps(obj))
        for path, value in changes.items():
            *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
            target = obj
            for part in parents:
                target = target[part]
            if value is REMOVE:
                del target[last]
            else:
                target[last] = value
        return obj

    def exists(self, kind: str, object_id: str) -> bool:
        """Tell whether an object of that kind was ever created (a deleted customer still exists)."""
        return object_id in self._table(kind)

    def _table(self, kind: str) -> dict:
        return {"customers": self.customers, "subscriptions": self.subscriptions, "invoices": self.invoices,
                "charges": self.charges, "refunds": self.refunds, "prices": self.prices}[kind]

    def matching_ids(self, kind: str, query: dict) -> list[str]:
        """Return the ids a list endpoint holds for these filters, newest first."""
        owner = query.get("charge") if kind == "refunds" else query.get("customer")
        if owner is not None and kind in ("subscriptions", "invoices", "charges", "refunds"):
            stored = self._owned.get((kind, owner), [])
        else:
            stored = self._table(kind).values()
        if kind == "customers":
            stored = [c for c in stored if c["id"] not in self.deleted]
        if kind == "subscriptions":
            status = query.get("status")
            stored = [s for s in stored if status == "all" or s["status"] == status
                      or (status is None and s["status"] != "canceled")]
        return [obj["id"] for obj in _newest_first(stored)]

    # -- benchmarks -------------------------------------------------------------------------
    def seed(self, customers: int, invoices_each: int, *, seed: int = 1) -> list[str]:
        """Add `customers` customers with one subscription of `invoices_each` invoices each. Returns their ids.

        Deterministic for a given `seed`. Every invoice lies before SEED_UNTIL: each subscription starts
        early enough for its invoices to end by then. About one in ten has a failed last payment, one in
        seven a refunded first charge, one in nine a subscription cancelled at the end of its last period.
        """
        rng = random.Random(seed)
        with self.lock:
            prices = [self.add_price("Basic monthly", 2900), self.add_price("Pro monthly", 9900),
                      self.add_price("Pro quarterly", 27900, interval_count=3),
                      self.add_price("Pro annual", 99000, interval="year")]
            ids = []
            for n in range(customers):
                price = rng.choice(prices)
                recurring = self.prices[price]["recurring"]
                last_period_end = SEED_UNTIL - rng.randrange(0, 365) * DAY
                start = add_interval(last_period_end, recurring["interval"],
                                     -recurring["interval_count"] * invoices_each)
                customer_id = self.add_customer(
                    f"Customer {n:05d}", f"billing{n:05d}@example.com", created=start - 7 * DAY,
                    country=rng.choice(["US", "GB", "DE", "FR"]), city="Springfield",
                    metadata={"company": f"Company {n:05d}"})
                if invoices_each:
                    sub = self.subscribe(customer_id, price, start=start,
                                         quantity=rng.randint(1, 3), periods=invoices_each,
                                         tax=rng.choice([0, 0, 500]))
                    sub_invoices = self.subscriptions[sub]["_invoices"]
                    if n % 10 == 9:
                        last = self.invoices[sub_invoices[-1]]
                        self.charges[last["charge"]]["status"] = "failed"
                        last["status"] = "open"
                    if n % 7 == 6:
                        self.refund(self.invoices[sub_invoices[0]]["charge"])
                    if n % 9 == 8:
                        self.cancel(sub)
                ids.append(customer_id)
            return ids


def _newest_first(stored) -> list[dict]:
    return sorted(stored, key=lambda obj: (obj["created"], obj["_seq"]), reverse=True)


def _public(obj: dict) -> dict:
    """Return a copy of a stored object without the model's private keys."""
    return {key: value for key, value in obj.items() if not key.startswith("_")}


_ROUTE = re.compile(r"^/v1/(customers|subscriptions|invoices|charges|refunds|prices)"
                    r"(?:/([A-Za-z0-9_]+))?(/lines)?/?$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes; without this each costs 40 ms

    def setup(self):
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self):
        self.server.fake._track(self.connection, add=False)
        super().finish()

    def log_message(self, format, *args):  # quiet: tests and benchmarks print their own
        pass

    def do_GET(self):
        fake: FakeBilling = self.server.fake
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        fake._record(parts.path, query)
        if fake.latency:
            time.sleep(fake.latency)
        fault = fake._take_fault()
        if fault is not None:
            status, retry_after, body = fault
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            if body is None:
                body = _error_body("api_error", f"Injected failure ({status})")
            return self._send(status, body, headers)
        if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            return self._send(401, _error_body("invalid_request_error", "Invalid API Key provided."))
        status, payload = fake._answer(parts.path, query)
        self._send(status, json.dumps(payload).encode())

    def _send(self, status: int, body: bytes, headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _error_body(kind: str, message: str, **extra) -> bytes:
    return json.dumps(_error(kind, message, **extra)).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class FakeBilling:
    """The billing API over HTTP on 127.0.0.1: start it, point a client at `url`, inject faults, count calls."""

    def __init__(self, model: BillingModel | None = None, *, api_key: str = DEFAULT_API_KEY,
                 host: str = "127.0.0.1", port: int = 0, latency: float = 0.0):
        self.model = model or BillingModel()
        self.api_key = api_key
        self.latency = latency
        self.host, self.port = host, port
        self.request_counts: Counter = Counter()
        self.request_log: list[tuple[str, dict]] = []
        self._faults: list[tuple[int, int | None, bytes | None]] = []
        self._lock = threading.Lock()
        self._connections: set = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "FakeBilling":
        """Start listening (on the same port as before, after `go_down`). Returns self."""
        server = _Server((self.host, self.port), _Handler)
        server.fake = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-billing", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    go_down = stop

    def come_back(self) -> None:
        """Listen again on the same port after `go_down`."""
        self.start()

    def __enter__(self) -> "FakeBilling":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail_next(self, n: int, *, status: int = 500, retry_after: int | None = None,
                  body: bytes | None = None) -> None:
        """Answer the next `n` requests with `status` (and a Retry-After header, or this raw body) instead."""
        with self._lock:
            self._faults.extend([(status, retry_after, body)] * n)

    def count(self, path: str | None = None) -> int:
        """Return how many requests reached `path` (every path when None)."""
        with self._lock:
            return self.request_counts[path] if path else sum(self.request_counts.values())

    def reset_counts(self) -> None:
        with self._lock:
            self.request_counts.clear()
            self.request_log.clear()

    def _record(self, path: str, query: dict) -> None:
        with self._lock:
            self.request_counts[path] += 1
            self.request_log.append((path, query))

    def _take_fault(self):
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def _track(self, connection, *, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(connection)

    def _answer(self, path: str, query: dict) -> tuple[int, dict]:
        """Return (status, JSON payload) for an authenticated GET."""
        match = _ROUTE.match(path)
        if match is None:
            return 404, _error("invalid_request_error", f"Unrecognized request URL (GET: {path}).")
        kind, object_id, lines = match.groups()
        model = self.model
        with model.lock:
            if object_id is None:
                ids = model.matching_ids(kind, query)
                return _page(path, ids, query, lambda some: [model.render(kind, i) for i in some])
            if not model.exists(kind, object_id) or (lines and kind != "invoices"):
                return 404, _error("invalid_request_error", f"No such {kind[:-1]}: '{object_id}'",
                                   code="resource_missing", param="id")
            if lines:
                stored = model.invoices[object_id]["lines"]
                return _page(path, [line["id"] for line in stored], query, lambda some: [
                    model.render_line(object_id, line) for line in stored if line["id"] in set(some)])
            return 200, model.render(kind, object_id)


def _error(kind: str, message: str, **extra) -> dict:
    return {"error": {"type": kind, "message": message, **extra}}


def _page(path: str, ids: list[str], query: dict, render) -> tuple[int, dict]:
    """Return (status, payload) of one page of a list: `limit` items after `starting_after`."""
    try:
        limit = int(query.get("limit", 10))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        return 400, _error("invalid_request_error", "limit: must be an integer from 1 to 100", param="limit")
    start = 0
    after = query.get("starting_after")
    if after:
        if after not in ids:
            return 400, _error("invalid_request_error", f"No such object: '{after}'",
                               param="starting_after", code="resource_missing")
        start = ids.index(after) + 1
    return 200, {"object": "list", "url": path, "data": render(ids[start:start + limit]),
                 "has_more": start + limit < len(ids)}
