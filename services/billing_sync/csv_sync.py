"""The csv_import job: stream an uploaded file (`connectors.csv_import.iter_records`) into a data source.

A row at a time, never the file: customers go through the customers service's `sync_customer`,
contacts through the contacts service's `sync_contacts`, plans and invoices (with their line
items and transactions) through this service's import commands. A bad row is counted and
listed as `line N` with its field while the others import. Progress (counts and the line
reached, `cursor`) is saved every CHECKPOINT_ROWS rows; a worker that dies is replaced by one
that carries on after the last saved line (re-doing at most CHECKPOINT_ROWS rows, which the
imports skip as already there).
"""
import logging
import time

from roster.errors import NotFound, RosterError, ServiceUnavailable
from roster.uow import UnitOfWork
from services.billing_sync import commands, jobs, sync_jobs
from services.billing_sync.connectors.csv_import import BadRow, CsvLayoutError, Record, count_lines, iter_records
from services.billing_sync.connectors.errors import UnknownPlan
from services.billing_sync.connectors.shapes import with_plan_uuids
from services.billing_sync.sync import JobFailed, KnownCustomer, Tally, import_plans, plan_uuids, split_invoices

log = logging.getLogger(__name__)

CHECKPOINT_ROWS = 1000
MAX_REMEMBERED = 10_000  # customer and plan ids kept in memory, so a big file does not grow it without end


def count_rows(path: str) -> int:
    """Return the file's number of lines after the header (a quick streaming pass, for progress)."""
    with open(path, "rb") as stream:
        return max(0, count_lines(stream) - 1)


def import_file(uow: UnitOfWork, ticket: sync_jobs.Ticket, ports) -> None:
    if not ticket.file_path:
        raise JobFailed("the job has no uploaded file")
    try:
        total = count_rows(ticket.file_path)
    except OSError as exc:
        raise JobFailed(f"the uploaded file cannot be read: {exc.strerror}")
    resume_after = int(ticket.cursor or 0)
    sync_jobs.report(uow, ticket.uuid, total=total)
    source_uuid = ticket.data_source_uuid
    customers: dict[str, dict] = {}
    plans: dict[str, str] = {}
    tally, rows_since, started = Tally(), 0, time.monotonic()  # rows since the last checkpoint
    last_line = resume_after

    def customer_record(external_id: str) -> dict | None:
        if external_id not in customers:
            if len(customers) >= MAX_REMEMBERED:
                customers.clear()
            try:
                customers[external_id] = _brief(ports.customers.find_customer(source_uuid, external_id))
            except NotFound:
                return None
        return customers[external_id]

    run_processed = run_failed = 0  # this run's, for the progress lines

    def checkpoint(line: int) -> None:
        nonlocal tally, run_processed, run_failed
        sync_jobs.report(uow, ticket.uuid, processed=tally.processed, failed=tally.failed, errors=tally.errors,
                         cursor=str(line))
        run_processed += tally.processed
        run_failed += tally.failed
        log.info("%s", jobs.Progress(run_processed, run_failed, total, time.monotonic() - started).line(
            f"csv_import {ticket.uuid} at line {line}"))
        tally = Tally()

    try:
        with open(ticket.file_path, encoding="utf-8-sig", newline="") as stream:
            for item in iter_records(stream):
                if item.line <= resume_after:
                    continue
                last_line = item.line
                if isinstance(item, BadRow):
                    tally.bad(f"line {item.line}", item.field, item.reason)
                    rows_since += 1
                else:
                    rows_since += _rows_of(item)
                    _import_record(uow, item, ticket, ports, tally, customers, plans, customer_record)
                if rows_since >= CHECKPOINT_ROWS:
                    checkpoint(item.line)
                    rows_since = 0
    except CsvLayoutError as exc:
        tally.bad(f"line {exc.line}", exc.field, exc.reason)
        sync_jobs.report(uow, ticket.uuid, failed=tally.failed, errors=tally.errors)
        raise JobFailed(f"the file's header is unusable: {exc.field}: {exc.reason}")
    except UnicodeDecodeError as exc:
        raise JobFailed(f"the file is not UTF-8 text (byte {exc.start} of a chunk)")
    checkpoint(last_line)


