"""What the sync workers run: one function per job kind, chosen from RUNNERS. Service layer, no nameko.

`run_job` claims the job (`sync_jobs.claim`), runs its kind's runner and finishes it:
- `source_sync` lists the source's customers (`iter_customer_ids`) and queues a
  `customer_resync` child per customer, so every worker shares a full sync; the parent
  finishes when its last child does (`sync_jobs._child_finished`).
- `customer_resync` fetches one customer's bundle, maps it (`map_bundle`), then asks the
  customers service (`sync_customer`) and the contacts service (`sync_contacts`), and imports
  the plans, the invoices not imported yet, the new transactions of imported invoices and new
  subscription cancellations through this service's own import commands. Everything is keyed
  by external ids, so running it twice changes nothing the second time and records no event.
- `csv_import` streams an uploaded file (`csv_sync.py`).
A malformed object fails alone (counted, listed in the job's errors); the billing system
unreachable or refusing (after the client's retries with backoff) fails the job with the reason.
"""
import logging
from collections.abc import Callable
from pathlib import Path
from dataclasses import dataclass

from roster.database import matching_pairs
from roster.errors import RosterError, ServiceUnavailable
from roster.timestamps import parse
from roster.uow import UnitOfWork
from services.billing_sync import commands, domain, jobs, settings, store, sync_jobs
from services.billing_sync.connectors import stripe
from services.billing_sync.connectors.errors import (
    ConnectorError, MalformedObject, UnknownPlan, UpstreamNotFound, UpstreamRejected, UpstreamUnavailable,
)
from services.billing_sync.connectors.shapes import with_plan_uuids
from services.billing_sync.models import Invoice, Plan, Subscription
from services.billing_sync.validation import import_batches

log = logging.getLogger(__name__)

CHILD_BATCH = 200  # customers queued per transaction by a source sync


@dataclass
class Ports:
    """What a runner may call outside its own database."""

    customers: object  # sync_customer(data)
    contacts: object  # sync_contacts(customer_uuid, data_source_uuid, contacts)
    enqueue: Callable[[dict], None]  # puts {"job_id": ...} on the work queue
    client_factory: Callable[[str, str], stripe.StripeClient] = stripe.StripeClient


class JobFailed(Exception):
    """The job cannot do its work; the message is the reason it ends `failed` with."""


def run_job(uow: UnitOfWork, message: dict, delivery: dict, ports: Ports, *,
            final_attempt: bool = False) -> str | None:
    """Claim and run the job of a work queue message; return its state (None when skipped).

    Raises for a passing failure of this platform (a service or the database away), so the
    work queue tries again later; on the last attempt the job is failed with that reason.
    """
    job_id = message.get("job_id") if isinstance(message, dict) else None
    if not isinstance(job_id, str):
        log.error("work queue message without a job_id dropped: %r", message)
        return None
    taking_over = bool(delivery.get("redelivered")) or delivery.get("attempt", 1) > 1
    ticket = sync_jobs.claim(uow, job_id, taking_over=taking_over)
    if ticket is None:
        return None
    log.info("%s %s started (attempt %d%s)", ticket.kind, ticket.uuid, ticket.attempts,
             ", resumed" if ticket.resumed else "")
    state = _run(uow, ticket, ports, final_attempt=final_attempt)
    if ticket.file_path and state in jobs.FINISHED:
        Path(ticket.file_path).unlink(missing_ok=True)  # an upload is kept only until its import ends
    return state


def _run(uow: UnitOfWork, ticket: sync_jobs.Ticket, ports: Ports, *, final_attempt: bool) -> str | None:
    try:
        counts = RUNNERS[ticket.kind](uow, ticket, ports)
    except sync_jobs.JobStopped:
        log.info("%s %s stopped: cancelled meanwhile", ticket.kind, ticket.uuid)
        return jobs.CANCELLED
    except JobFailed as failure:
        return sync_jobs.finish(uow, ticket.uuid, reason=str(failure))
    except (ConnectorError, RosterError) as failure:
        if isinstance(failure, ServiceUnavailable) and not final_attempt:
            raise
        return sync_jobs.finish(uow, ticket.uuid, reason=_reason(failure))
    except Exception as failure:
        if not final_attempt:
            raise
        return sync_jobs.finish(uow, ticket.uuid, reason=f"{type(failure).__name__}: {failure}")
    if ticket.kind == jobs.SOURCE_SYNC:
        return jobs.RUNNING  # finishes with its last child
    return sync_jobs.finish(uow, ticket.uuid, counts=counts)


