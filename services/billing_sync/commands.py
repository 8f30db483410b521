"""The billing_sync service layer: one function per command, query or event, no nameko.

Each takes a `roster.uow.UnitOfWork` and, where it needs another service, a port for it
(`customers`, anything with `get_customer(uuid)`), asked before the write transaction opens:
no RPC inside a transaction. A write that touches a customer's billing data locks that
customer's row first (`store.lock_customer`), works out the new movements through the
ledger (`ledger.Ledger`, incremental whenever the new data comes after the stored history),
and announces the customer's figures (`customer_metrics_changed`) in the same transaction.
The RPC entrypoints, event handlers, timers and the sync workers call these same functions.
"""
import uuid as uuid_lib
from datetime import datetime

from sqlalchemy import select, update

from roster.errors import NotFound, ValidationFailed, invalid
from roster.pagination import decode_cursor, keyset_page, page_size
from roster.timestamps import render_date, utcnow
from roster.uow import UnitOfWork
from services.billing_sync import domain, settings, store, sync_jobs, validation
from services.billing_sync.importer import InvoiceImport, record_transaction
from services.billing_sync.ledger import Ledger, metrics_of
from services.billing_sync.metrics import arr_series, customer_count_series, mrr_series
from services.billing_sync.models import DataSource, Invoice, Plan, Subscription, Transaction
from services.billing_sync.movements import CANCEL, CustomerState, MrrChange, state_at
from services.billing_sync.payments import payment_effect, transaction_refusals
from services.billing_sync.revenue import revenue_schedule as schedule_of
from services.billing_sync.schemas import (
    dump_data_source, dump_import_subscription, dump_invoice, dump_plan, dump_subscription_entry, dump_transaction,
)
from services.billing_sync.settings import account_currency, review_batch
from services.billing_sync.status import subscription_summaries

# ---- data sources --------------------------------------------------------------------------------


def create_data_source(uow: UnitOfWork, data: dict) -> dict:
    """Create an Import API data source, or a connector's (`system` "Stripe" with `connection`
    {base_url, api_key}); return it (the key is stored, never returned)."""
    name = domain.clean_name(data.get("name"))
    system = domain.clean_system(data.get("system"))
    connection = domain.clean_connection(system, data.get("connection"), settings.connector_hosts())
    with uow.write() as tx:
        source = DataSource(uuid=f"ds_{uuid_lib.uuid4()}", name=name, system=system, status="idle", **connection)
        tx.session.add(source)
        tx.session.flush()
        created = dump_data_source(source)
        tx.record("data_source_created", data_source=created)
        return tx.result(created)


def list_data_sources(uow: UnitOfWork, filters: dict) -> list[dict]:
    """Return every data source matching `name` and `system` (when given), oldest first, with
    the settings the `with_*` flags ask for."""
    with uow.read() as session:
        found = store.data_sources(session, name=filters.get("name"), system=filters.get("system"))
        return _with_settings(session, found, filters)


def get_data_source(uow: UnitOfWork, uuid: str, options: dict | None = None) -> dict:
    """Return one data source (with the settings `options` ask for); 404 if there is none."""
    with uow.read() as session:
        return _with_settings(session, [store.data_source(session, uuid)], options or {})[0]


def _with_settings(session, sources: list[DataSource], options: dict) -> list[dict]:
    dumped = [dump_data_source(source) for source in sources]
    if options.get("with_processing_status"):
        # Live from the source's sync jobs: objects processed and failed, objects still to do.
        # An Import API source with no jobs counts its invoices (they import synchronously).
        statuses = sync_jobs.processing_status(session, [source.id for source in sources])
        counts = store.invoice_counts(session, [source.id for source in sources])
        for source, entry in zip(sources, dumped):
            status = statuses[source.id]
            if source.system == domain.IMPORT_API:
                status = {**status, "processed": status["processed"] + counts.get(source.id, 0)}
            entry["processing_status"] = status
    if options.get("with_auto_churn_subscription_setting"):
        for entry in dumped:
            entry["auto_churn_subscription_setting"] = {"enabled": False, "interval": None}
    if options.get("with_invoice_handling_setting"):
        for entry in dumped:
            entry["invoice_handling_setting"] = {"manual": {}, "automatic": {}}
    return dumped


