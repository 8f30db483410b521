"""Queries on the billing_sync service's tables (one session, no commits, no rules here).

Hot paths read columns with Core statements on the session's connection and write with
multi-row inserts, so an import request costs a handful of statements whatever its size.
Rows are handed to the MRR engine as its own frozen dataclasses (`invoices.py`,
`movements.MrrChange`), mapped here and nowhere else.
"""
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from roster.database import dialect_insert, insert_ignore, lock_rows, matching_pairs
from roster.errors import NotFound
from roster.timestamps import utcnow
from services.billing_sync import invoices as engine
from services.billing_sync.metrics import MetricDay
from services.billing_sync.models import (
    Cancellation, Customer, DataSource, ExchangeRate, GoneCustomer, Invoice, LineItem, Movement, Plan,
    Subscription, Transaction,
)
from services.billing_sync.models import MetricDay as MetricDayRow
from services.billing_sync.movements import CANCEL, MrrChange

# ---- data sources ------------------------------------------------------------------------------


def data_source(session: Session, uuid: str) -> DataSource:
    """Return the data source with this uuid; 404 if none."""
    source = session.scalars(select(DataSource).where(DataSource.uuid == uuid)).first()
    if source is None:
        raise NotFound(f"Data source {uuid} not found", param="uuid")
    return source


def data_sources(session: Session, *, name: str | None = None, system: str | None = None) -> list[DataSource]:
    """Return the data sources matching the filters given, oldest first."""
    query = select(DataSource).order_by(DataSource.id)
    if name:
        query = query.where(DataSource.name == name)
    if system:
        query = query.where(DataSource.system == system)
    return list(session.scalars(query))


def data_sources_by_uuid(session: Session, uuids: Iterable[str]) -> dict[str, DataSource]:
    """Return {uuid: data source} of those that exist."""
    wanted = set(uuids)
    if not wanted:
        return {}
    return {row.uuid: row for row in session.scalars(select(DataSource).where(DataSource.uuid.in_(wanted)))}


def invoice_counts(session: Session, data_source_ids: list[int]) -> dict[int, int]:
    """Return {data source id: how many invoices it holds}."""
    if not data_source_ids:
        return {}
    rows = session.execute(select(Invoice.data_source_id, func.count()).where(
        Invoice.data_source_id.in_(data_source_ids)).group_by(Invoice.data_source_id))
    return dict(rows.all())


def customers_of_data_source(session: Session, data_source_id: int) -> list[int]:
    """Return the ids of the customers holding invoices or subscriptions in the data source."""
    by_invoice = select(Invoice.customer_id).where(Invoice.data_source_id == data_source_id)
    by_subscription = select(Subscription.customer_id).where(Subscription.data_source_id == data_source_id)
    return sorted(set(session.scalars(by_invoice.union(by_subscription))))


# ---- plans ---------------------------------------------------------------------------------------


def plan(session: Session, uuid: str) -> Plan:
    """Return the plan with this uuid; 404 if none."""
    found = session.scalars(select(Plan).where(Plan.uuid == uuid)).first()
    if found is None:
        raise NotFound(f"Plan {uuid} not found", param="uuid")
    return found


def plans_by_uuid(session: Session, uuids: Iterable[str]) -> dict[str, Plan]:
    wanted = set(uuids)
    if not wanted:
        return {}
    return {row.uuid: row for row in session.scalars(select(Plan).where(Plan.uuid.in_(wanted)))}


def plan_page(session: Session, filters: dict, after_id: int, size: int) -> list[tuple[Plan, str]]:
    """Return up to `size + 1` (plan, data source uuid) after `after_id`, matching `filters`."""
    query = (select(Plan, DataSource.uuid).join(DataSource, Plan.data_source_id == DataSource.id)
             .where(Plan.id > after_id).order_by(Plan.id).limit(size + 1))
    if filters.get("data_source_uuid"):
        query = query.where(DataSource.uuid == filters["data_source_uuid"])
    if filters.get("external_id"):
        query = query.where(Plan.external_id == filters["external_id"])
    if filters.get("system"):
        query = query.where(DataSource.system == filters["system"])
    return [(row[0], row[1]) for row in session.execute(query)]