def _reason(failure: Exception) -> str:
    if isinstance(failure, UpstreamUnavailable):
        return f"billing system unavailable: {failure.reason}"
    if isinstance(failure, UpstreamRejected):
        return f"billing system refused: {failure}"
    return str(failure)


def _client(ticket: sync_jobs.Ticket, ports: Ports) -> stripe.StripeClient:
    if not ticket.base_url or not ticket.api_key:
        raise JobFailed("the data source has no connection settings (base_url, api_key)")
    problem = domain.connector_host_problem(ticket.base_url, settings.connector_hosts())
    if problem:  # stored before the list changed
        raise JobFailed(f"connection.base_url {problem}")
    return ports.client_factory(ticket.base_url, ticket.api_key)


# ---- source_sync ------------------------------------------------------------------------------


def sync_source(uow: UnitOfWork, ticket: sync_jobs.Ticket, ports: Ports) -> None:
    """Queue a customer_resync child per customer of the source; on a resume, queue again the
    children an earlier attempt created but may not have queued."""
    client = _client(ticket, ports)
    malformed: list[dict] = []
    batch: list[str] = []
    try:
        ids = stripe.iter_customer_ids(client, on_malformed=lambda error: malformed.append(
            jobs.error_entry(error.object_id, error.field, error.reason)))
        for customer_id in ids:
            batch.append(customer_id)
            if len(batch) >= CHILD_BATCH:
                _queue_children(uow, ticket, batch, ports)
                batch = []
        _queue_children(uow, ticket, batch, ports)
    finally:
        client.close()
    if ticket.resumed:
        for child in sync_jobs.pending_children(uow, ticket.uuid):
            ports.enqueue({"job_id": child})
    sync_jobs.mark_listed(uow, ticket.uuid, errors=malformed)


def _queue_children(uow: UnitOfWork, ticket: sync_jobs.Ticket, external_ids: list[str], ports: Ports) -> None:
    for child in sync_jobs.add_children(uow, ticket.uuid, external_ids):
        ports.enqueue({"job_id": child})


# ---- customer_resync --------------------------------------------------------------------------


@dataclass
class Tally:
    """A re-sync's outcome per object."""

    processed: int = 0
    failed: int = 0
    errors: list = None

    def __post_init__(self):
        self.errors = self.errors or []

    def ok(self, n: int = 1) -> None:
        self.processed += n

    def bad(self, object_id, field, message) -> None:
        self.failed += 1
        self.errors.append(jobs.error_entry(object_id, field, message))


def resync_customer(uow: UnitOfWork, ticket: sync_jobs.Ticket, ports: Ports) -> dict:
    """Bring one customer and its billing data up to date with the billing system."""
    client = _client(ticket, ports)
    try:
        bundle = stripe.fetch_customer_bundle(client, ticket.customer_external_id)
    except UpstreamNotFound:
        raise JobFailed(f"customer {ticket.customer_external_id} does not exist in the billing system")
    finally:
        client.close()
    mapped = stripe.map_bundle(bundle, dashboard_url=stripe.DEFAULT_DASHBOARD_URL)
    if mapped.deleted:
        raise JobFailed(f"customer {ticket.customer_external_id} was deleted in the billing system")
    tally = Tally()
    for error in mapped.errors:
        tally.bad(error.object_id, error.field, error.reason)
    if ticket.resumed:
        sync_jobs.reset_counts(uow, ticket.uuid)
    if mapped.customer is None:  # the customer object itself is unusable
        sync_jobs.report(uow, ticket.uuid, failed=tally.failed, errors=tally.errors, total=tally.failed)
        raise JobFailed(tally.errors[0]["message"] if tally.errors else "the customer object is malformed")
    return import_customer(uow, ticket, mapped, ports, tally)


