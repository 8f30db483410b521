"""Billing rules outside the MRR engine proper, as plain functions. No nameko, database or network.

Data source names, how a movement is described, an invoice's status, and when a customer's
figures may next change by time alone (a due date passing, a future-dated line or payment).
"""
from collections.abc import Iterable
from datetime import datetime
from urllib.parse import urlsplit

from roster.errors import invalid
from services.billing_sync.invoices import Invoice
from services.billing_sync.movements import CHURN, CONTRACTION, EXPANSION, NEW_BIZ, REACTIVATION, Cause
from services.billing_sync.payments import is_past_due, is_settled

IMPORT_API = "Import API"
NAME_MAX = 500
PAID, PAST_DUE, OPEN = "paid", "past_due", "open"


def clean_name(value) -> str:
    """Return a data source name trimmed; blank, too long or not text is a 422."""
    if not isinstance(value, str):
        raise invalid("name", "must be a string")
    name = value.strip()
    if not name:
        raise invalid("name", "must not be blank")
    if len(name) > NAME_MAX or "\x00" in name:
        raise invalid("name", f"must be at most {NAME_MAX} characters of text")
    return name


CONNECTOR_SYSTEMS = ("Stripe",)
SYSTEMS = (IMPORT_API, *CONNECTOR_SYSTEMS)
API_KEY_MAX = 500
BASE_URL_MAX = 2000


def clean_system(value) -> str:
    """Return the data source's system: `Import API` (the default) or a connector's name."""
    if value is None:
        return IMPORT_API
    if not isinstance(value, str) or value not in SYSTEMS:
        raise invalid("system", f"must be one of {', '.join(SYSTEMS)}")
    return value


def clean_connection(system: str, value, allowed_hosts: frozenset[str] = frozenset({"*"})) -> dict:
    """Return `{base_url, api_key}` a connector source needs (none for the Import API); a 422
    names the field. The base URL's host must be one of `allowed_hosts` (`*`: any). The key's
    value never appears in a message."""
    if system not in CONNECTOR_SYSTEMS:
        if value not in (None, {}):
            raise invalid("connection", f"an {system} data source takes no connection settings")
        return {"base_url": None, "api_key": None}
    if not isinstance(value, dict):
        raise invalid("connection", f"a {system} data source needs connection settings {{base_url, api_key}}")
    base_url = value.get("base_url")
    if not isinstance(base_url, str) or not base_url.strip():
        raise invalid("connection.base_url", "is required: the billing API's base URL, e.g. https://api.stripe.com")
    base_url = base_url.strip().rstrip("/")
    if not base_url.startswith(("http://", "https://")) or len(base_url) > BASE_URL_MAX or any(
            ch.isspace() or ch == "\x00" for ch in base_url) or "://" == base_url[-3:]:
        raise invalid("connection.base_url", f"must be an http(s) URL of at most {BASE_URL_MAX} characters")
    problem = connector_host_problem(base_url, allowed_hosts)
    if problem:
        raise invalid("connection.base_url", problem)
    api_key = value.get("api_key")
    if not isinstance(api_key, str) or not api_key.strip():
        raise invalid("connection.api_key", "is required")
    if len(api_key) > API_KEY_MAX or any(ch.isspace() or not ch.isprintable() for ch in api_key.strip()):
        raise invalid("connection.api_key", f"must be at most {API_KEY_MAX} printable characters without spaces")
    unknown = sorted(set(value) - {"base_url", "api_key"})
    if unknown:
        raise invalid(f"connection.{unknown[0]}", "is not a connection setting")
    return {"base_url": base_url, "api_key": api_key.strip()}


def connector_host_problem(base_url: str, allowed_hosts: frozenset[str]) -> str | None:
    """Why the platform may not call `base_url` (its host is not allowed, or it carries a user
    name or password); None when it may."""
    try:
        parts = urlsplit(base_url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        return "must be an http(s) URL with a valid host and port"
    if not host or parts.username is not None or parts.password is not None:
        return "must name a host, without a user name or password"
    if "*" not in allowed_hosts and host not in allowed_hosts:
        return (f"host {host} is not one this platform may call "
                f"(CONNECTOR_ALLOWED_HOSTS: {', '.join(sorted(allowed_hosts)) or 'none'})")
    return None


def main_cause(movement_type: str, causes: Iterable[Cause]) -> Cause | None:
    """Return the cause a movement is described by: a cancellation for a fall, a line for a rise."""
    causes = list(causes)
    if movement_type in (CONTRACTION, CHURN):
        for cause in causes:
            if cause.kind == "cancellation":
                return cause
    return causes[0] if causes else None


def describe_movement(movement_type: str, plan_name: str | None, *, cancelled: bool) -> str:
    """Return the feed's sentence for a movement, e.g. `purchased the Silver Monthly plan`."""
    plan = f"the {plan_name} plan" if plan_name else "a plan"
    if movement_type == NEW_BIZ:
        return f"purchased {plan}"
    if movement_type == REACTIVATION:
        return f"reactivated with {plan}"
    if movement_type == EXPANSION:
        return f"upgraded to {plan}"
    if movement_type == CONTRACTION:
        return f"cancelled {plan}" if cancelled else f"downgraded to {plan}"
    if movement_type == CHURN:
        return f"cancelled {plan}" if cancelled else f"stopped paying for {plan}"
    return movement_type


def invoice_status(invoice: Invoice, at: datetime) -> str:
    """Return `paid` (settled, or asking for nothing), `past_due` or `open` as of `at`."""
    if invoice.total_in_cents <= 0 or is_settled(invoice, at):
        return PAID
    return PAST_DUE if is_past_due(invoice, at) else OPEN


def settled_at(invoice: Invoice) -> datetime | None:
    """Return when the invoice became settled: its first successful payment (its date when it asks
    for nothing); None while unpaid. Only invoices unsettled at a time can be past due then."""
    if invoice.total_in_cents <= 0:
        return invoice.date
    dates = [t.date for t in invoice.transactions if t.type == "payment" and t.result == "successful"]
    return min(dates) if dates else None


def next_review(*, now: datetime, next_change: datetime | None, unsettled: Iterable[Invoice]) -> datetime | None:
    """Return the next moment after `now` at which the status or MRR may change by time alone:
    a future-dated change, a due date still to pass, or a future-dated transaction of an
    unsettled invoice. None when nothing is pending."""
    moments = [next_change] if next_change is not None else []
    for invoice in unsettled:
        if invoice.due_date is not None and invoice.due_date >= now:
            moments.append(invoice.due_date)
        moments.extend(t.date for t in invoice.transactions if t.date > now)
    return min(moments) if moments else None