def plan_in_use(session: Session, plan_id: int) -> bool:
    """Return whether any line item bills this plan."""
    return session.scalar(select(LineItem.id).where(LineItem.plan_id == plan_id).limit(1)) is not None


# ---- customers ---------------------------------------------------------------------------------


def customer(session: Session, uuid: str) -> Customer | None:
    """Return billing's row of this customer, or None when it has no billing data."""
    return session.scalars(select(Customer).where(Customer.uuid == uuid)).first()


def customers_by_uuid(session: Session, uuids: Iterable[str]) -> dict[str, Customer]:
    wanted = set(uuids)
    if not wanted:
        return {}
    return {row.uuid: row for row in session.scalars(select(Customer).where(Customer.uuid.in_(wanted)))}


def ensure_customer(session: Session, uuid: str, external_id: str | None = None) -> None:
    """Create billing's row of this customer unless it exists (concurrent callers both succeed)."""
    _insert_customer(session, uuid, external_id, None)


def lock_customer(session: Session, uuid: str, external_id: str | None = None,
                  data_source_uuid: str | None = None, *, absent: bool = False) -> Customer | None:
    """Return this customer's row locked until the transaction ends, created if needed; None
    when the customer is known to be gone (deleted or merged away: its row went with it).
    `absent`: the caller saw no row a moment ago, so creating it is tried first."""
    row = None if absent else _locked_customer(session, uuid)
    if row is None:
        if session.get(GoneCustomer, uuid) is not None:
            return None
        # a new row is the inserting transaction's alone until it commits: no lock to take
        row = _insert_customer(session, uuid, external_id, data_source_uuid) or _locked_customer(session, uuid)
    if external_id and row.external_id != external_id:
        row.external_id = external_id
    if data_source_uuid and row.data_source_uuid != data_source_uuid:
        row.data_source_uuid = data_source_uuid
    return row


def lock_known_customer(session: Session, uuid: str) -> tuple[Customer | None, bool]:
    """Return (this customer's row locked until the transaction ends if an import learnt its
    external id and data source, else None; whether billing has no row of it), in one statement."""
    row = _locked_customer(session, uuid)
    return (row if row is not None and row.data_source_uuid is not None else None), row is None


def _insert_customer(session: Session, uuid: str, external_id: str | None,
                     data_source_uuid: str | None) -> Customer | None:
    """Insert billing's row of this customer and return it; None when it exists already."""
    insert = dialect_insert(session.get_bind().dialect.name)
    return session.scalars(insert(Customer).values(
        uuid=uuid, external_id=external_id, data_source_uuid=data_source_uuid, state={}, mrr=0, net_payments=0,
        sequence=0, may_owe=True).on_conflict_do_nothing(index_elements=["uuid"]).returning(Customer)).first()


def _locked_customer(session: Session, uuid: str) -> Customer | None:
    return session.scalars(select(Customer).where(Customer.uuid == uuid).with_for_update()
                           .execution_options(populate_existing=True)).first()


def lock_customers(session: Session, ids: Iterable[int]) -> dict[int, Customer]:
    """Lock these customers' rows in id order; return {id: row}."""
    return lock_rows(session, Customer, ids)


def due_for_review(session: Session, now: datetime, limit: int) -> list[str]:
    """Return uuids of customers whose figures may have changed by `now` through time alone."""
    return list(session.scalars(select(Customer.uuid).where(Customer.review_at <= now)
                                .order_by(Customer.review_at).limit(limit)))


def mark_gone(session: Session, uuid: str, merged_into: str | None = None) -> None:
    """Remember that a customer was deleted (or merged into `merged_into`)."""
    insert_ignore(session, GoneCustomer.__table__, [{"uuid": uuid, "merged_into": merged_into,
                                                    "gone_at": utcnow()}], ["uuid"])


def surviving_customer(session: Session, uuid: str) -> str | None:
    """Return the customer that now holds `uuid`'s records (following merges); None if deleted."""
    seen, current = set(), uuid
    while current not in seen:
        seen.add(current)
        gone = session.get(GoneCustomer, current)
        if gone is None:
            return current
        if gone.merged_into is None:
            return None
        current = gone.merged_into
    return None