def with_contact_id(contact: dict) -> dict:
    """Return the contact with an external id: its own, or one derived from its customer and email
    (or name), so importing the same file again updates the contact instead of adding another."""
    if contact.get("external_id"):
        return contact
    who = (contact.get("email") or "").strip().lower() or " ".join(
        filter(None, [contact.get("first_name"), contact.get("last_name")])).strip().lower()
    return {**contact, "external_id": f"{contact['customer_external_id']}:{who}"[:500]}


def _brief(customer: dict) -> dict:
    """Return what the import needs of a customer record (kept in memory for many customers)."""
    return {key: customer.get(key) for key in ("uuid", "data_source_uuid", "external_id")}


def _rows_of(record: Record) -> int:
    if record.kind != "invoice":
        return 1
    return 1 + len(record.data.get("line_items", [])) + len(record.data.get("transactions", []))


def _import_record(uow: UnitOfWork, record: Record, ticket, ports, tally: Tally, customers: dict, plans: dict,
                   customer_record) -> None:
    source_uuid = ticket.data_source_uuid
    where = f"line {record.line}"
    data = record.data
    try:
        if record.kind == "customer":
            answer = ports.customers.sync_customer({**data, "data_source_uuid": source_uuid,
                                                   "billing_system_type": ticket.system})
            if len(customers) >= MAX_REMEMBERED:
                customers.clear()
            customers[data["external_id"]] = _brief(answer)
            tally.ok()
        elif record.kind == "contact":
            customer = customer_record(data["customer_external_id"])
            if customer is None:
                tally.bad(where, "customer_external_id", f"no customer {data['customer_external_id']!r} in the "
                                                         "data source")
                return
            ports.contacts.sync_contacts(customer["uuid"], source_uuid, [with_contact_id(data)])
            tally.ok()
        elif record.kind == "plan":
            before = tally.failed
            found = import_plans(uow, source_uuid, [data], _Relabel(tally, where))
            plans.update(found)
            if tally.failed == before and len(plans) > MAX_REMEMBERED:
                plans.clear()
        elif record.kind == "invoice":
            _import_invoice(uow, record, source_uuid, tally, plans, customer_record)
    except ServiceUnavailable:
        raise
    except RosterError as refusal:
        tally.bad(where, refusal.param, refusal.message)


def _import_invoice(uow: UnitOfWork, record: Record, source_uuid: str, tally: Tally, plans: dict,
                    customer_record) -> None:
    where, invoice = f"line {record.line}", record.data
    customer = customer_record(invoice["customer_external_id"])
    if customer is None:
        tally.bad(where, "customer_external_id", f"no customer {invoice['customer_external_id']!r} in the data source")
        return
    wanted = {item["plan_external_id"] for item in invoice["line_items"] if item.get("plan_external_id")}
    missing = wanted - set(plans)
    if missing:
        plans.update(plan_uuids(uow, source_uuid, missing))
    rows = _rows_of(record)  # counts are in rows, like the job's total
    new, _known = split_invoices(uow, source_uuid, [invoice])
    if not new:
        tally.ok(rows)  # imported before (a resumed job, or the same file again)
        return
    try:
        ready = {**with_plan_uuids(invoice, plans), "data_source_uuid": source_uuid}
    except UnknownPlan as error:
        tally.bad(where, error.field, error.reason)
        return
    answer = commands.import_invoices(uow, customer["uuid"], [ready], customers=KnownCustomer(customer))
    outcome = answer["invoices"][0]
    if isinstance(outcome, dict) and outcome.get("errors"):
        field, reasons = next(iter(outcome["errors"].items()))
        tally.bad(where, field, "; ".join(map(str, reasons)))
    else:
        tally.ok(rows)


class _Relabel:
    """A Tally that files errors under the row's line rather than the object's id."""

    def __init__(self, tally, where: str):
        self.tally, self.where = tally, where

    def ok(self, n: int = 1) -> None:
        self.tally.ok(n)

    def bad(self, _object_id, field, message) -> None:
        self.tally.bad(self.where, field, message)