def delete_data_source(uow: UnitOfWork, uuid: str) -> None:
    """Delete a data source with its plans, invoices and subscriptions; recompute the customers
    that had billing data there. `data_source_deleted` tells the services holding its records."""
    with uow.write() as tx:
        session = tx.session
        source = store.data_source(session, uuid)
        customers = store.lock_customers(session, store.customers_of_data_source(session, source.id))
        ledger = Ledger(tx)
        invoice_ids = store.invoice_ids_of(session, data_source_id=source.id)
        _take_back_payments(session, customers, invoice_ids)
        store.delete_invoices(session, invoice_ids)
        subscription_ids = list(session.scalars(select(Subscription.id).where(Subscription.data_source_id == source.id)))
        store.delete_subscriptions(session, subscription_ids)
        store.delete_plans_of(session, source.id)
        sync_jobs.delete_jobs_of(session, source.id)
        for customer in customers.values():
            ledger.recompute(customer)
            ledger.settle(customer)
        session.delete(source)
        tx.record("data_source_deleted", uuid=uuid, name=source.name, system=source.system)
        ledger.close()


def _take_back_payments(session, customers: dict, invoice_ids: list[int]) -> None:
    """Take the payments of invoices about to be deleted out of their customers' net payments."""
    for start in range(0, len(invoice_ids), 500):
        rows = store.invoice_rows(session, invoice_ids[start:start + 500])
        for row, invoice in zip(rows, store.engine_invoices(session, rows)):
            customer = customers[row.customer_id]
            customer.net_payments -= sum(payment_effect(invoice, t) for t in invoice.transactions)


# ---- plans -------------------------------------------------------------------------------------------


def create_plan(uow: UnitOfWork, data: dict) -> dict:
    """Create a plan in a data source; return it."""
    fields = validation.clean_plan(data, creating=True)
    with uow.write() as tx:
        source = _source_for(tx.session, fields.pop("data_source_uuid"))
        uuid = f"pl_{uuid_lib.uuid4()}"
        external_id = fields.pop("external_id") or uuid
        plan = Plan(uuid=uuid, data_source_id=source.id, external_id=external_id, **fields)
        tx.session.add(plan)
        tx.session.flush()
        return tx.result(dump_plan(plan, source.uuid))


def list_plans(uow: UnitOfWork, filters: dict, cursor: str | None = None, per_page=None) -> dict:
    """Return `{plans, has_more, cursor}`: plans matching `filters`, oldest first."""
    size = page_size(per_page)
    after_id = decode_cursor(cursor, after_id=int).get("after_id", 0)
    with uow.read() as session:
        rows = store.plan_page(session, filters, after_id, size)
    page, has_more, next_cursor = keyset_page(rows, size, lambda row: {"after_id": row[0].id})
    return {"plans": [dump_plan(plan, source) for plan, source in page], "has_more": has_more, "cursor": next_cursor}


def get_plan(uow: UnitOfWork, uuid: str) -> dict:
    """Return one plan; 404 if there is none."""
    with uow.read() as session:
        plan = store.plan(session, uuid)
        return dump_plan(plan, session.get(DataSource, plan.data_source_id).uuid)


def update_plan(uow: UnitOfWork, uuid: str, changes: dict) -> dict:
    """Change a plan's name or interval; the interval only while no line item bills the plan
    (the MRR of those lines was worked out with it)."""
    fields = validation.clean_plan(changes, creating=False)
    with uow.write() as tx:
        plan = store.plan(tx.session, uuid)
        interval_changes = {name for name in ("interval_count", "interval_unit")
                            if name in fields and fields[name] != getattr(plan, name)}
        if interval_changes and store.plan_in_use(tx.session, plan.id):
            name = sorted(interval_changes)[0]
            raise invalid(name, "cannot change the interval of a plan that imported line items bill")
        for name, value in fields.items():
            setattr(plan, name, value)
        tx.session.flush()
        return tx.result(dump_plan(plan, tx.session.get(DataSource, plan.data_source_id).uuid))