def delete_customer_row(session: Session, customer_id: int) -> None:
    session.execute(delete(Customer).where(Customer.id == customer_id))


def move_books(session: Session, from_id: int, into_id: int) -> None:
    """Give one customer's invoices and subscriptions to another."""
    session.execute(update(Invoice).where(Invoice.customer_id == from_id).values(customer_id=into_id))
    session.execute(update(Subscription).where(Subscription.customer_id == from_id).values(customer_id=into_id))


def invoices_billed_to(session: Session, customer_ids: Iterable[int], data_source_id: int,
                       external_id: str) -> list[Invoice]:
    """Return the invoices of these customers billed to one customer external id of a data source
    (what an unmerge of that external id takes along), in id order."""
    ids = list(customer_ids)
    if not ids:
        return []
    return list(session.scalars(select(Invoice).where(
        Invoice.customer_id.in_(ids), Invoice.data_source_id == data_source_id,
        Invoice.customer_external_id == external_id).order_by(Invoice.id)))


def subscriptions_billed_only_by(session: Session, invoice_ids: list[int]) -> list[int]:
    """Return the ids of the subscriptions whose every line is on these invoices."""
    if not invoice_ids:
        return []
    billed = set(session.scalars(select(LineItem.subscription_id).where(
        LineItem.invoice_id.in_(invoice_ids), LineItem.subscription_id.is_not(None))))
    elsewhere = set(session.scalars(select(LineItem.subscription_id).where(
        LineItem.subscription_id.in_(billed), LineItem.invoice_id.not_in(invoice_ids)))) if billed else set()
    return sorted(billed - elsewhere)


def move_invoices(session: Session, invoice_ids: list[int], subscription_ids: list[int], into_id: int) -> None:
    """Give these invoices and subscriptions to another customer."""
    for chunk in _chunks(invoice_ids):
        session.execute(update(Invoice).where(Invoice.id.in_(chunk)).values(customer_id=into_id))
    for chunk in _chunks(subscription_ids):
        session.execute(update(Subscription).where(Subscription.id.in_(chunk)).values(customer_id=into_id))


# ---- what an import needs to know ------------------------------------------------------------------


def existing_invoice_keys(session: Session, keys: set[tuple[int, str]]) -> set[tuple[int, str]]:
    """Return which (data source id, external id) pairs already name an invoice."""
    return _existing_keys(session, Invoice, keys)


def existing_transaction_keys(session: Session, keys: set[tuple[int, str]]) -> set[tuple[int, str]]:
    """Return which (data source id, external id) pairs already name a transaction."""
    return _existing_keys(session, Transaction, keys)


def _existing_keys(session: Session, model, keys: set[tuple[int, str]]) -> set[tuple[int, str]]:
    if not keys:
        return set()
    rows = matching_pairs(session, model, keys, columns=("data_source_id", "external_id"))
    return {(source, external_id) for source, external_id in rows} & keys


def subscriptions_by_key(session: Session, keys: set[tuple[int, str]]) -> dict[tuple[int, str], Subscription]:
    """Return {(data source id, external id): subscription} of those that exist."""
    if not keys:
        return {}
    rows = matching_pairs(session, Subscription, keys)
    return {key: row for row in rows if (key := (row.data_source_id, row.external_id)) in keys}


def rate_on(session: Session, currency: str, day: date) -> tuple[date, Decimal] | None:
    """Return the latest (day, rate) of `currency` on or before `day`, or None."""
    row = session.execute(select(ExchangeRate.day, ExchangeRate.rate).where(
        ExchangeRate.currency == currency, ExchangeRate.day <= day)
        .order_by(ExchangeRate.day.desc()).limit(1)).first()
    return (row[0], Decimal(row[1])) if row else None


def insert_rows(session: Session, model, rows: list[dict]) -> list[int]:
    """Insert rows in one multi-row statement; return their ids in the order given.

    Core statements on the table: the ORM's bulk layer cost more than the SQL here.
    """
    if not rows:
        return []
    table = model.__table__
    result = session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
    return [row[0] for row in result]


