"""One customer's invoices imported in one write transaction (the service layer's import path).

The invoices have been checked field by field (`validation.clean_invoice`); here each is
checked against the stored data (its data source and plans exist, its external id is new
in the data source, its subscriptions are the customer's own, a rate exists for its currency
and date), the good ones are written with one multi-row insert per table, and their MRR
changes go to the ledger in one piece. A bad invoice is reported with its problems by field
and changes nothing; the others import.
"""
from __future__ import annotations

import uuid as uuid_lib
from dataclasses import dataclass, field
from decimal import Decimal

from roster.errors import ValidationFailed, invalid
from roster.timestamps import render
from services.billing_sync import domain, money, store
from services.billing_sync import invoices as engine
from services.billing_sync.ledger import Ledger
from services.billing_sync.models import Customer, Invoice, LineItem, Subscription, Transaction
from services.billing_sync.movements import MrrChange, changes_of_item
from services.billing_sync.payments import payment_effect, transaction_refusals
from services.billing_sync.schemas import dump_invoice
from services.billing_sync.validation import MAX_CENTS


@dataclass
class Pending:
    """One invoice on its way in: its clean fields, what it refers to, and its problems."""

    index: int
    fields: dict | None
    problems: dict[str, list[str]]
    source: object = None
    rate: Decimal = Decimal(1)
    engine_invoice: engine.Invoice | None = None
    changes: list[MrrChange] = field(default_factory=list)
    line_rows: list[dict] = field(default_factory=list)
    line_views: list[dict] = field(default_factory=list)  # what a line shows beside its columns
    answer: dict | None = None  # the imported invoice as the import answers it
    fees: list[dict] = field(default_factory=list)

    def refuse(self, name: str, reason: str) -> None:
        self.problems.setdefault(name, []).append(reason)

    @property
    def ok(self) -> bool:
        return self.fields is not None and not self.problems


