"""Import API bodies checked and normalised: invoices with their lines and transactions,
transactions alone, plans, cancellations, exchange rates and metric queries.

Pure: no nameko, database or network. An invoice's problems are collected field by field
(`{"line_items[0].amount_in_cents": ["must be a whole number of cents"]}`), so a batch can
report each bad invoice in full while the good ones import; everything else raises the
first problem as a `ValidationFailed` naming the field.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

import pycountry

from roster.errors import ValidationFailed, invalid
from roster.timestamps import parse, parse_date
from services.billing_sync.invoices import (
    DIFFERENTIAL, FAILED, LINE_ITEM_TYPES, ONE_TIME, PAYMENT, PRORATION_TYPES, REFUND, SUCCESSFUL,
)
from services.billing_sync.mrr import INTERVAL_UNITS

MAX_CENTS = 10**15  # ten trillion units of any currency: sums of many stay far inside 64 bits
MAX_INVOICES_PER_REQUEST = 500
MAX_LINES_PER_INVOICE = 1000
# Line items in one import request, over all its invoices: the largest takes about 1.3 s in the
# service on a slow 2-core host, well inside the caller's RPC_TIMEOUT, and holds the service no longer.
MAX_LINES_PER_REQUEST = 5000
MAX_TRANSACTIONS_PER_INVOICE = 1000
MAX_RATES_PER_REQUEST = 10_000
MAX_INTERVAL_COUNT = 1000
COLLECTION_METHODS = ("automatic", "manual")
SUBSCRIPTION_TYPES = ("subscription", "trial")
TEXT_LIMITS = {"external_id": 500, "customer_external_id": 500, "data_source_uuid": 40,
               "subscription_external_id": 500, "subscription_set_external_id": 500,
               "plan_uuid": 40, "discount_code": 500, "discount_description": 2000,
               "account_code": 500, "description": 2000, "name": 500}


def is_currency(code: str) -> bool:
    """Return whether `code` is an ISO-4217 currency code (upper case)."""
    return len(code) == 3 and pycountry.currencies.get(alpha_3=code) is not None


@dataclass
class Problems:
    """The problems found in one record: field → reasons, in the order found."""

    prefix: str = ""
    by_field: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, reason: str) -> None:
        self.by_field.setdefault(self.prefix + name, []).append(reason)

    def within(self, prefix: str) -> Problems:
        """Return a view that adds under `prefix` (e.g. `line_items[2].`) to the same dict."""
        return Problems(self.prefix + prefix, self.by_field)

    def __bool__(self) -> bool:
        return bool(self.by_field)

    def first(self) -> ValidationFailed:
        """Return the first problem as the 422 naming its field."""
        name, reasons = next(iter(self.by_field.items()))
        return invalid(name, reasons[0])


# ---- one value ---------------------------------------------------------------------------------

_MISSING = object()


def _text(data: dict, name: str, problems: Problems, *, required: bool = False) -> str | None:
    value = data.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            problems.add(name, "is required")
        return None
    if not isinstance(value, str):
        problems.add(name, "must be a string")
        return None
    value = value.strip()
    if required and not value:
        problems.add(name, "must not be blank")
        return None
    if "\x00" in value or len(value) > TEXT_LIMITS.get(name, 500):
        problems.add(name, f"must be at most {TEXT_LIMITS.get(name, 500)} characters of text")
        return None
    return value or None


def _cents(data: dict, name: str, problems: Problems, *, required: bool = False, default: int | None = None,
           minimum: int = -MAX_CENTS) -> int | None:
    value = data.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            problems.add(name, "is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(name, "must be a whole number of cents")
        return default
    if not minimum <= value <= MAX_CENTS:
        bound = "0" if minimum == 0 else f"{minimum}"
        problems.add(name, f"must be between {bound} and {MAX_CENTS}")
        return default
    return value


def _integer(data: dict, name: str, problems: Problems, *, default: int | None = None,
             minimum: int = -(2**62), maximum: int = 2**62) -> int | None:
    value = data.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(name, "must be a whole number")
        return default
    if not minimum <= value <= maximum:
        problems.add(name, f"must be between {minimum} and {maximum}")
        return default
    return value


def _moment(data: dict, name: str, problems: Problems, *, required: bool = False) -> datetime | None:
    value = data.get(name)
    if value is None or value == "":
        if required:
            problems.add(name, "is required")
        return None
    try:
        return parse(value, name)
    except ValidationFailed as bad:
        problems.add(name, bad.message.split(": ", 1)[-1])
        return None


def _choice(data: dict, name: str, choices: tuple[str, ...], problems: Problems, *, required: bool = False,
            default: str | None = None) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            problems.add(name, "is required")
        return default
    if value not in choices:
        problems.add(name, f"must be one of {', '.join(choices)}")
        return default
    return value


def _flag(data: dict, name: str, problems: Problems) -> bool:
    value = data.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        problems.add(name, "must be true or false")
        return False
    return value


def _currency(data: dict, name: str, problems: Problems, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        if required:
            problems.add(name, "is required")
        return None
    if not isinstance(value, str) or not is_currency(value.strip().upper()):
        problems.add(name, "must be an ISO-4217 currency code such as USD")
        return None
    return value.strip().upper()


def _records(data: dict, name: str, problems: Problems, *, required: bool, limit: int) -> list:
    value = data.get(name)
    if value is None:
        if required:
            problems.add(name, "is required")
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        problems.add(name, "must be a list of objects")
        return []
    if required and not value:
        problems.add(name, "must hold at least one item")
    if len(value) > limit:
        problems.add(name, f"must hold at most {limit} items")
        return []
    return value


# ---- records ---------------------------------------------------------------------------------

def clean_invoice(data) -> tuple[dict | None, dict[str, list[str]]]:
    """Return (the invoice with typed values, {}) or (None, its problems by field)."""
    problems = Problems()
    if not isinstance(data, dict):
        problems.add("invoice", "must be an object")
        return None, problems.by_field
    invoice = {
        "external_id": _text(data, "external_id", problems, required=True),
        "date": _moment(data, "date", problems, required=True),
        "due_date": _moment(data, "due_date", problems),
        "currency": _currency(data, "currency", problems, required=True),
        "customer_external_id": _text(data, "customer_external_id", problems),
        "data_source_uuid": _text(data, "data_source_uuid", problems),
        "collection_method": _choice(data, "collection_method", COLLECTION_METHODS, problems),
    }
    lines = _records(data, "line_items", problems, required=True, limit=MAX_LINES_PER_INVOICE)
    invoice["line_items"] = [clean_line_item(item, problems.within(f"line_items[{i}].")) for i, item in
                             enumerate(lines)]
    _check_unique_external_ids(invoice["line_items"], "line_items", problems)
    transactions = _records(data, "transactions", problems, required=False, limit=MAX_TRANSACTIONS_PER_INVOICE)
    invoice["transactions"] = [clean_transaction_fields(item, problems.within(f"transactions[{i}]."))
                               for i, item in enumerate(transactions)]
    _check_unique_external_ids(invoice["transactions"], "transactions", problems)
    if problems:
        return None, problems.by_field
    return invoice, {}


def clean_line_item(data: dict, problems: Problems) -> dict:
    """Return one line with typed values; its problems go to `problems`."""
    kind = _choice(data, "type", LINE_ITEM_TYPES, problems, required=True)
    item = {
        "type": kind,
        "external_id": _text(data, "external_id", problems),
        "amount_in_cents": _cents(data, "amount_in_cents", problems, required=True, default=0),
        "quantity": _integer(data, "quantity", problems, default=1, minimum=0),
        "tax_amount_in_cents": _cents(data, "tax_amount_in_cents", problems, default=0),
        "discount_amount_in_cents": _cents(data, "discount_amount_in_cents", problems, default=0, minimum=0),
        "discount_code": _text(data, "discount_code", problems),
        "discount_description": _text(data, "discount_description", problems),
        "transaction_fees_in_cents": _cents(data, "transaction_fees_in_cents", problems, default=0, minimum=0),
        "transaction_fees_currency": _currency(data, "transaction_fees_currency", problems),
        "account_code": _text(data, "account_code", problems),
        "description": _text(data, "description", problems),
        "event_order": _integer(data, "event_order", problems),
        "prorated": _flag(data, "prorated", problems),
        "proration_type": _choice(data, "proration_type", PRORATION_TYPES, problems, default=DIFFERENTIAL),
        "subscription_external_id": None, "subscription_set_external_id": None, "plan_uuid": None,
        "service_period_start": None, "service_period_end": None, "cancelled_at": None,
    }
    if kind == ONE_TIME:
        # A one-time charge may still say when its service ran (revenue is recognised over it).
        item["service_period_start"] = _moment(data, "service_period_start", problems)
        item["service_period_end"] = _moment(data, "service_period_end", problems)
    elif kind in SUBSCRIPTION_TYPES:
        item["subscription_external_id"] = _text(data, "subscription_external_id", problems, required=True)
        item["subscription_set_external_id"] = _text(data, "subscription_set_external_id", problems)
        item["plan_uuid"] = _text(data, "plan_uuid", problems, required=True)
        item["service_period_start"] = _moment(data, "service_period_start", problems, required=True)
        item["service_period_end"] = _moment(data, "service_period_end", problems, required=True)
        item["cancelled_at"] = _moment(data, "cancelled_at", problems)
    start, end = item["service_period_start"], item["service_period_end"]
    if start is not None and end is not None and end <= start:
        problems.add("service_period_end", "must be after service_period_start")
    _check_tax(item, problems)
    return item


def _check_tax(item: dict, problems: Problems) -> None:
    """The amount includes the tax (MRR is amount − tax), so the tax lies between 0 and the
    amount, with its sign: a negative tax or one above the amount would make MRR larger than
    what was charged, or of the other sign."""
    amount, tax = item["amount_in_cents"], item["tax_amount_in_cents"]
    if amount is None or tax is None:
        return
    if not min(0, amount) <= tax <= max(0, amount):
        problems.add("tax_amount_in_cents", f"must lie between 0 and amount_in_cents ({amount}): "
                                            "the amount includes the tax")


def clean_transaction_fields(data: dict, problems: Problems) -> dict:
    """Return one transaction with typed values; its problems go to `problems`."""
    return {
        "type": _choice(data, "type", (PAYMENT, REFUND), problems, required=True),
        "result": _choice(data, "result", (SUCCESSFUL, FAILED), problems, required=True),
        "date": _moment(data, "date", problems, required=True),
        "amount_in_cents": _cents(data, "amount_in_cents", problems, minimum=0),
        "external_id": _text(data, "external_id", problems),
        "transaction_fees_in_cents": _cents(data, "transaction_fees_in_cents", problems, minimum=0),
        "transaction_fees_currency": _currency(data, "transaction_fees_currency", problems),
    }


def clean_transaction(data) -> dict:
    """Return a transaction to import on its own; the first problem is a 422 naming its field."""
    problems = Problems()
    if not isinstance(data, dict):
        raise invalid("transaction", "must be an object")
    transaction = clean_transaction_fields(data, problems)
    if problems:
        raise problems.first()
    return transaction


def _check_unique_external_ids(records: list[dict], name: str, problems: Problems) -> None:
    seen = set()
    for index, record in enumerate(records):
        external_id = record.get("external_id")
        if external_id is None:
            continue
        if external_id in seen:
            problems.add(f"{name}[{index}].external_id", "is used twice in this invoice")
        seen.add(external_id)


def clean_plan(data, *, creating: bool) -> dict:
    """Return a plan's fields (all of them when `creating`, the ones given otherwise); a 422 names the field."""
    if not isinstance(data, dict):
        raise invalid("plan", "must be an object")
    problems = Problems()
    plan = {}
    if creating or "name" in data:
        plan["name"] = _text(data, "name", problems, required=True)
    if creating or "interval_count" in data:
        count = data.get("interval_count")
        if count is None:
            problems.add("interval_count", "is required")
        else:
            plan["interval_count"] = _integer(data, "interval_count", problems, minimum=1,
                                              maximum=MAX_INTERVAL_COUNT)
    if creating or "interval_unit" in data:
        plan["interval_unit"] = _choice(data, "interval_unit", INTERVAL_UNITS, problems, required=True)
    if creating:
        plan["data_source_uuid"] = _text(data, "data_source_uuid", problems, required=True)
        plan["external_id"] = _text(data, "external_id", problems)
    if problems:
        raise problems.first()
    return plan