def delete_plan(uow: UnitOfWork, uuid: str) -> None:
    """Delete a plan that no line item bills."""
    with uow.write() as tx:
        plan = store.plan(tx.session, uuid)
        if store.plan_in_use(tx.session, plan.id):
            raise invalid("uuid", "the plan is billed by imported line items; delete those invoices first")
        tx.session.delete(plan)


def _source_for(session, uuid: str) -> DataSource:
    try:
        return store.data_source(session, uuid)
    except NotFound:
        raise invalid("data_source_uuid", f"no data source {uuid} exists")


# ---- invoices ------------------------------------------------------------------------------------------


def import_invoices(uow: UnitOfWork, customer_uuid: str, invoices, *, customers) -> dict:
    """Import a customer's invoices in one transaction; return `{invoices, failed}`: per invoice,
    in the order given, the imported invoice or `{external_id, errors: {field: [reason]}}`."""
    if not isinstance(invoices, list) or not invoices:
        raise invalid("invoices", "must be a non-empty list of invoices")
    if len(invoices) > validation.MAX_INVOICES_PER_REQUEST:
        raise invalid("invoices", f"at most {validation.MAX_INVOICES_PER_REQUEST} invoices per request")
    lines = sum(validation.line_count(invoice) for invoice in invoices)
    if lines > validation.MAX_LINES_PER_REQUEST:
        raise invalid("invoices", f"at most {validation.MAX_LINES_PER_REQUEST} line items per request in all "
                                  f"(these invoices have {lines}): send them in smaller requests")
    cleaned = [validation.clean_invoice(data) for data in invoices]
    with uow.write() as tx, tx.session.no_autoflush:  # the events' rows go in once, at commit
        books, absent = store.lock_known_customer(tx.session, customer_uuid)
        if books is not None:  # the usual case: billing knows the customer from an earlier import
            return _import_into(tx, books, books.external_id, books.data_source_uuid, cleaned, invoices)
    # its first import (or the first since it was deleted or merged away): the customers
    # service says whether it exists, and its external id and data source, which never change
    customer = customers.get_customer(customer_uuid)
    external_id, data_source_uuid = customer.get("external_id") or None, customer.get("data_source_uuid") or None
    with uow.write() as tx, tx.session.no_autoflush:
        books = store.lock_customer(tx.session, customer_uuid, external_id, data_source_uuid, absent=absent)
        if books is None:
            raise NotFound(f"Customer {customer_uuid} not found", param="uuid")
        return _import_into(tx, books, external_id, data_source_uuid, cleaned, invoices)


def _import_into(tx, books, external_id: str | None, data_source_uuid: str | None, cleaned: list,
                 invoices: list) -> dict:
    """Import the cleaned invoices into the locked customer `books`; return the answer (stored
    with the request's idempotency key)."""
    ledger = Ledger(tx)
    importer = InvoiceImport(ledger, books, default_source=data_source_uuid, customer_external_id=external_id)
    invoice_ids, outcomes = importer.run(cleaned)
    if invoice_ids:
        ledger.settle(books)
    ledger.close()
    answers = []
    for outcome, raw in zip(outcomes, invoices):
        if outcome.ok:
            answers.append(outcome.answer)
        else:
            external = raw.get("external_id") if isinstance(raw, dict) else None
            answers.append({"external_id": external, "errors": outcome.problems})
    failed = sum(1 for outcome in outcomes if not outcome.ok)
    return tx.result({"invoices": answers, "failed": failed})


