"""The CSV import reader: the documented layout, bad rows by line and field, grouping and streaming."""
import csv
import io
import re
import time
import tracemalloc
from pathlib import Path

import pytest

from services.billing_sync.connectors.csv_import import (
    COLUMNS,
    BadRow,
    CsvLayoutError,
    Record,
    count_lines,
    iter_records,
    iter_rows,
)

ROOT = Path(__file__).resolve().parents[2]


def csv_text(*rows: dict, columns=COLUMNS) -> str:
    """Return a CSV file with the given columns and one line per row dict."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def read(text: str, reader=iter_records) -> list:
    return list(reader(io.StringIO(text, newline="")))


def bad(items) -> list[tuple[int, str]]:
    return [(item.line, item.field) for item in items if isinstance(item, BadRow)]


def good(items) -> list[Record]:
    return [item for item in items if isinstance(item, Record)]


CUSTOMER = {"record_type": "customer", "external_id": "cus_1", "name": "Ada Lovelace", "email": "ada@example.com"}
PLAN = {"record_type": "plan", "external_id": "gold", "name": "Gold", "interval_count": "1", "interval_unit": "month"}


def invoice(external_id="inv_1", **cells) -> dict:
    return {"record_type": "invoice", "external_id": external_id, "customer_external_id": "cus_1",
            "date": "2024-01-01", "currency": "usd", **cells}


def line_item(invoice_id="inv_1", **cells) -> dict:
    return {"record_type": "line_item", "invoice_external_id": invoice_id, "type": "subscription",
            "amount_in_cents": "5000", "subscription_external_id": "sub_1", "plan_external_id": "gold",
            "service_period_start": "2024-01-01", "service_period_end": "2024-02-01", **cells}


def payment(invoice_id="inv_1", **cells) -> dict:
    return {"record_type": "transaction", "invoice_external_id": invoice_id, "type": "payment",
            "result": "successful", "date": "2024-01-01T10:00:00+02:00", "amount_in_cents": "5000", **cells}


# -- the documented layout -------------------------------------------------------------------------
def test_the_example_in_the_docs_reads_as_documented():
    doc = (ROOT / "docs" / "csv-import.md").read_text()
    example = re.search(r"```csv\n(.*?)```", doc, re.S).group(1)
    records = read(example)
    assert bad(records) == []
    assert [(r.line, r.kind) for r in records] == [(2, "plan"), (3, "customer"), (4, "contact"), (5, "invoice")]
    inv = records[3].data
    assert [(i["type"], i["amount_in_cents"], i["tax_amount_in_cents"]) for i in inv["line_items"]] == [
        ("subscription", 5500, 500), ("one_time", 10000, 0)]
    assert inv["transactions"] == [{"type": "payment", "result": "successful", "date": "2024-01-01T00:00:00Z",
                                    "amount_in_cents": 15500, "external_id": "pay_1"}]


def test_every_column_in_the_docs_table_is_a_column_of_the_reader():
    doc = (ROOT / "docs" / "csv-import.md").read_text()
    table = doc.split("## Columns by record type")[1].split("## Example")[0]
    documented = {"record_type"} | set(re.findall(r"`([a-z_]+)`", table))
    assert set(COLUMNS) <= documented


def test_rows_map_to_import_shapes():
    contact = {"record_type": "contact", "customer_external_id": "cus_1", "first_name": "Ada", "email": "a@x.io"}
    customer = {**CUSTOMER, "country": "gb", "lead_created_at": "2023-12-24T18:00:00-05:00"}
    records = read(csv_text(customer, contact, PLAN))
    assert [r.data for r in records] == [
        # a customer's empty cells are left out: a sync of an existing customer keeps those values
        {"external_id": "cus_1", "name": "Ada Lovelace", "email": "ada@example.com", "country": "GB",
         "lead_created_at": "2023-12-24T23:00:00Z"},
        {"external_id": None, "customer_external_id": "cus_1", "first_name": "Ada", "last_name": None,
         "email": "a@x.io", "phone": None, "title": None},
        {"external_id": "gold", "name": "Gold", "interval_count": 1, "interval_unit": "month"},
    ]


def test_an_invoice_gathers_the_rows_after_it():
    records = read(csv_text(invoice(), line_item(), line_item(type="one_time", amount_in_cents="-300",
                                                              subscription_external_id="", plan_external_id="",
                                                              service_period_start="", service_period_end=""),
                            payment(), invoice("inv_2"), line_item("inv_2", prorated="TRUE", quantity="3")))
    first, second = records
    assert (first.line, second.line) == (2, 6)
    assert first.data["currency"] == "USD" and first.data["date"] == "2024-01-01T00:00:00Z"
    assert [(i["type"], i["amount_in_cents"]) for i in first.data["line_items"]] == [
        ("subscription", 5000), ("one_time", -300)]
    assert first.data["transactions"][0]["date"] == "2024-01-01T08:00:00Z"
    assert "invoice_external_id" not in first.data["line_items"][0]
    assert (second.data["line_items"][0]["prorated"], second.data["line_items"][0]["quantity"]) == (True, 3)


def test_the_header_may_hold_only_the_columns_used_in_any_order_and_case():
    text = "Email,External_ID,RECORD_TYPE\nada@example.com,cus_1,Customer\n"
    [record] = read(text)
    assert (record.kind, record.data["external_id"], record.data["email"]) == ("customer", "cus_1", "ada@example.com")


def test_a_byte_order_mark_is_not_part_of_the_first_column():
    stream = io.TextIOWrapper(io.BytesIO("record_type,external_id\ncustomer,cus_1\n".encode("utf-8-sig")),
                              encoding="utf-8", newline="")
    assert [r.kind for r in iter_records(stream)] == ["customer"]


@pytest.mark.parametrize("header, field", [
    ("external_id,name", "record_type"),
    ("record_type,external_id,emial", "emial"),
    ("record_type,external_id,external_id", "external_id"),
    ("record_type,,name", "(empty)"),
])
def test_an_unusable_header_stops_before_any_row(header, field):
    with pytest.raises(CsvLayoutError) as exc_info:
        read(header + "\ncustomer,cus_1,x\n")
    assert (exc_info.value.line, exc_info.value.field) == (1, field)


# -- bad rows -------------------------------------------------------------------------------
@pytest.mark.parametrize("row, field, reason", [
    ({"record_type": "customr", "external_id": "x"}, "record_type", "'customr' is not one of customer, contact"),
    ({"external_id": "x"}, "record_type", "missing"),
    ({**CUSTOMER, "external_id": ""}, "external_id", "missing"),
    ({**CUSTOMER, "country": "Britain"}, "country", "is not an ISO-3166 alpha-2 country code"),
    ({**CUSTOMER, "lead_created_at": "31/01/2024"}, "lead_created_at", "is not an ISO-8601 date or datetime"),
    ({**CUSTOMER, "amount_in_cents": "100"}, "amount_in_cents", "not used by customer rows"),
    ({"record_type": "contact", "customer_external_id": "cus_1"}, "email", "needs a first_name, a last_name or"),
    ({**PLAN, "interval_unit": "week"}, "interval_unit", "'week' is not one of day, month, year"),
    ({**PLAN, "interval_count": "0"}, "interval_count", "must be at least 1"),
    ({**PLAN, "interval_count": "1.5"}, "interval_count", "is not a whole number"),
    ({**PLAN, "name": ""}, "name", "missing"),
])
def test_a_bad_row_names_its_line_and_field_and_the_next_rows_go_on(row, field, reason):
    items = read(csv_text(CUSTOMER, row, PLAN))
    [problem] = [item for item in items if isinstance(item, BadRow)]
    assert (problem.line, problem.field) == (3, field)
    assert reason in problem.reason
    assert [(r.line, r.kind) for r in good(items)] == [(2, "customer"), (4, "plan")]


@pytest.mark.parametrize("cells, field, reason", [
    ({"amount_in_cents": "50.00"}, "amount_in_cents", "'50.00' is not a whole number of cents"),
    ({"amount_in_cents": ""}, "amount_in_cents", "missing"),
    ({"tax_amount_in_cents": "-1"}, "tax_amount_in_cents", "must not be negative"),
    ({"type": "discount"}, "type", "is not one of subscription, one_time, trial"),
    ({"prorated": "maybe"}, "prorated", "'maybe' is not true or false"),
    ({"plan_external_id": ""}, "plan_external_id", "required for a subscription line item"),
    ({"service_period_end": "2023-12-01"}, "service_period_end", "must be after service_period_start"),
    ({"service_period_start": "2024-13-01"}, "service_period_start", "is not an ISO-8601"),
])
def test_a_bad_line_item_is_reported_and_holds_its_invoice_back(cells, field, reason):
    items = read(csv_text(invoice(), line_item(**cells), payment(), invoice("inv_2"), line_item("inv_2")))
    row_error, invoice_error = [item for item in items if isinstance(item, BadRow)]
    assert (row_error.line, row_error.field) == (3, field) and reason in row_error.reason
    assert (invoice_error.line, invoice_error.field) == (2, "line_items")
    assert invoice_error.reason == "invoice 'inv_1' not imported: line 3 is invalid"
    assert [r.data["external_id"] for r in good(items)] == ["inv_2"]


def test_a_bad_transaction_holds_its_invoice_back():
    items = read(csv_text(invoice(), line_item(), payment(result="ok")))
    assert bad(items) == [(4, "result"), (2, "transactions")]
    assert good(items) == []


def test_the_rows_of_a_bad_invoice_go_with_it_and_the_next_invoice_imports():
    items = read(csv_text(invoice(currency="dollars"), line_item(), payment(), invoice("inv_2"), line_item("inv_2")))
    assert bad(items) == [(2, "currency")]
    assert [r.data["external_id"] for r in good(items)] == ["inv_2"]


def test_the_rows_of_an_invoice_without_external_id_go_with_it():
    items = read(csv_text(invoice(""), line_item(), CUSTOMER))
    assert bad(items) == [(2, "external_id")]
    assert [r.kind for r in good(items)] == ["customer"]


def test_a_line_item_that_does_not_follow_its_invoice_is_an_error():
    items = read(csv_text(invoice(), line_item(), CUSTOMER, line_item(), line_item("inv_9")))
    assert bad(items) == [(5, "invoice_external_id"), (6, "invoice_external_id")]
    assert "the rows of an invoice must follow it" in items[-1].reason
    assert [r.kind for r in good(items)] == ["invoice", "customer"]
    assert len(good(items)[0].data["line_items"]) == 1


def test_a_line_item_without_invoice_id_after_an_invoice_holds_it_back():
    items = read(csv_text(invoice(), line_item(), line_item(invoice_external_id="")))
    assert bad(items) == [(4, "invoice_external_id"), (2, "line_items")]


def test_an_invoice_without_line_items_is_an_error_on_its_line():
    items = read(csv_text(invoice(), payment(), CUSTOMER))
    assert bad(items) == [(2, "line_items")]
    assert [r.kind for r in good(items)] == ["customer"]


def test_line_numbers_count_quoted_line_breaks_and_blank_lines():
    text = ('record_type,external_id,name\n'
            'customer,cus_1,"Ada\nLovelace"\n'
            '\n'
            'customer,cus_2,"Bob ""the builder"""\n'
            'customer,,nameless\n')
    items = read(text)
    assert [(r.line, r.data["name"]) for r in good(items)] == [(2, "Ada\nLovelace"), (5, 'Bob "the builder"')]
    assert bad(items) == [(6, "external_id")]