def clean_cancellation(data) -> tuple[str, list[datetime]]:
    """Return ("add", [at]) for `cancelled_at`, or ("replace", dates) for `cancellation_dates`."""
    if not isinstance(data, dict):
        raise invalid("cancelled_at", "give cancelled_at or cancellation_dates")
    problems = Problems()
    if data.get("cancellation_dates") is not None:
        dates = data["cancellation_dates"]
        if not isinstance(dates, list) or len(dates) > 1000:
            raise invalid("cancellation_dates", "must be a list of at most 1000 date-times")
        found = []
        for index, value in enumerate(dates):
            moment = _moment({"value": value}, "value", problems.within(f"cancellation_dates[{index}]."),
                             required=True)
            if moment is not None:
                found.append(moment)
        if problems:
            name, reasons = next(iter(problems.by_field.items()))
            raise invalid(name.removesuffix(".value"), reasons[0])
        return "replace", sorted(set(found))
    if data.get("cancelled_at") is not None:
        moment = _moment(data, "cancelled_at", problems, required=True)
        if problems:
            raise problems.first()
        return "add", [moment]
    raise invalid("cancelled_at", "give cancelled_at or cancellation_dates")


def clean_subscription_refs(data, *, minimum: int) -> list[dict]:
    """Return the `subscriptions` of a connect/disconnect body: [{data_source_uuid, uuid}]."""
    refs = data.get("subscriptions") if isinstance(data, dict) else None
    if not isinstance(refs, list) or len(refs) < minimum or len(refs) > 100:
        raise invalid("subscriptions", f"must be a list of {minimum} to 100 subscriptions")
    cleaned = []
    for index, ref in enumerate(refs):
        problems = Problems(f"subscriptions[{index}].")
        if not isinstance(ref, dict):
            raise invalid(f"subscriptions[{index}]", "must be an object with data_source_uuid and uuid")
        uuid = _text(ref, "uuid", problems, required=True)
        source = _text(ref, "data_source_uuid", problems)
        if problems:
            raise problems.first()
        cleaned.append({"uuid": uuid, "data_source_uuid": source})
    return cleaned