def add_rows(session: Session, model, rows: list[dict]) -> None:
    """Insert rows whose ids nobody needs back: on PostgreSQL one multi-row INSERT (the engine's
    setting, roster.database), on SQLite an executemany, a loop in C."""
    if rows:
        session.execute(insert(model.__table__), rows)


# ---- a customer's history, as the engine reads it ----------------------------------------------------


def customer_changes(session: Session, customer_id: int) -> list[MrrChange]:
    """Return every MRR change of the customer's stored lines and API cancellations."""
    lines = session.execute(
        select(LineItem.uuid, LineItem.external_id, Subscription.uuid, LineItem.mrr_kind, LineItem.mrr,
               LineItem.service_period_start, LineItem.cancelled_at, LineItem.event_order)
        .join(Invoice, LineItem.invoice_id == Invoice.id)
        .join(Subscription, LineItem.subscription_id == Subscription.id)
        .where(Invoice.customer_id == customer_id, LineItem.mrr_kind.is_not(None)))
    changes = []
    for uuid, external_id, subscription, kind, mrr, start, cancelled_at, event_order in lines:
        changes.append(MrrChange(at=start, subscription_id=subscription, kind=kind, mrr=mrr, line_item_id=uuid,
                                 line_item_external_id=external_id, event_order=event_order))
        if cancelled_at is not None:
            changes.append(MrrChange(at=cancelled_at, subscription_id=subscription, kind=CANCEL, mrr=0,
                                     line_item_id=uuid, line_item_external_id=external_id,
                                     event_order=event_order))
    cancellations = session.execute(
        select(Subscription.uuid, Cancellation.at).join(Subscription, Cancellation.subscription_id == Subscription.id)
        .where(Subscription.customer_id == customer_id))
    changes.extend(MrrChange(at=at, subscription_id=subscription, kind=CANCEL) for subscription, at in cancellations)
    return changes


def movements_of(session: Session, customer_id: int, since: datetime | None = None) -> list[Movement]:
    """Return the customer's stored movements (at or after `since`, if given), oldest first."""
    query = select(Movement).where(Movement.customer_id == customer_id)
    if since is not None:
        query = query.where(Movement.at >= since)
    return list(session.scalars(query.order_by(Movement.at, Movement.id)))


def delete_movements(session: Session, ids: list[int]) -> None:
    if ids:
        session.execute(delete(Movement).where(Movement.id.in_(ids)))


def engine_invoices(session: Session, invoice_rows: list) -> list[engine.Invoice]:
    """Return engine invoices (with lines and transactions) for these invoice rows."""
    if not invoice_rows:
        return []
    ids = [row.id for row in invoice_rows]
    lines = defaultdict(list)
    for item, subscription_uuid, plan_row in session.execute(
        select(LineItem, Subscription.uuid, Plan)
        .outerjoin(Subscription, LineItem.subscription_id == Subscription.id)
        .outerjoin(Plan, LineItem.plan_id == Plan.id)
        .where(LineItem.invoice_id.in_(ids)).order_by(LineItem.id)
    ):
        lines[item.invoice_id].append(engine_line_item(item, subscription_uuid, plan_row))
    transactions = defaultdict(list)
    for row in session.scalars(select(Transaction).where(Transaction.invoice_id.in_(ids))
                               .order_by(Transaction.date, Transaction.id)):
        transactions[row.invoice_id].append(engine_transaction(row))
    return [engine_invoice(row, lines[row.id], transactions[row.id]) for row in invoice_rows]


def engine_invoice(row, lines, transactions) -> engine.Invoice:
    return engine.Invoice(id=row.uuid, date=row.date, line_items=tuple(lines), transactions=tuple(transactions),
                          due_date=row.due_date, currency=row.currency, exchange_rate=Decimal(row.exchange_rate),
                          external_id=row.external_id)