def import_customer(uow: UnitOfWork, ticket: sync_jobs.Ticket, mapped: stripe.MappedCustomer, ports: Ports,
                    tally: Tally) -> dict:
    """Sync the mapped customer, its contacts and billing data; return the counts for the job."""
    source_uuid = ticket.data_source_uuid
    total = 1 + len(mapped.contacts) + len(mapped.plans) + len(mapped.invoices) + tally.failed
    try:
        record = ports.customers.sync_customer({**mapped.customer, "data_source_uuid": source_uuid})
    except ServiceUnavailable:
        raise
    except RosterError as refusal:  # the customer's values refused: nothing else can go in
        tally.bad(mapped.customer["external_id"], refusal.param, refusal.message)
        sync_jobs.report(uow, ticket.uuid, failed=tally.failed, errors=tally.errors, total=total)
        raise JobFailed(f"customer {mapped.customer['external_id']}: {refusal.message}")
    tally.ok()
    if mapped.contacts:
        try:
            ports.contacts.sync_contacts(record["uuid"], source_uuid, mapped.contacts)
            tally.ok(len(mapped.contacts))
        except ServiceUnavailable:
            raise
        except RosterError as refusal:
            for contact in mapped.contacts:
                tally.bad(contact["external_id"], refusal.param, refusal.message)
    import_billing(uow, record, source_uuid, mapped, tally)
    return {"processed": tally.processed, "failed": tally.failed, "errors": tally.errors, "total": total,
            "customer_uuid": record["uuid"]}


class KnownCustomer:
    """The `customers` port of the import commands, answering the record sync_customer returned."""

    def __init__(self, record: dict):
        self.record = record

    def get_customer(self, uuid: str) -> dict:
        return self.record


def import_billing(uow: UnitOfWork, record: dict, source_uuid: str, mapped: stripe.MappedCustomer,
                   tally: Tally) -> None:
    """Import what is new of the customer's plans, invoices, transactions and cancellations."""
    plan_uuids = import_plans(uow, source_uuid, mapped.plans, tally)
    new, known = split_invoices(uow, source_uuid, mapped.invoices)
    ready = []
    for invoice in new:
        try:
            ready.append({**with_plan_uuids(invoice, plan_uuids), "data_source_uuid": source_uuid})
        except UnknownPlan as error:
            tally.bad(error.object_id, error.field, error.reason)
    for chunk in import_batches(ready):
        answer = commands.import_invoices(uow, record["uuid"], chunk, customers=KnownCustomer(record))
        for sent, outcome in zip(chunk, answer["invoices"]):
            problems = outcome.get("errors") if isinstance(outcome, dict) and "errors" in outcome else None
            if not problems:
                tally.ok()
            elif _only_already_imported(problems):
                tally.ok()  # a concurrent re-sync of the same customer imported it first
            else:
                field, reasons = next(iter(problems.items()))
                tally.bad(sent["external_id"], field, "; ".join(map(str, reasons)))
    tally.ok(len(known))
    _import_new_transactions(uow, source_uuid, known, tally)
    _import_cancellations(uow, source_uuid, mapped.cancellations, tally)


def _only_already_imported(problems: dict) -> bool:
    return set(problems) == {"external_id"} and all("already exists" in str(reason)
                                                    for reason in problems["external_id"])


def import_plans(uow: UnitOfWork, source_uuid: str, plans: list[dict], tally: Tally) -> dict[str, str]:
    """Create the plans the source does not have yet; return {external id: plan uuid} of all."""
    wanted = {plan["external_id"]: plan for plan in plans}
    found = plan_uuids(uow, source_uuid, wanted)
    for external_id, plan in wanted.items():
        if external_id in found:
            tally.ok()
            continue
        try:
            created = commands.create_plan(uow, {**plan, "data_source_uuid": source_uuid})
            found[external_id] = created["uuid"]
            tally.ok()
        except RosterError as refusal:
            again = plan_uuids(uow, source_uuid, {external_id: plan})  # created meanwhile by another worker
            if external_id in again:
                found.update(again)
                tally.ok()
            else:
                tally.bad(external_id, refusal.param, refusal.message)
    return found