def list_invoices(uow: UnitOfWork, filters: dict, cursor: str | None = None, per_page=None, *,
                  customers=None) -> dict:
    """Return `{invoices, has_more, cursor}` matching `filters` (customer_uuid, data_source_uuid,
    external_id), oldest first; 404 for a customer_uuid no service knows."""
    size = page_size(per_page)
    after_id = decode_cursor(cursor, after_id=int).get("after_id", 0)
    with uow.read() as session:
        known = filters.get("customer_uuid") and store.customer(session, filters["customer_uuid"]) is not None
        rows = store.invoice_page(session, filters, after_id, size)
        page, has_more, next_cursor = keyset_page(rows, size, lambda row: {"after_id": row["id"]})
        entries = _invoice_dicts(session, page, utcnow())
    if filters.get("customer_uuid") and not known and customers is not None:
        customers.get_customer(filters["customer_uuid"])  # 404 when there is no such customer
    return {"invoices": entries, "has_more": has_more, "cursor": next_cursor}


def get_invoice(uow: UnitOfWork, uuid: str) -> dict:
    """Return one invoice with its lines and transactions; 404 if there is none."""
    with uow.read() as session:
        return _invoice_dicts(session, [store.invoice_by_uuid(session, uuid)], utcnow())[0]


def _invoice_dicts(session, rows: list, now: datetime) -> list[dict]:
    lines, transactions = store.invoice_children(session, [row["id"] for row in rows])
    found = []
    for invoice in rows:
        own_lines, own_transactions = lines[invoice["id"]], transactions[invoice["id"]]
        status = domain.invoice_status(store.status_view(invoice, own_lines, own_transactions), now)
        found.append(dump_invoice(invoice, own_lines, own_transactions, status))
    return found


def delete_invoice(uow: UnitOfWork, uuid: str) -> None:
    """Delete an invoice with its lines and transactions; recompute its customer from the
    earliest change its lines made."""
    with uow.write() as tx:
        customer, invoice = _lock_invoice_customer(tx.session, uuid)
        _delete_customer_invoices(tx, customer, [invoice])


def delete_customer_invoices(uow: UnitOfWork, data_source_uuid: str, customer_uuid: str) -> None:
    """Delete every invoice of a customer in a data source (`Invoice.destroy_all`)."""
    with uow.write() as tx:
        source = store.data_source(tx.session, data_source_uuid)
        customer = store.customer(tx.session, customer_uuid)
        if customer is None:
            raise NotFound(f"Customer {customer_uuid} has no invoices", param="customer_uuid")
        customer = store.lock_customers(tx.session, [customer.id])[customer.id]
        rows = [row for row in store.invoice_rows(tx.session, store.invoice_ids_of(tx.session, customer_id=customer.id))
                if row.data_source_id == source.id]
        _delete_customer_invoices(tx, customer, rows)


def _lock_invoice_customer(session, uuid: str):
    """Return (locked customer, invoice row): the invoice read again after the lock, as a merge
    may have moved it to another customer meanwhile."""
    for _ in range(3):
        customer_id = store.invoice_row(session, uuid).customer_id
        customer = store.lock_customers(session, [customer_id])[customer_id]
        invoice = store.invoice_row(session, uuid)
        session.refresh(invoice)
        if invoice.customer_id == customer_id:
            return customer, invoice
    raise ValidationFailed("uuid: the invoice keeps moving between customers; try again", param="uuid")


def _delete_customer_invoices(tx, customer, rows: list[Invoice]) -> None:
    if not rows:
        return
    session = tx.session
    ledger = Ledger(tx)
    engine_invoices = store.engine_invoices(session, rows)
    customer.net_payments -= sum(payment_effect(invoice, t) for invoice in engine_invoices for t in invoice.transactions)
    moments = [moment for invoice in engine_invoices for item in invoice.line_items if item.subscription_id
               for moment in (item.service_period_start, item.cancelled_at) if moment is not None]
    store.delete_invoices(session, [row.id for row in rows])
    store.delete_orphan_subscriptions(session, customer.id)
    if moments:
        ledger.recompute(customer, since=min(moments))
    ledger.settle(customer)
    ledger.close()


# ---- transactions ------------------------------------------------------------------------------------