def clean_rates(currency, rates, *, account_currency: str) -> tuple[str, list[tuple[date, Decimal]]]:
    """Return (currency, [(day, rate)] sorted by day) for `PUT /exchange_rates/{currency}`."""
    code = currency.strip().upper() if isinstance(currency, str) else ""
    if not is_currency(code):
        raise invalid("currency", "must be an ISO-4217 currency code such as EUR")
    if code == account_currency:
        raise invalid("currency", f"{code} is the account currency; it always converts at 1")
    if not isinstance(rates, list) or not 1 <= len(rates) <= MAX_RATES_PER_REQUEST:
        raise invalid("rates", f"must be a list of 1 to {MAX_RATES_PER_REQUEST} dated rates")
    found: dict[date, Decimal] = {}
    for index, entry in enumerate(rates):
        name = f"rates[{index}]"
        if not isinstance(entry, dict):
            raise invalid(name, "must be an object with date and rate")
        day = parse_date(entry.get("date"), f"{name}.date")
        if day is None:
            raise invalid(f"{name}.date", "is required")
        if day in found:
            raise invalid(f"{name}.date", f"{day.isoformat()} is given twice")
        found[day] = _rate(entry.get("rate"), f"{name}.rate")
    return code, sorted(found.items())


def _rate(value, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise invalid(name, "must be a positive decimal number (a string such as \"1.0825\")")
    try:
        rate = Decimal(str(value).strip())
    except InvalidOperation:
        raise invalid(name, "must be a positive decimal number (a string such as \"1.0825\")")
    if not rate.is_finite() or rate <= 0 or rate > Decimal(10**9) or len(str(value)) > 40:
        raise invalid(name, "must be a positive decimal number below 1000000000")
    return rate


def clean_metrics_query(query: dict) -> dict:
    """Return {start, end, interval} of a metrics request; the dates are required."""
    for refused in ("geo", "plans", "filters"):
        if query.get(refused):
            raise invalid(refused, "filtering metrics is not supported yet")
    start = parse_date(query.get("start-date"), "start-date")
    end = parse_date(query.get("end-date"), "end-date")
    if start is None:
        raise invalid("start-date", "is required (YYYY-MM-DD)")
    if end is None:
        raise invalid("end-date", "is required (YYYY-MM-DD)")
    if (end - start).days > 366 * 30:
        raise invalid("end-date", "must be at most 30 years after start-date")
    return {"start": start, "end": end, "interval": query.get("interval") or "month"}


def line_count(invoice) -> int:
    """Return how many line items an invoice (as sent) lists; 0 for one that is not an object."""
    lines = invoice.get("line_items") if isinstance(invoice, dict) else None
    return len(lines) if isinstance(lines, list) else 0


def import_batches(invoices: list, *, max_invoices: int = MAX_INVOICES_PER_REQUEST,
                   max_lines: int = MAX_LINES_PER_REQUEST) -> list[list]:
    """Split invoices, in order, into batches that one import request may carry."""
    batches, lines = [[]], 0
    for invoice in invoices:
        count = line_count(invoice)
        if batches[-1] and (len(batches[-1]) == max_invoices or lines + count > max_lines):
            batches.append([])
            lines = 0
        batches[-1].append(invoice)
        lines += count
    return [batch for batch in batches if batch]