def engine_line_item(item: LineItem, subscription_uuid: str | None, plan_row: Plan | None) -> engine.LineItem:
    plan = None
    if plan_row is not None:
        plan = engine.Plan(plan_row.interval_unit, plan_row.interval_count, plan_row.uuid)
    return engine.LineItem(
        id=item.uuid, type=item.type, amount_in_cents=item.amount_in_cents,
        tax_amount_in_cents=item.tax_amount_in_cents, external_id=item.external_id,
        subscription_id=subscription_uuid, plan=plan, service_period_start=item.service_period_start,
        service_period_end=item.service_period_end, prorated=item.prorated, proration_type=item.proration_type,
        cancelled_at=item.cancelled_at, quantity=item.quantity, event_order=item.event_order)


def engine_transaction(row: Transaction) -> engine.Transaction:
    return engine.Transaction(id=row.uuid, type=row.type, result=row.result, date=row.date,
                              amount_in_cents=row.amount_in_cents, external_id=row.external_id)


def unsettled_invoices(session: Session, customer_id: int, now: datetime) -> list[engine.Invoice]:
    """Return the customer's invoices not settled by `now`, the only ones that can be past due."""
    rows = list(session.scalars(select(Invoice).where(
        Invoice.customer_id == customer_id, or_(Invoice.settled_at.is_(None), Invoice.settled_at > now))))
    return engine_invoices(session, rows)


def customer_invoice_rows(session: Session, customer_id: int) -> list[Invoice]:
    return list(session.scalars(select(Invoice).where(Invoice.customer_id == customer_id)
                                .order_by(Invoice.date, Invoice.id)))


def customer_cancellations(session: Session, customer_id: int) -> list[engine.Cancellation]:
    rows = session.execute(select(Subscription.uuid, Cancellation.at)
                           .join(Subscription, Cancellation.subscription_id == Subscription.id)
                           .where(Subscription.customer_id == customer_id))
    return [engine.Cancellation(subscription, at) for subscription, at in rows]


def cause_details(session: Session, line_uuids: set[str], subscription_uuids: set[str]) -> tuple[dict, dict]:
    """Return ({line uuid: details}, {subscription uuid: details}) to describe movements.

    Details: subscription_external_id, plan_name, plan_external_id, data_source_uuid; a
    subscription's plan is the one of its latest line.
    """
    lines, subscriptions = {}, {}
    if line_uuids:
        for uuid, sub_external, plan_name, plan_external, source in session.execute(
            select(LineItem.uuid, Subscription.external_id, Plan.name, Plan.external_id, DataSource.uuid)
            .join(Subscription, LineItem.subscription_id == Subscription.id)
            .join(DataSource, Subscription.data_source_id == DataSource.id)
            .outerjoin(Plan, LineItem.plan_id == Plan.id)
            .where(LineItem.uuid.in_(line_uuids))
        ):
            lines[uuid] = {"subscription_external_id": sub_external, "plan_name": plan_name,
                           "plan_external_id": plan_external, "data_source_uuid": source}
    if subscription_uuids:
        rows = session.execute(select(Subscription.id, Subscription.uuid, Subscription.external_id, DataSource.uuid)
                               .join(DataSource, Subscription.data_source_id == DataSource.id)
                               .where(Subscription.uuid.in_(subscription_uuids))).all()
        plans = latest_plans(session, [row[0] for row in rows])
        for subscription_id, uuid, sub_external, source in rows:
            plan = plans.get(subscription_id)
            subscriptions[uuid] = {"subscription_external_id": sub_external, "plan_name": plan.name if plan else None,
                                   "plan_external_id": plan.external_id if plan else None,
                                   "data_source_uuid": source}
    return lines, subscriptions


# ---- subscriptions ---------------------------------------------------------------------------------


def subscription(session: Session, uuid: str) -> Subscription:
    """Return the subscription with this uuid; 404 if none."""
    found = session.scalars(select(Subscription).where(Subscription.uuid == uuid)).first()
    if found is None:
        raise NotFound(f"Subscription {uuid} not found", param="uuid")
    return found


def subscriptions_of(session: Session, customer_id: int) -> list[Subscription]:
    return list(session.scalars(select(Subscription).where(Subscription.customer_id == customer_id)
                                .order_by(Subscription.id)))