def import_transaction(uow: UnitOfWork, invoice_uuid: str, data) -> dict:
    """Record a payment or refund on an invoice; return it."""
    fields = validation.clean_transaction(data)
    with uow.write() as tx:
        session = tx.session
        customer, invoice = _lock_invoice_customer(session, invoice_uuid)
        if fields["external_id"] and store.existing_transaction_keys(
                session, {(invoice.data_source_id, fields["external_id"])}):
            raise invalid("external_id", "a transaction with this external_id already exists in the data source")
        row = Transaction(uuid=f"tr_{uuid_lib.uuid4()}", invoice_id=invoice.id, data_source_id=invoice.data_source_id,
                          **fields)
        session.add(row)
        session.flush()
        engine_invoice = store.engine_invoices(session, [invoice])[0]
        engine_transaction = store.engine_transaction(row)
        refusals = transaction_refusals(engine_invoice.total_in_cents, engine_invoice.transactions)
        mine = [reason for index, reason in refusals.items() if engine_invoice.transactions[index].id == row.uuid]
        if mine:  # the transaction's own amount, not an earlier one's (stored before this rule)
            raise invalid("amount_in_cents", mine[0])
        customer.net_payments += payment_effect(engine_invoice, engine_transaction)
        invoice.settled_at = domain.settled_at(engine_invoice)
        record_transaction(tx, customer.uuid, engine_invoice, engine_transaction)
        ledger = Ledger(tx)
        ledger.settle(customer)
        ledger.close()
        return tx.result(dump_transaction(row))


# ---- subscriptions ---------------------------------------------------------------------------------


def list_subscriptions(uow: UnitOfWork, customer_uuid: str, cursor: str | None = None, per_page=None, *,
                       customers=None) -> dict:
    """Return `{entries, has_more, cursor}`: the customer's subscriptions as of now, oldest start first."""
    size = page_size(per_page)
    after = decode_cursor(cursor, after_id=int).get("after_id", 0)
    now = utcnow()
    currency = account_currency()
    with uow.read() as session:
        customer = store.customer(session, customer_uuid)
        if customer is not None:
            invoices = store.engine_invoices(session, store.customer_invoice_rows(session, customer.id))
            state = _state_now(session, customer, now)
            summaries = subscription_summaries(state=state, invoices=invoices,
                                               cancellations=store.customer_cancellations(session, customer.id), at=now)
            rows = {row.uuid: row for row in store.subscriptions_of(session, customer.id)}
            plans = store.plans_by_uuid(session, {s.plan.uuid for s in summaries if s.plan is not None})
            entries = [dump_subscription_entry(rows[s.subscription_id], s,
                                               plans.get(s.plan.uuid) if s.plan else None, currency)
                       for s in summaries if s.subscription_id in rows]
    if customer is None:
        if customers is not None:
            customers.get_customer(customer_uuid)  # 404 when there is no such customer
        entries = []
    page, has_more, next_cursor = keyset_page(entries[after:after + size + 1], size,
                                              lambda _entry: {"after_id": after + size})
    return {"entries": page, "has_more": has_more, "cursor": next_cursor}


def _state_now(session, customer, now: datetime) -> CustomerState:
    state = CustomerState.from_dict(customer.state or {})
    if state.as_of is not None and state.as_of > now:
        return state_at(store.customer_changes(session, customer.id), now)
    return state


def list_imported_subscriptions(uow: UnitOfWork, customer_uuid: str, cursor: str | None = None, per_page=None, *,
                                customers=None) -> dict:
    """Return `{customer_uuid, subscriptions, has_more, cursor}` (the import namespace's shape)."""
    size = page_size(per_page)
    after_id = decode_cursor(cursor, after_id=int).get("after_id", 0)
    with uow.read() as session:
        customer = store.customer(session, customer_uuid)
        rows = [row for row in store.subscriptions_of(session, customer.id) if row.id > after_id] if customer else []
        page, has_more, next_cursor = keyset_page(rows[:size + 1], size, lambda row: {"after_id": row.id})
        dumped = _import_subscriptions(session, customer_uuid, page)
    if customer is None and customers is not None:
        customers.get_customer(customer_uuid)
    return {"customer_uuid": customer_uuid, "subscriptions": dumped, "has_more": has_more, "cursor": next_cursor}