def test_a_row_with_more_cells_than_columns_is_an_error():
    items = read("record_type,external_id\ncustomer,cus_1,surplus\ncustomer,cus_2\n")
    assert bad(items) == [(2, "row")]
    assert [r.data["external_id"] for r in good(items)] == ["cus_2"]


def test_a_quote_left_open_is_reported_without_swallowing_the_file():
    # csv stops a field at 131,072 characters, so an open quote cannot pull the whole file into memory.
    runaway = 'customer,"' + "x" * 200_000 + "\n"
    items = read("record_type,external_id\n" + runaway + "customer,cus_2\n", reader=iter_rows)
    assert bad(items) == [(2, "row")] and "field larger than field limit" in items[0].reason
    assert [r.data["external_id"] for r in good(items)] == ["cus_2"]


# -- streaming -------------------------------------------------------------------------------
def test_records_come_out_before_the_input_is_read_to_the_end():
    consumed = []

    def lines():
        yield from csv_text(CUSTOMER, columns=("record_type", "external_id", "name", "email")).splitlines(True)
        for n in range(1_000):
            consumed.append(n)
            yield f"customer,cus_{n},Name {n},\n"

    records = iter_records(lines())
    assert next(records).data["external_id"] == "cus_1"
    assert next(records).data["external_id"] == "cus_0"
    assert len(consumed) <= 2