def cancellation_dates(session: Session, subscription_ids: list[int]) -> dict[int, list[datetime]]:
    """Return {subscription id: its API cancellation dates, oldest first}."""
    found = defaultdict(list)
    if subscription_ids:
        for subscription_id, at in session.execute(
            select(Cancellation.subscription_id, Cancellation.at)
            .where(Cancellation.subscription_id.in_(subscription_ids)).order_by(Cancellation.at)
        ):
            found[subscription_id].append(at)
    return found


def line_cancellation_dates(session: Session, subscription_ids: list[int]) -> dict[int, list[datetime]]:
    """Return {subscription id: `cancelled_at` dates carried by its lines}."""
    found = defaultdict(list)
    if subscription_ids:
        for subscription_id, at in session.execute(
            select(LineItem.subscription_id, LineItem.cancelled_at)
            .where(LineItem.subscription_id.in_(subscription_ids), LineItem.cancelled_at.is_not(None))
        ):
            found[subscription_id].append(at)
    return found


def replace_cancellations(session: Session, subscription_id: int, dates: list[datetime]) -> None:
    session.execute(delete(Cancellation).where(Cancellation.subscription_id == subscription_id))
    if dates:
        session.execute(insert(Cancellation), [{"subscription_id": subscription_id, "at": at} for at in dates])


def delete_subscriptions(session: Session, ids: list[int]) -> None:
    """Delete subscriptions (no line may name them any more) with their cancellations."""
    for chunk in _chunks(ids):
        session.execute(update(Subscription).where(Subscription.connected_to_id.in_(chunk))
                        .values(connected_to_id=None))
        session.execute(delete(Cancellation).where(Cancellation.subscription_id.in_(chunk)))
        session.execute(delete(Subscription).where(Subscription.id.in_(chunk)))


def latest_plans(session: Session, subscription_ids: list[int]) -> dict[int, Plan]:
    """Return {subscription id: the plan of its latest line (by service period start)}."""
    if not subscription_ids:
        return {}
    found = {}
    rows = session.execute(select(LineItem.subscription_id, Plan).join(Plan, LineItem.plan_id == Plan.id)
                           .where(LineItem.subscription_id.in_(subscription_ids))
                           .order_by(LineItem.subscription_id, LineItem.service_period_start, LineItem.id))
    for subscription_id, plan in rows:
        found[subscription_id] = plan  # the last one, in order, wins
    return found


def delete_plans_of(session: Session, data_source_id: int) -> None:
    session.execute(delete(Plan).where(Plan.data_source_id == data_source_id))


def delete_orphan_subscriptions(session: Session, customer_id: int) -> list[int]:
    """Delete the customer's subscriptions no line names any more; return their ids."""
    used = select(LineItem.subscription_id).where(LineItem.subscription_id.is_not(None))
    orphans = list(session.scalars(select(Subscription.id).where(
        Subscription.customer_id == customer_id, Subscription.id.not_in(used))))
    delete_subscriptions(session, orphans)
    return orphans


# ---- invoices ----------------------------------------------------------------------------------------


def _invoice_query():
    """Invoices as mappings of their columns plus `customer_uuid` and `data_source_uuid`."""
    return (select(*Invoice.__table__.c, Customer.uuid.label("customer_uuid"),
                   DataSource.uuid.label("data_source_uuid"))
            .join(Customer, Invoice.customer_id == Customer.id)
            .join(DataSource, Invoice.data_source_id == DataSource.id))


def invoice_by_uuid(session: Session, uuid: str):
    """Return the invoice (a mapping, see `_invoice_query`); 404 if none."""
    row = session.execute(_invoice_query().where(Invoice.uuid == uuid)).first()
    if row is None:
        raise NotFound(f"Invoice {uuid} not found", param="uuid")
    return row._mapping


def invoice_row(session: Session, uuid: str) -> Invoice:
    """Return the invoice's ORM row (to change it); 404 if none."""
    row = session.scalars(select(Invoice).where(Invoice.uuid == uuid)).first()
    if row is None:
        raise NotFound(f"Invoice {uuid} not found", param="uuid")
    return row