def _import_subscriptions(session, customer_uuid: str, rows: list[Subscription]) -> list[dict]:
    ids = [row.id for row in rows]
    api = store.cancellation_dates(session, ids)
    on_lines = store.line_cancellation_dates(session, ids)
    sources = {row.id: row.uuid for row in session.scalars(select(DataSource).where(
        DataSource.id.in_({row.data_source_id for row in rows})))} if rows else {}
    plans = {subscription_id: plan.uuid for subscription_id, plan in store.latest_plans(session, ids).items()}
    return [dump_import_subscription(row, customer_uuid, sources[row.data_source_id], plans.get(row.id),
                                     sorted(set(api[row.id]) | set(on_lines[row.id]))) for row in rows]


def cancel_subscription(uow: UnitOfWork, uuid: str, data) -> dict:
    """Set a subscription's cancellation: `cancelled_at` adds one, `cancellation_dates` replaces
    those set through the API (an empty list undoes them); return the import subscription."""
    mode, dates = validation.clean_cancellation(data)
    with uow.write() as tx:
        session = tx.session
        subscription = store.subscription(session, uuid)
        customer = store.lock_customers(session, [subscription.customer_id])[subscription.customer_id]
        session.refresh(subscription)
        before = set(store.cancellation_dates(session, [subscription.id])[subscription.id])
        after = before | set(dates) if mode == "add" else set(dates)
        if after != before:
            store.replace_cancellations(session, subscription.id, sorted(after))
            ledger = Ledger(tx)
            if before <= after:
                ledger.extend(customer, [MrrChange(at=at, subscription_id=subscription.uuid, kind=CANCEL)
                                         for at in sorted(after - before)])
            else:
                ledger.recompute(customer, since=min(before ^ after))
            ledger.settle(customer)
            ledger.close()
        return tx.result(_import_subscriptions(session, customer.uuid, [subscription])[0])


def connect_subscriptions(uow: UnitOfWork, customer_uuid: str, data, *, connect: bool) -> None:
    """Connect subscriptions of one customer (the first is the one the others continue), or
    disconnect them. Bookkeeping only: MRR is the same either way (docs/mrr.md)."""
    refs = validation.clean_subscription_refs(data, minimum=2 if connect else 1)
    with uow.write() as tx:
        session = tx.session
        customer = store.customer(session, customer_uuid)
        if customer is None:
            raise NotFound(f"Customer {customer_uuid} has no subscriptions", param="uuid")
        store.lock_customers(session, [customer.id])
        found = []
        for index, ref in enumerate(refs):
            try:
                row = store.subscription(session, ref["uuid"])
            except NotFound:
                raise invalid(f"subscriptions[{index}].uuid", f"no subscription {ref['uuid']} exists")
            if row.customer_id != customer.id:
                raise invalid(f"subscriptions[{index}].uuid", "the subscription belongs to another customer")
            source = session.get(DataSource, row.data_source_id)
            if ref["data_source_uuid"] and ref["data_source_uuid"] != source.uuid:
                raise invalid(f"subscriptions[{index}].data_source_uuid", "is not the subscription's data source")
            found.append(row)
        root = found[0]
        for row in found:
            if connect:
                row.connected_to_id = None if row.id == root.id else root.id
            else:
                row.connected_to_id = None
                session.execute(update(Subscription).where(Subscription.connected_to_id == row.id)
                                .values(connected_to_id=None))


# ---- exchange rates -------------------------------------------------------------------------------