def plan_uuids(uow: UnitOfWork, source_uuid: str, wanted) -> dict[str, str]:
    if not wanted:
        return {}
    with uow.read() as session:
        source = store.data_source(session, source_uuid)
        rows = matching_pairs(session, Plan, {(source.id, external_id) for external_id in wanted},
                              columns=("external_id", "uuid"))
        return dict(rows.all())


def split_invoices(uow: UnitOfWork, source_uuid: str, invoices: list[dict]) -> tuple[list, list]:
    """Return (invoices not imported yet, [(uuid, invoice)] of those imported before)."""
    if not invoices:
        return [], []
    with uow.read() as session:
        source = store.data_source(session, source_uuid)
        external_ids = [invoice["external_id"] for invoice in invoices]
        stored = dict(matching_pairs(session, Invoice, {(source.id, external_id) for external_id in external_ids},
                                     columns=("external_id", "uuid")).all())
    new = [invoice for invoice in invoices if invoice["external_id"] not in stored]
    known = [(stored[invoice["external_id"]], invoice) for invoice in invoices if invoice["external_id"] in stored]
    return new, known


def _import_new_transactions(uow: UnitOfWork, source_uuid: str, known: list[tuple[str, dict]], tally: Tally) -> None:
    """Record the payments and refunds of invoices imported before that are not stored yet."""
    wanted = [(uuid, t) for uuid, invoice in known for t in invoice.get("transactions", []) if t.get("external_id")]
    if not wanted:
        return
    with uow.read() as session:
        source = store.data_source(session, source_uuid)
        taken = store.existing_transaction_keys(session, {(source.id, t["external_id"]) for _, t in wanted})
    for invoice_uuid, transaction in wanted:
        if (source.id, transaction["external_id"]) in taken:
            continue
        try:
            commands.import_transaction(uow, invoice_uuid, transaction)
        except RosterError as refusal:
            if "already exists" not in refusal.message:
                tally.bad(transaction["external_id"], refusal.param, refusal.message)


def _import_cancellations(uow: UnitOfWork, source_uuid: str, cancellations: dict[str, str], tally: Tally) -> None:
    """Cancel imported subscriptions the billing system has cancelled since (not already known)."""
    if not cancellations:
        return
    with uow.read() as session:
        source = store.data_source(session, source_uuid)
        subs = {row.external_id: row for row in matching_pairs(
            session, Subscription, {(source.id, external_id) for external_id in cancellations})}
        ids = [row.id for row in subs.values()]
        known = store.cancellation_dates(session, ids)
        on_lines = store.line_cancellation_dates(session, ids)
    for external_id, moment in cancellations.items():
        row = subs.get(external_id)
        if row is None:
            continue  # never billed here: nothing to cancel
        at = parse(moment, "cancelled_at")
        if at in set(known.get(row.id, [])) | set(on_lines.get(row.id, [])):
            continue
        try:
            commands.cancel_subscription(uow, row.uuid, {"cancelled_at": moment})
        except RosterError as refusal:
            tally.bad(external_id, refusal.param, refusal.message)


def import_csv(uow: UnitOfWork, ticket: sync_jobs.Ticket, ports: Ports) -> None:
    from services.billing_sync import csv_sync  # the CSV runner's own module

    csv_sync.import_file(uow, ticket, ports)


RUNNERS: dict[str, Callable[[UnitOfWork, sync_jobs.Ticket, Ports], None]] = {
    jobs.SOURCE_SYNC: sync_source,
    jobs.CUSTOMER_RESYNC: resync_customer,
    jobs.CSV_IMPORT: import_csv,
}

__all__ = ["run_job", "RUNNERS", "Ports", "JobFailed", "MalformedObject"]