def invoices_by_id(session: Session, ids: list[int]) -> list:
    """Return these invoices (mappings), in id order."""
    if not ids:
        return []
    return [row._mapping for row in session.execute(_invoice_query().where(Invoice.id.in_(ids)).order_by(Invoice.id))]


def invoice_page(session: Session, filters: dict, after_id: int, size: int) -> list:
    """Return up to `size + 1` invoices (mappings) after `after_id`, matching `filters`."""
    query = _invoice_query().where(Invoice.id > after_id).order_by(Invoice.id).limit(size + 1)
    if filters.get("customer_uuid"):
        query = query.where(Customer.uuid == filters["customer_uuid"])
    if filters.get("data_source_uuid"):
        query = query.where(DataSource.uuid == filters["data_source_uuid"])
    if filters.get("external_id"):
        query = query.where(Invoice.external_id == filters["external_id"])
    return [row._mapping for row in session.execute(query)]


def invoice_children(session: Session, invoice_ids: list[int]) -> tuple[dict, dict]:
    """Return ({invoice id: [line mappings]}, {invoice id: [transaction mappings]}), one query each.

    A line mapping holds its columns plus `subscription_uuid`, `subscription_external_id`,
    `subscription_set_external_id` and `plan_uuid`.
    """
    lines, transactions = defaultdict(list), defaultdict(list)
    if not invoice_ids:
        return lines, transactions
    for row in session.execute(
        select(*LineItem.__table__.c, Subscription.uuid.label("subscription_uuid"),
               Subscription.external_id.label("subscription_external_id"),
               Subscription.subscription_set_external_id.label("subscription_set_external_id"),
               Plan.uuid.label("plan_uuid"))
        .outerjoin(Subscription, LineItem.subscription_id == Subscription.id)
        .outerjoin(Plan, LineItem.plan_id == Plan.id)
        .where(LineItem.invoice_id.in_(invoice_ids)).order_by(LineItem.id)
    ):
        lines[row.invoice_id].append(row._mapping)
    for row in session.execute(select(Transaction.__table__).where(Transaction.invoice_id.in_(invoice_ids))
                               .order_by(Transaction.date, Transaction.id)):
        transactions[row.invoice_id].append(row._mapping)
    return lines, transactions


def status_view(invoice, lines, transactions) -> engine.Invoice:
    """Return just enough of an engine invoice (amounts, due date, transactions) for its status."""
    return engine.Invoice(
        id=invoice["uuid"], date=invoice["date"], due_date=invoice["due_date"],
        line_items=tuple(engine.LineItem(id=line["uuid"], type=line["type"], amount_in_cents=line["amount_in_cents"])
                         for line in lines),
        transactions=tuple(engine.Transaction(id=t["uuid"], type=t["type"], result=t["result"], date=t["date"],
                                              amount_in_cents=t["amount_in_cents"]) for t in transactions))


def invoice_ids_of(session: Session, *, customer_id: int | None = None, data_source_id: int | None = None) -> list[int]:
    query = select(Invoice.id)
    if customer_id is not None:
        query = query.where(Invoice.customer_id == customer_id)
    if data_source_id is not None:
        query = query.where(Invoice.data_source_id == data_source_id)
    return list(session.scalars(query.order_by(Invoice.id)))


def invoice_rows(session: Session, ids: list[int]) -> list[Invoice]:
    if not ids:
        return []
    return list(session.scalars(select(Invoice).where(Invoice.id.in_(ids)).order_by(Invoice.id)))


def delete_invoices(session: Session, ids: list[int]) -> None:
    """Delete invoices with their lines and transactions."""
    for chunk in _chunks(ids):
        session.execute(delete(Transaction).where(Transaction.invoice_id.in_(chunk)))
        session.execute(delete(LineItem).where(LineItem.invoice_id.in_(chunk)))
        session.execute(delete(Invoice).where(Invoice.id.in_(chunk)))


def _chunks(ids: list[int], size: int = 500):
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


# ---- metrics -------------------------------------------------------------------------------------------


METRIC_FIELDS = ("new_business", "expansion", "contraction", "churn", "reactivation", "customers")