def write_big_file(path: Path, rows: int) -> tuple[int, int]:
    """Write a file of about `rows` data rows (customers, contacts, invoices with 2 lines and a payment),
    one row in 1,000 broken. Returns (data rows written, broken rows)."""
    written = broken = 0
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerow(PLAN)
        written += 1
        n = 0
        while written + 6 <= rows:
            customer_id, invoice_id = f"cus_{n}", f"inv_{n}"
            amount = "49.99" if n % 1000 == 999 else "4999"  # a bad line item spoils its invoice
            broken += amount == "49.99"
            writer.writerows([
                {**CUSTOMER, "external_id": customer_id, "email": f"c{n}@example.com"},
                {"record_type": "contact", "customer_external_id": customer_id, "first_name": f"First{n}"},
                invoice(invoice_id, customer_external_id=customer_id),
                line_item(invoice_id, amount_in_cents=amount),
                line_item(invoice_id, type="one_time", amount_in_cents="1000", subscription_external_id="",
                          plan_external_id="", service_period_start="", service_period_end=""),
                payment(invoice_id, amount_in_cents="5999"),
            ])
            written += 6
            n += 1
    return written, broken


def test_a_100000_row_file_streams_in_constant_memory(tmp_path, capsys):
    path = tmp_path / "big.csv"
    rows, broken = write_big_file(path, 100_000)
    counts = {"customer": 0, "contact": 0, "plan": 0, "invoice": 0, "bad": 0}
    tracemalloc.start()
    started = time.perf_counter()
    with path.open(newline="") as handle:
        for item in iter_records(handle):
            counts["bad" if isinstance(item, BadRow) else item.kind] += 1
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = path.stat().st_size
    with capsys.disabled():
        print(f"\n[csv import] {rows:,} rows, {size / 1e6:.1f} MB file: peak traced memory {peak / 1e3:.0f} kB "
              f"({elapsed:.1f} s under tracemalloc)")
    customers = (rows - 1) // 6
    assert counts == {"customer": customers, "contact": customers, "plan": 1,
                      "invoice": customers - broken, "bad": 2 * broken}
    assert rows >= 99_990 and broken == 16
    # Constant memory: a small fraction of the file (about 8 MB), whatever its length.
    assert peak < 1_000_000 < size


def test_count_lines_counts_a_last_line_without_newline():
    assert count_lines(io.BytesIO(b"a\nb\nc")) == 3
    assert count_lines(io.BytesIO(b"a\nb\n"), chunk_size=1) == 2
    assert count_lines(io.BytesIO(b"")) == 0