def put_exchange_rates(uow: UnitOfWork, currency: str, rates) -> dict:
    """Store dated rates of a currency into the account currency; return all of its rates."""
    code, cleaned = validation.clean_rates(currency, rates, account_currency=account_currency())
    with uow.write() as tx:
        store.put_rates(tx.session, code, cleaned)
        stored = store.rates_of(tx.session, code)
        return tx.result(_rates_dict(code, stored))


def get_exchange_rates(uow: UnitOfWork, currency: str) -> dict:
    """Return the stored rates of a currency, oldest first."""
    code = currency.strip().upper()
    with uow.read() as session:
        return _rates_dict(code, store.rates_of(session, code))


def _rates_dict(code: str, stored) -> dict:
    return {"currency": code, "account_currency": account_currency(),
            "rates": [{"date": render_date(day), "rate": rate} for day, rate in stored]}


# ---- revenue, metrics, figures -------------------------------------------------------------------------


def revenue_schedule(uow: UnitOfWork, customer_uuid: str, *, customers=None) -> dict:
    """Return the customer's revenue recognition schedule by month, in the account currency."""
    with uow.read() as session:
        customer = store.customer(session, customer_uuid)
        months = []
        if customer is not None:
            months = schedule_of(store.engine_invoices(session, store.customer_invoice_rows(session, customer.id)))
    if customer is None and customers is not None:
        customers.get_customer(customer_uuid)
    return {"customer_uuid": customer_uuid, "currency": account_currency(),
            "entries": [{"month": m.month.isoformat()[:7], "recognized": m.recognized, "deferred": m.deferred}
                        for m in months]}


SERIES = {"mrr": mrr_series, "arr": arr_series, "customer-count": customer_count_series}


def metrics(uow: UnitOfWork, metric: str, query: dict) -> dict:
    """Return `/metrics/<metric>` (mrr, arr, customer-count) from the stored day rows."""
    if metric not in SERIES:
        raise NotFound(f"No metric {metric}", param="metric")
    asked = validation.clean_metrics_query(query)
    with uow.read() as session:
        days = store.metric_days(session, asked["start"], asked["end"])
        opening_mrr, opening_customers = store.metric_opening(session, asked["start"])
    options = {"start": asked["start"], "end": asked["end"], "interval": asked["interval"]}
    if metric == "customer-count":
        return customer_count_series(days, opening_customers=opening_customers, **options).to_dict()
    return SERIES[metric](days, opening_mrr=opening_mrr, **options).to_dict()


def customer_metrics(uow: UnitOfWork, customer_uuid: str) -> dict:
    """Return the customer's figures as last announced (zero and null for one without billing data)."""
    with uow.read() as session:
        return metrics_of(store.customer(session, customer_uuid), account_currency(), customer_uuid)


def review_customers(uow: UnitOfWork, now: datetime | None = None) -> int:
    """Re-evaluate customers whose figures may have changed with time (a due date passed, a
    future-dated line began); announce those that changed; return how many did."""
    now = now or utcnow()
    with uow.read() as session:
        due = store.due_for_review(session, now, review_batch())
    changed = 0
    for uuid in due:
        with uow.write() as tx:
            customer = store.customer(tx.session, uuid)
            customer = store.lock_customers(tx.session, [customer.id]).get(customer.id) if customer else None
            if customer is None or customer.review_at is None or customer.review_at > now:
                continue  # another process reviewed it meanwhile
            ledger = Ledger(tx, now)
            if ledger.evaluate(customer):
                ledger.announce(customer)
                changed += 1
    return changed


# ---- events from the customers service --------------------------------------------------------------


def on_customer_deleted(uow: UnitOfWork, payload: dict) -> None:
    """Remove a deleted customer's billing data (its movements are retracted)."""
    with uow.write() as tx:
        store.mark_gone(tx.session, payload["uuid"])
        customer = store.customer(tx.session, payload["uuid"])
        if customer is not None:
            customer = store.lock_customers(tx.session, [customer.id])[customer.id]
            _remove_books(tx, Ledger(tx), customer)