# A transaction adds its metric day changes to one part of each day (see models.MetricDay).
METRIC_PARTS = 16


def metric_part(session: Session) -> int:
    """Return the part of each day this transaction adds to.

    On PostgreSQL it follows the server process of the session's connection: concurrent
    transactions are on different connections, whose server processes were mostly started
    one after the other, so they add to different rows unless their process ids are a
    multiple of 16 apart. SQLite runs one writer at a time anyway: part 0.
    """
    connection = session.connection().connection.dbapi_connection
    info = getattr(connection, "info", None)
    return getattr(info, "backend_pid", 0) % METRIC_PARTS


def add_metric_days(session: Session, days: list[MetricDay]) -> None:
    """Add these figures to the transaction's part of their days (created when missing), in
    day order.

    In day order, and last in the transaction, so concurrent imports that meet on a part
    queue briefly instead of deadlocking.
    """
    part = metric_part(session)
    rows = [{"day": row.day, "part": part, **{name: getattr(row, name) for name in METRIC_FIELDS}}
            for row in sorted(days, key=lambda r: r.day) if not row.is_zero()]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":  # RETURNING makes it one multi-row statement, not one per row
        # (not sort_by_parameter_order: with it SQLAlchemy sends one statement per row; the
        # VALUES keep the rows' order either way, and the answer is not read)
        session.execute(_metric_upsert(dialect).returning(MetricDayRow.__table__.c.day), rows).all()
    else:
        session.execute(_metric_upsert(dialect), rows)


_UPSERTS: dict = {}


def _metric_upsert(dialect: str):
    """Return the statement that adds a day's figures to its part (one per dialect, built once).

    Run with the rows in day order: both databases apply them in that order, so concurrent
    transactions take the rows' locks in the same order.
    """
    if dialect not in _UPSERTS:
        table = MetricDayRow.__table__
        statement = dialect_insert(dialect)(table)
        _UPSERTS[dialect] = statement.on_conflict_do_update(
            index_elements=["day", "part"],
            set_={name: table.c[name] + statement.excluded[name] for name in METRIC_FIELDS})
    return _UPSERTS[dialect]


def metric_days(session: Session, start: date, end: date) -> list[MetricDay]:
    """Return the days from `start` to `end` that have figures (the sums of their parts), oldest first."""
    sums = [func.sum(MetricDayRow.__table__.c[name]) for name in METRIC_FIELDS]
    rows = session.execute(select(MetricDayRow.day, *sums)
                           .where(MetricDayRow.day >= start, MetricDayRow.day <= end)
                           .group_by(MetricDayRow.day).order_by(MetricDayRow.day))
    return [MetricDay(day, *(int(value) for value in figures)) for day, *figures in rows]


def metric_opening(session: Session, start: date) -> tuple[int, int]:
    """Return (MRR, paying customers) at the end of the day before `start`."""
    row = session.execute(select(
        func.coalesce(func.sum(MetricDayRow.new_business + MetricDayRow.expansion + MetricDayRow.contraction
                               + MetricDayRow.churn + MetricDayRow.reactivation), 0),
        func.coalesce(func.sum(MetricDayRow.customers), 0),
    ).where(MetricDayRow.day < start)).one()
    return int(row[0]), int(row[1])


# ---- exchange rates ----------------------------------------------------------------------------------


def put_rates(session: Session, currency: str, rates: list[tuple[date, Decimal]]) -> None:
    """Store these dated rates, replacing any stored for the same days."""
    days = [day for day, _ in rates]
    for chunk in range(0, len(days), 500):
        session.execute(delete(ExchangeRate).where(ExchangeRate.currency == currency,
                                                   ExchangeRate.day.in_(days[chunk:chunk + 500])))
    session.execute(insert(ExchangeRate), [{"currency": currency, "day": day, "rate": str(rate)}
                                           for day, rate in rates])


def rates_of(session: Session, currency: str) -> list[tuple[date, str]]:
    return [(day, rate) for day, rate in session.execute(
        select(ExchangeRate.day, ExchangeRate.rate).where(ExchangeRate.currency == currency)
        .order_by(ExchangeRate.day))]

