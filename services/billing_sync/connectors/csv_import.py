"""Streaming reader of the CSV import layout (docs/csv-import.md): one file, one `record_type` column.

`iter_records(text_stream)` yields, in file order, a `Record` per customer, contact and plan row and per
invoice (with its line items and transactions gathered from the rows right after it), and a `BadRow`
(line, field, reason) per row that cannot be imported; the rows after a bad one go on. It holds one row
and at most one invoice in memory, never the file. `iter_rows` is the same without grouping.

Open files with `newline=""` (csv's rule for quoted line breaks); for an upload held as bytes:
`io.TextIOWrapper(binary_stream, encoding="utf-8-sig", newline="")`.
"""
import csv
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

from services.billing_sync.connectors.errors import ConnectorError
from services.billing_sync.connectors.shapes import PLAN_INTERVAL_UNITS, iso_utc

RECORD_TYPES = ("customer", "contact", "plan", "invoice", "line_item", "transaction")
CHILD_TYPES = ("line_item", "transaction")  # rows that belong to the invoice row before them


class CsvLayoutError(ConnectorError):
    """The header is unusable (no record_type column, an unknown or repeated column): nothing is read."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"line 1: {field}: {reason}")
        self.line, self.field, self.reason = 1, field, reason


@dataclass(frozen=True)
class Record:
    """A row (or an invoice with its rows) in import shape; `line` is where it starts in the file."""

    line: int
    kind: str
    data: dict


@dataclass(frozen=True)
class BadRow:
    """A row that cannot be imported: its line, the field to blame and why."""

    line: int
    field: str
    reason: str
    record_type: str | None = None
    invoice_external_id: str | None = None  # the invoice a line_item/transaction row names, or an invoice row's own id

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


# -- cell parsers: raw text -> value, or ValueError(reason) ---------------------------------------
def _text(raw: str) -> str:
    return raw


def _integer(raw: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", raw):
        raise ValueError(f"{raw!r} is not a whole number")
    return int(raw)


def _cents(raw: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", raw):
        raise ValueError(f"{raw!r} is not a whole number of cents")
    return int(raw)


def _non_negative_cents(raw: str) -> int:
    value = _cents(raw)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _positive_integer(raw: str) -> int:
    value = _integer(raw)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _non_negative_integer(raw: str) -> int:
    value = _integer(raw)
    if value < 0:
        raise ValueError("must not be negative")
    return value


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{raw!r} is not true or false")


def _timestamp(raw: str) -> str:
    """Return an ISO-8601 date or datetime as a UTC string; a date is its midnight UTC, no offset means UTC."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            moment = datetime.combine(date.fromisoformat(raw), datetime.min.time())
        else:
            moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not an ISO-8601 date or datetime") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return iso_utc(moment)