def _remove_books(tx, ledger: Ledger, customer) -> None:
    session = tx.session
    ledger.forget(customer)
    store.delete_invoices(session, store.invoice_ids_of(session, customer_id=customer.id))
    store.delete_subscriptions(session, [row.id for row in store.subscriptions_of(session, customer.id)])
    store.delete_customer_row(session, customer.id)
    ledger.close()


def on_customer_merged(uow: UnitOfWork, payload: dict) -> None:
    """Move the merged-away customer's invoices and subscriptions to the survivor and recompute it."""
    from_uuid, into_uuid = payload["from_uuid"], payload["into_uuid"]
    with uow.write() as tx:
        session = tx.session
        store.mark_gone(session, from_uuid, merged_into=into_uuid)
        merged = store.customer(session, from_uuid)
        if merged is None:
            return
        survivor_uuid = store.surviving_customer(session, into_uuid)
        ledger = Ledger(tx)
        if survivor_uuid is None:  # the survivor was deleted meanwhile: its data went with it
            merged = store.lock_customers(session, [merged.id])[merged.id]
            _remove_books(tx, ledger, merged)
            return
        store.ensure_customer(session, survivor_uuid, payload.get("into_external_id"))
        survivor = store.customer(session, survivor_uuid)
        locked = store.lock_customers(session, [merged.id, survivor.id])
        merged, survivor = locked[merged.id], locked[survivor.id]
        ledger.forget(merged)
        store.move_books(session, merged.id, survivor.id)
        survivor.net_payments += merged.net_payments
        survivor.may_owe = survivor.may_owe or merged.may_owe
        ledger.recompute(survivor)
        store.delete_customer_row(session, merged.id)
        ledger.settle(survivor)
        ledger.close()


def on_customer_unmerged(uow: UnitOfWork, payload: dict) -> None:
    """Move the invoices billed to the unmerged external id (its data source and external id),
    with the subscriptions only they bill, to the new customer; recompute both customers (the
    movements they no longer have are retracted, new ones recorded) and announce both.

    The invoices are looked for on the customer the id left (or where later merges took it) and
    on the customer it came from, should that merge not be handled here yet. A new customer
    deleted meanwhile takes them with it; one merged meanwhile passes them on.
    """
    new_uuid, external_id = payload["new_uuid"], payload["external_id"]
    with uow.write() as tx:
        session = tx.session
        source = store.data_sources_by_uuid(session, [payload["data_source_uuid"]]).get(payload["data_source_uuid"])
        target_uuid = store.surviving_customer(session, new_uuid)
        holder_uuids = {store.surviving_customer(session, payload["from_uuid"]), payload.get("former_uuid")} - \
            {None, target_uuid}
        if source is None or not store.customers_by_uuid(session, holder_uuids):
            return
        if target_uuid is not None:
            store.ensure_customer(session, target_uuid, external_id if target_uuid == new_uuid else None)
        rows = store.customers_by_uuid(session, holder_uuids | {target_uuid} - {None})
        locked = {row.uuid: row for row in store.lock_customers(session, [row.id for row in rows.values()]).values()}
        holders = {row.id: row for uuid, row in locked.items() if uuid in holder_uuids}
        target = locked.get(target_uuid)
        moving = store.invoices_billed_to(session, holders, source.id, external_id)
        if not moving:
            return
        for row, invoice in zip(moving, store.engine_invoices(session, moving)):
            effect = sum(payment_effect(invoice, t) for t in invoice.transactions)
            holders[row.customer_id].net_payments -= effect
            if target is not None:
                target.net_payments += effect
        invoice_ids = [row.id for row in moving]
        if target is None:
            store.delete_invoices(session, invoice_ids)
            for customer_id in holders:
                store.delete_orphan_subscriptions(session, customer_id)
        else:
            store.move_invoices(session, invoice_ids, store.subscriptions_billed_only_by(session, invoice_ids),
                                target.id)
            target.may_owe = True
        ledger = Ledger(tx)
        for customer in list(holders.values()) + ([target] if target is not None else []):
            ledger.recompute(customer)
            ledger.settle(customer)
        ledger.close()