class InvoiceImport:
    """Imports a batch of clean invoices for one locked customer (see the module docstring)."""

    def __init__(self, ledger: Ledger, customer: Customer, *, default_source: str | None,
                 customer_external_id: str | None):
        self.ledger = ledger
        self.session = ledger.session
        self.tx = ledger.tx
        self.customer = customer
        self.default_source = default_source
        self.customer_external_id = customer_external_id
        self.currency = ledger.currency

    def run(self, cleaned: list[tuple[dict | None, dict]]) -> tuple[list[int], list[Pending]]:
        """Import what can be imported; return (ids of the new invoices, every invoice's outcome)."""
        batch = [Pending(index, fields, dict(problems)) for index, (fields, problems) in enumerate(cleaned)]
        self._check_sources(batch)
        plans = self._check_plans(batch)
        self._check_external_ids(batch)
        subscriptions = self._check_subscriptions(batch)
        self._check_rates(batch)
        new_subscriptions = self._build(batch, plans, subscriptions)
        good = [pending for pending in batch if pending.ok]
        if not good:
            return [], batch
        invoice_ids = self._write(good, plans, subscriptions, new_subscriptions)
        self.ledger.extend(self.customer, [change for pending in good for change in pending.changes])
        if self.ledger.largest_mrr > MAX_CENTS:  # the account's sums must stay far inside 64 bits
            raise invalid("invoices", f"these invoices would take the customer's MRR to {self.ledger.largest_mrr}, "
                                      f"beyond ±{MAX_CENTS}; nothing was imported")
        return invoice_ids, batch

    # ---- checks against stored data ----

    def _check_sources(self, batch: list[Pending]) -> None:
        wanted = {p.fields["data_source_uuid"] or self.default_source for p in batch if p.ok}
        sources = store.data_sources_by_uuid(self.session, {uuid for uuid in wanted if uuid})
        for pending in batch:
            if not pending.ok:
                continue
            uuid = pending.fields["data_source_uuid"] or self.default_source
            pending.source = sources.get(uuid)
            if pending.source is None:
                pending.refuse("data_source_uuid", f"no data source {uuid} exists" if uuid else "is required")

    def _check_plans(self, batch: list[Pending]) -> dict:
        wanted = {item["plan_uuid"] for p in batch if p.ok for item in p.fields["line_items"] if item["plan_uuid"]}
        plans = store.plans_by_uuid(self.session, wanted)
        for pending in batch:
            if not pending.ok:
                continue
            for index, item in enumerate(pending.fields["line_items"]):
                plan = plans.get(item["plan_uuid"]) if item["plan_uuid"] else None
                if item["plan_uuid"] and plan is None:
                    pending.refuse(f"line_items[{index}].plan_uuid", f"no plan {item['plan_uuid']} exists")
                elif plan is not None and plan.data_source_id != pending.source.id:
                    pending.refuse(f"line_items[{index}].plan_uuid", "the plan belongs to another data source")
        return plans

    def _check_external_ids(self, batch: list[Pending]) -> None:
        invoice_keys = {(p.source.id, p.fields["external_id"]) for p in batch if p.ok}
        taken = store.existing_invoice_keys(self.session, invoice_keys)
        transaction_keys = {(p.source.id, t["external_id"]) for p in batch if p.ok
                            for t in p.fields["transactions"] if t["external_id"]}
        taken_transactions = store.existing_transaction_keys(self.session, transaction_keys)
        seen, seen_transactions = set(), set()
        for pending in batch:
            if not pending.ok:
                continue
            key = (pending.source.id, pending.fields["external_id"])
            if key in taken:
                pending.refuse("external_id", "an invoice with this external_id already exists in the data source")
            elif key in seen:
                pending.refuse("external_id", "is used by an earlier invoice of this request")
            for index, transaction in enumerate(pending.fields["transactions"]):
                if not transaction["external_id"]:
                    continue
                transaction_key = (pending.source.id, transaction["external_id"])
                if transaction_key in taken_transactions or transaction_key in seen_transactions:
                    pending.refuse(f"transactions[{index}].external_id",
                                   "a transaction with this external_id already exists in the data source")
            if pending.ok:
                seen.add(key)
                seen_transactions.update((pending.source.id, t["external_id"])
                                         for t in pending.fields["transactions"] if t["external_id"])

    def _check_subscriptions(self, batch: list[Pending]) -> dict:
        keys = {(p.source.id, item["subscription_external_id"]) for p in batch if p.ok
                for item in p.fields["line_items"] if item["subscription_external_id"]}
        found = store.subscriptions_by_key(self.session, keys)
        for pending in batch:
            if not pending.ok:
                continue
            for index, item in enumerate(pending.fields["line_items"]):
                existing = found.get((pending.source.id, item["subscription_external_id"]))
                if existing is not None and existing.customer_id != self.customer.id:
                    pending.refuse(f"line_items[{index}].subscription_external_id",
                                   "this subscription belongs to another customer of the data source")
        return found

    def _check_rates(self, batch: list[Pending]) -> None:
        known: dict = {}
        for pending in batch:
            if not pending.ok:
                continue
            currency, day = pending.fields["currency"], pending.fields["date"].date()
            if currency == self.currency:
                continue
            if (currency, day) not in known:
                found = store.rate_on(self.session, currency, day)
                known[(currency, day)] = {currency: [found]} if found else {}
            try:
                pending.rate = money.rate_on(currency, day, known[(currency, day)], self.currency)
            except ValidationFailed as missing:
                pending.refuse(missing.param or "currency", missing.message.split(": ", 1)[-1])

    # ---- the engine's view, then the rows ----

    def _build(self, batch: list[Pending], plans: dict, subscriptions: dict) -> dict:
        """Work out each good invoice's lines, MRR changes and new subscriptions."""
        new_subscriptions: dict = {}  # (source id, external id) -> row dict
        for pending in batch:
            if not pending.ok:
                continue
            claimed = {}
            lines = []
            for index, item in enumerate(pending.fields["line_items"]):
                sub_uuid = sub_set = None
                if item["subscription_external_id"]:
                    key = (pending.source.id, item["subscription_external_id"])
                    existing = subscriptions.get(key)
                    if existing is not None:
                        sub_uuid, sub_set = existing.uuid, existing.subscription_set_external_id
                    else:
                        row = new_subscriptions.get(key) or claimed.get(key) or {
                            "uuid": f"sub_{uuid_lib.uuid4()}", "customer_id": self.customer.id,
                            "data_source_id": pending.source.id, "external_id": item["subscription_external_id"],
                            "subscription_set_external_id": item["subscription_set_external_id"],
                        }
                        claimed[key] = row
                        sub_uuid, sub_set = row["uuid"], row["subscription_set_external_id"]
                plan = plans.get(item["plan_uuid"]) if item["plan_uuid"] else None
                line = engine.LineItem(
                    id=f"li_{uuid_lib.uuid4()}", type=item["type"], amount_in_cents=item["amount_in_cents"],
                    tax_amount_in_cents=item["tax_amount_in_cents"], external_id=item["external_id"],
                    subscription_id=sub_uuid,
                    plan=engine.Plan(plan.interval_unit, plan.interval_count, plan.uuid) if plan else None,
                    service_period_start=item["service_period_start"], service_period_end=item["service_period_end"],
                    prorated=item["prorated"], proration_type=item["proration_type"],
                    cancelled_at=item["cancelled_at"], quantity=item["quantity"], event_order=item["event_order"])
                try:
                    changes = changes_of_item(line, pending.rate)
                except ValidationFailed as bad:
                    pending.refuse(f"line_items[{index}].{bad.param}" if bad.param else f"line_items[{index}]",
                                   bad.message.split(": ", 1)[-1])
                    continue
                too_much = next((change.mrr for change in changes if abs(change.mrr) > MAX_CENTS), None)
                if too_much is not None:  # e.g. a large amount over a period of seconds, prorated
                    pending.refuse(f"line_items[{index}].amount_in_cents",
                                   f"makes an MRR of {too_much} over its service period, beyond ±{MAX_CENTS}")
                    continue
                pending.changes.extend(changes)
                lines.append(line)
                pending.line_rows.append({
                    **{name: item[name] for name in LINE_COLUMNS}, "uuid": line.id,
                    "plan_id": plan.id if plan else None, "_subscription_key": (pending.source.id,
                                                                                item["subscription_external_id"]),
                    "mrr": changes[0].mrr if changes else 0, "mrr_kind": changes[0].kind if changes else None,
                })
                self.ledger.line_details[line.id] = {
                    "subscription_external_id": item["subscription_external_id"],
                    "plan_name": plan.name if plan else None, "plan_external_id": plan.external_id if plan else None,
                    "data_source_uuid": pending.source.uuid}
                pending.line_views.append({
                    "subscription_uuid": sub_uuid, "subscription_external_id": item["subscription_external_id"],
                    "subscription_set_external_id": sub_set, "plan_uuid": plan.uuid if plan else None})
            if not pending.ok:
                continue
            transactions = tuple(engine.Transaction(
                id=f"tr_{uuid_lib.uuid4()}", type=t["type"], result=t["result"], date=t["date"],
                amount_in_cents=t["amount_in_cents"], external_id=t["external_id"])
                for t in pending.fields["transactions"])
            invoice = engine.Invoice(
                id=f"inv_{uuid_lib.uuid4()}", date=pending.fields["date"], line_items=tuple(lines),
                transactions=transactions, due_date=pending.fields["due_date"], currency=pending.fields["currency"],
                exchange_rate=pending.rate, external_id=pending.fields["external_id"])
            for index, reason in sorted(transaction_refusals(invoice.total_in_cents, transactions).items()):
                pending.refuse(f"transactions[{index}].amount_in_cents", reason)
            if not pending.ok:
                continue
            new_subscriptions.update(claimed)
            pending.engine_invoice = invoice
        return new_subscriptions

    def _write(self, good: list[Pending], plans: dict, subscriptions: dict, new_subscriptions: dict) -> list[int]:
        session = self.session
        used = {row["_subscription_key"] for p in good for row in p.line_rows}
        fresh = [row for key, row in new_subscriptions.items() if key in used]
        for row, row_id in zip(fresh, store.insert_rows(session, Subscription, fresh)):
            row["id"] = row_id
        sub_ids = {key: existing.id for key, existing in subscriptions.items()}
        sub_ids.update({key: row["id"] for key, row in new_subscriptions.items() if "id" in row})
        invoice_rows = [{
            "uuid": p.engine_invoice.id, "customer_id": self.customer.id, "data_source_id": p.source.id,
            "external_id": p.fields["external_id"],
            "customer_external_id": p.fields["customer_external_id"] or self.customer_external_id,
            "date": p.fields["date"], "due_date": p.fields["due_date"], "currency": p.fields["currency"],
            "exchange_rate": str(p.rate), "collection_method": p.fields["collection_method"],
            "total_in_cents": p.engine_invoice.total_in_cents, "settled_at": domain.settled_at(p.engine_invoice),
        } for p in good]
        invoice_ids = store.insert_rows(session, Invoice, invoice_rows)
        if any(row["settled_at"] is None or row["settled_at"] > self.ledger.now for row in invoice_rows):
            self.customer.may_owe = True
        line_rows, transaction_rows = [], []
        for pending, invoice_id in zip(good, invoice_ids):
            for row in pending.line_rows:
                key = row.pop("_subscription_key")
                row["invoice_id"] = invoice_id
                row["subscription_id"] = sub_ids.get(key) if key[1] else None
                line_rows.append(row)
            pending.fees = [{"transaction_fees_in_cents": t["transaction_fees_in_cents"],
                             "transaction_fees_currency": t["transaction_fees_currency"]}
                            for t in pending.fields["transactions"]]
            for transaction, fields in zip(pending.engine_invoice.transactions, pending.fields["transactions"]):
                transaction_rows.append({
                    "uuid": transaction.id, "invoice_id": invoice_id, "data_source_id": pending.source.id,
                    "external_id": transaction.external_id, "type": transaction.type, "result": transaction.result,
                    "date": transaction.date, "amount_in_cents": transaction.amount_in_cents,
                    "transaction_fees_in_cents": fields["transaction_fees_in_cents"],
                    "transaction_fees_currency": fields["transaction_fees_currency"]})
        store.add_rows(session, LineItem, line_rows)
        store.add_rows(session, Transaction, transaction_rows)
        self.customer.net_payments = (self.customer.net_payments or 0) + sum(
            payment_effect(p.engine_invoice, t) for p in good for t in p.engine_invoice.transactions)
        for pending, row, invoice_id in zip(good, invoice_rows, invoice_ids):
            self._record_imported(pending)
            pending.answer = self._answer(pending, {**row, "id": invoice_id})
        return invoice_ids

    def _answer(self, pending: Pending, row: dict) -> dict:
        """Return the invoice as a read would show it, from what was just written."""
        invoice = {**row, "customer_uuid": self.customer.uuid, "data_source_uuid": pending.source.uuid}
        lines = [{**line, **view} for line, view in zip(pending.line_rows, pending.line_views)]
        transactions = [{"uuid": t.id, "external_id": t.external_id, "type": t.type, "date": t.date,
                         "result": t.result, "amount_in_cents": t.amount_in_cents, **fees}
                        for t, fees in zip(pending.engine_invoice.transactions, pending.fees)]
        return dump_invoice(invoice, lines, transactions,
                            domain.invoice_status(pending.engine_invoice, self.ledger.now))

    def _record_imported(self, pending: Pending) -> None:
        invoice = pending.engine_invoice
        self.tx.record("invoice_imported", customer_uuid=self.customer.uuid, data_source_uuid=pending.source.uuid,
                       invoice={"uuid": invoice.id, "external_id": invoice.external_id, "date": render(invoice.date),
                                "due_date": render(invoice.due_date), "currency": invoice.currency,
                                "total_in_cents": invoice.total_in_cents,
                                "line_item_count": len(invoice.line_items)})
        for transaction in invoice.transactions:
            record_transaction(self.tx, self.customer.uuid, invoice, transaction)


def record_transaction(tx, customer_uuid: str, invoice: engine.Invoice, transaction: engine.Transaction) -> None:
    """Record `transaction_recorded` (an amount left out is the invoice total, in its currency)."""
    amount = transaction.amount_in_cents
    tx.record("transaction_recorded", customer_uuid=customer_uuid, invoice_uuid=invoice.id, transaction={
        "uuid": transaction.id, "external_id": transaction.external_id, "type": transaction.type,
        "result": transaction.result, "date": render(transaction.date),
        "amount_in_cents": invoice.total_in_cents if amount is None else amount, "currency": invoice.currency})


LINE_COLUMNS = (
    "type", "external_id", "amount_in_cents", "quantity", "discount_amount_in_cents", "discount_code",
    "discount_description", "tax_amount_in_cents", "transaction_fees_in_cents", "transaction_fees_currency",
    "service_period_start", "service_period_end", "prorated", "proration_type", "cancelled_at", "event_order",
    "account_code", "description",
)