def _currency(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{3}", raw):
        raise ValueError(f"{raw!r} is not an ISO-4217 currency code")
    return raw.upper()


def _country(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{2}", raw):
        raise ValueError(f"{raw!r} is not an ISO-3166 alpha-2 country code")
    return raw.upper()


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in choices:
            raise ValueError(f"{raw!r} is not one of {', '.join(choices)}")
        return raw.lower()
    return parse


# -- the layout ------------------------------------------------------------------------------
REQUIRED = object()  # a default meaning "the cell must not be empty"


@dataclass(frozen=True)
class Column:
    name: str
    parse: Callable[[str], object]
    default: object = None  # for an empty cell; REQUIRED makes it an error


# Per record type, the columns it uses, in the order the import shape lists them.
LAYOUT: dict[str, tuple[Column, ...]] = {
    "customer": (
        Column("external_id", _text, REQUIRED), Column("name", _text, ""), Column("email", _text, ""),
        Column("company", _text, ""), Column("country", _country), Column("state", _text),
        Column("city", _text), Column("zip", _text), Column("website_url", _text),
        Column("lead_created_at", _timestamp),
    ),
    "contact": (
        Column("external_id", _text), Column("customer_external_id", _text, REQUIRED),
        Column("first_name", _text), Column("last_name", _text), Column("email", _text),
        Column("phone", _text), Column("title", _text),
    ),
    "plan": (
        Column("external_id", _text, REQUIRED), Column("name", _text, REQUIRED),
        Column("interval_count", _positive_integer, REQUIRED),
        Column("interval_unit", _one_of(*PLAN_INTERVAL_UNITS), REQUIRED),
    ),
    "invoice": (
        Column("external_id", _text, REQUIRED), Column("customer_external_id", _text, REQUIRED),
        Column("date", _timestamp, REQUIRED), Column("due_date", _timestamp),
        Column("currency", _currency, REQUIRED), Column("collection_method", _one_of("automatic", "manual")),
    ),
    "line_item": (
        Column("invoice_external_id", _text, REQUIRED),
        Column("type", _one_of("subscription", "one_time", "trial"), REQUIRED),
        Column("external_id", _text), Column("amount_in_cents", _cents, REQUIRED),
        Column("tax_amount_in_cents", _non_negative_cents, 0),
        Column("discount_amount_in_cents", _non_negative_cents, 0),
        Column("quantity", _non_negative_integer, 1), Column("prorated", _boolean, False),
        Column("description", _text), Column("service_period_start", _timestamp),
        Column("service_period_end", _timestamp), Column("subscription_external_id", _text),
        Column("plan_external_id", _text), Column("cancelled_at", _timestamp),
    ),
    "transaction": (
        Column("invoice_external_id", _text, REQUIRED), Column("type", _one_of("payment", "refund"), REQUIRED),
        Column("result", _one_of("successful", "failed"), REQUIRED), Column("date", _timestamp, REQUIRED),
        Column("amount_in_cents", _non_negative_cents), Column("external_id", _text),
    ),
}
COLUMNS = ("record_type", *dict.fromkeys(column.name for columns in LAYOUT.values() for column in columns))
_USED_BY = {kind: {column.name for column in columns} for kind, columns in LAYOUT.items()}


def _check_contact(data: dict) -> tuple[str, str] | None:
    if not (data["first_name"] or data["last_name"] or data["email"]):
        return "email", "a contact needs a first_name, a last_name or an email"
    return None


def _check_line_item(data: dict) -> tuple[str, str] | None:
    if data["type"] in ("subscription", "trial"):
        for name in ("subscription_external_id", "plan_external_id", "service_period_start", "service_period_end"):
            if data[name] is None:
                return name, f"required for a {data['type']} line item"
        if data["service_period_end"] <= data["service_period_start"]:
            return "service_period_end", "must be after service_period_start"
    return None


_CHECKS = {"contact": _check_contact, "line_item": _check_line_item}


# -- reading -----------------------------------------------------------------------------------
def _header(row: list[str]) -> list[str]:
    """Return the normalised column names; raise CsvLayoutError for an unusable header."""
    names = [cell.strip().lower() for cell in row]
    if names and names[0].startswith("\ufeff"):
        names[0] = names[0][1:]  # a byte-order mark read as text
    if "record_type" not in names:
        raise CsvLayoutError("record_type", "the header has no record_type column")
    for name in names:
        if name not in COLUMNS:
            raise CsvLayoutError(name or "(empty)", "unknown column; see docs/csv-import.md for the layout")
        if names.count(name) > 1:
            raise CsvLayoutError(name, "the column appears twice")
    return names


def _row(cells: dict[str, str], line: int) -> Record | BadRow:
    """Return the import shape of one row, or what is wrong with it."""
    raw_type = cells.get("record_type", "")
    kind = raw_type.lower()
    parent = (cells.get("external_id") if kind == "invoice" else cells.get("invoice_external_id")) or None
    if kind not in LAYOUT:
        reason = "missing" if not raw_type else f"{raw_type!r} is not one of {', '.join(RECORD_TYPES)}"
        return BadRow(line, "record_type", reason)
    for name, value in cells.items():
        if value and name != "record_type" and name not in _USED_BY[kind]:
            return BadRow(line, name, f"not used by {kind} rows; leave it empty", kind, parent)
    data = {}
    for column in LAYOUT[kind]:
        raw = cells.get(column.name, "")
        if not raw:
            if column.default is REQUIRED:
                return BadRow(line, column.name, "missing", kind, parent)
            if kind != "customer":
                data[column.name] = column.default
            # a customer's empty cell is "no value": left out, so a sync keeps what the customer has
            continue
        try:
            data[column.name] = column.parse(raw)
        except ValueError as exc:
            return BadRow(line, column.name, str(exc), kind, parent)
    check = _CHECKS.get(kind)
    problem = check(data) if check else None
    if problem:
        return BadRow(line, *problem, kind, parent)
    return Record(line, kind, data)


def iter_rows(text_stream: Iterable[str]) -> Iterator[Record | BadRow]:
    """Yield each data row as a Record or a BadRow, in file order; raise CsvLayoutError for a bad header."""
    reader = csv.reader(text_stream)
    names = None
    last_line = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a NUL byte, or a quote left open until the field grew too long
            yield BadRow(last_line + 1, "row", f"unreadable CSV: {exc}")
            last_line = reader.line_num
            continue
        line, last_line = last_line + 1, reader.line_num
        if names is None:
            names = _header(row)
            continue
        if not any(cell.strip() for cell in row):
            continue  # blank line
        if len(row) > len(names):
            yield BadRow(line, "row", f"{len(row)} cells, but the header has {len(names)} columns")
            continue
        yield _row({name: cell.strip() for name, cell in zip(names, row)}, line)


@dataclass
class _OpenInvoice:
    line: int
    external_id: str | None
    data: dict | None  # None: the invoice row itself was bad (already reported)
    spoiled_by: BadRow | None = None


def iter_records(text_stream: Iterable[str]) -> Iterator[Record | BadRow]:
    """Yield customers, contacts, plans and whole invoices as Records, and BadRows, streaming.

    The line_item and transaction rows of an invoice must follow its invoice row. An invoice with a bad
    row among its own is not imported: the bad row is reported, then the invoice (naming that line).
    """
    open_invoice: _OpenInvoice | None = None
    for item in iter_rows(text_stream):
        kind = item.kind if isinstance(item, Record) else item.record_type
        parent = item.data["invoice_external_id"] if isinstance(item, Record) and kind in CHILD_TYPES else (
            item.invoice_external_id if isinstance(item, BadRow) else None)
        if kind in CHILD_TYPES and open_invoice is not None and (
                parent in (open_invoice.external_id, None) or open_invoice.external_id is None):
            # Rows whose invoice id is missing on either side are matched by position: they must not vanish.
            if isinstance(item, BadRow):
                yield item
                open_invoice.spoiled_by = open_invoice.spoiled_by or item
            elif open_invoice.data is not None:
                key = "line_items" if kind == "line_item" else "transactions"
                open_invoice.data[key].append(_child(item.data))
            continue
        if open_invoice is not None:
            yield from _close(open_invoice)
            open_invoice = None
        if kind == "invoice":
            if isinstance(item, Record):
                open_invoice = _OpenInvoice(item.line, item.data["external_id"],
                                            {**item.data, "line_items": [], "transactions": []})
            else:
                yield item
                open_invoice = _OpenInvoice(item.line, item.invoice_external_id, None)
            continue
        if kind in CHILD_TYPES and isinstance(item, Record):
            yield BadRow(item.line, "invoice_external_id",
                         f"no invoice {parent!r} right before this row: the rows of an invoice must follow it",
                         kind, parent)
            continue
        yield item
    if open_invoice is not None:
        yield from _close(open_invoice)


def _child(data: dict) -> dict:
    """Return a line item or transaction without its invoice_external_id (the invoice holds it)."""
    return {key: value for key, value in data.items() if key != "invoice_external_id"}


def _close(invoice: _OpenInvoice) -> Iterator[Record | BadRow]:
    """Yield the finished invoice, or why it is not imported."""
    if invoice.data is None:
        return  # its own row was reported bad; its rows go with it
    if invoice.spoiled_by is not None:
        key = "line_items" if invoice.spoiled_by.record_type == "line_item" else "transactions"
        yield BadRow(invoice.line, key, f"invoice {invoice.external_id!r} not imported: line "
                                        f"{invoice.spoiled_by.line} is invalid", "invoice")
    elif not invoice.data["line_items"]:
        yield BadRow(invoice.line, "line_items", "an invoice needs at least one line_item row right after it",
                     "invoice")
    else:
        yield Record(invoice.line, "invoice", invoice.data)


def count_lines(binary_stream, chunk_size: int = 1 << 20) -> int:
    """Return the number of lines of a file read in chunks (a progress total; quoted line breaks count too)."""
    lines, last = 0, b""
    while chunk := binary_stream.read(chunk_size):
        lines += chunk.count(b"\n")
        last = chunk
    return lines + (1 if last and not last.endswith(b"\n") else 0)
