"""A customer's books kept in step with its invoices, inside the write transaction of a command.

What the service layer calls after it has changed a customer's invoices, lines, transactions
or cancellations (see docs/mrr.md, "Incremental recomputation" and "Payments and status"):

* `extend(customer, changes)`: the new MRR changes of a command. When they all come after
  the stored state's `as_of`, the engine folds just them from the stored state
  (`movements_from`): the cost does not grow with the customer's history. Otherwise (a
  backdated import) the customer is recomputed from its stored lines.
* `recompute(customer, since)`: the full fold over the stored lines; stored movements at or
  after `since` that the fold no longer gives are retracted, new ones recorded, equal ones
  kept (so a recompute that changes nothing announces nothing).
* `evaluate(customer)`: MRR, status and customer-since as of now, from the stored state and
  only the customer's unsettled invoices; also when the figures may next change by time alone.
* `announce(customer)`: `customer_metrics_changed` with the next per-customer sequence.
* `close()`: adds the metric day changes of every customer touched, in day order, last.

The customer rows must be locked by the caller (`store.lock_customer`), so two commands on
one customer never interleave.
"""
from __future__ import annotations

import uuid as uuid_lib
from datetime import datetime

from roster.timestamps import render, utcnow
from roster.uow import Transaction
from services.billing_sync import domain, store
from services.billing_sync.metrics import day_changes
from services.billing_sync.models import Customer, Movement as MovementRow
from services.billing_sync.movements import (
    Cause, CustomerState, Movement, MrrChange, movements, movements_from, state_at,
)
from services.billing_sync.settings import account_currency
from services.billing_sync.status import customer_status


def cause_dict(cause: Cause) -> dict:
    """Return a cause as events and storage carry it."""
    return {"line_item_uuid": cause.line_item_id, "line_item_external_id": cause.line_item_external_id,
            "subscription_uuid": cause.subscription_id, "kind": cause.kind}


def sorted_causes(causes) -> list[dict]:
    """Return causes in one canonical order, so equal movements compare equal however found."""
    return sorted((cause_dict(c) for c in causes),
                  key=lambda c: (c["subscription_uuid"] or "", c["kind"], c["line_item_uuid"] or ""))


def movement_key(at: datetime, kind: str, delta: int, mrr_after: int, causes: list[dict]) -> tuple:
    return (at, kind, delta, mrr_after, tuple(tuple(sorted(c.items())) for c in causes))


class Ledger:
    """The books of the customers one write transaction touches (see the module docstring)."""

    def __init__(self, tx: Transaction, now: datetime | None = None):
        self.tx = tx
        self.session = tx.session
        self.now = now or utcnow()
        self.currency = account_currency()
        self.days: dict = {}
        self.line_details: dict[str, dict] = {}  # what a command already knows of its new lines
        self.largest_mrr = 0  # the largest |MRR| a customer reaches in the movements recorded

    # ---- movements ----

    def extend(self, customer: Customer, changes: list[MrrChange]) -> None:
        """Apply a command's new MRR changes to the customer's movements and state."""
        if not changes:
            return
        state = CustomerState.from_dict(customer.state or {})
        earliest = min(change.at for change in changes)
        if state.as_of is not None and earliest <= state.as_of:
            self.recompute(customer, since=earliest)
            return
        replay = movements_from(state, changes)
        self._replace(customer, [], list(replay.movements))
        customer.state = replay.state.to_dict()

    def recompute(self, customer: Customer, since: datetime | None = None) -> None:
        """Fold the customer's whole stored history; replace the movements at or after `since`."""
        replay = movements(store.customer_changes(self.session, customer.id))
        stored = store.movements_of(self.session, customer.id, since)
        fresh = [m for m in replay.movements if since is None or m.at >= since]
        kept = {movement_key(row.at, row.type, row.delta, row.mrr_after, row.causes): row for row in stored}
        added = []
        for movement in fresh:
            key = movement_key(movement.at, movement.type, movement.delta, movement.mrr_after,
                               sorted_causes(movement.causes))
            if kept.pop(key, None) is None:
                added.append(movement)
        self._replace(customer, list(kept.values()), added)
        customer.state = replay.state.to_dict()

    def forget(self, customer: Customer) -> None:
        """Retract every movement of a customer whose billing data is going away."""
        self._replace(customer, store.movements_of(self.session, customer.id), [])
        customer.state = {}

    def _replace(self, customer: Customer, removed: list[MovementRow], added: list[Movement]) -> None:
        if removed:
            store.delete_movements(self.session, [row.id for row in removed])
            for row in removed:
                self.tx.record("mrr_movement_retracted", customer_uuid=customer.uuid, movement_uuid=row.uuid)
        if added:
            self._record(customer, added)
            self.largest_mrr = max(self.largest_mrr, *(abs(movement.mrr_after) for movement in added))
        gone = [Movement(at=row.at, type=row.type, delta=row.delta, mrr_after=row.mrr_after) for row in removed]
        for row in day_changes(gone, added):
            self.days[row.day] = self.days[row.day].plus(row) if row.day in self.days else row

    def _record(self, customer: Customer, found: list[Movement]) -> None:
        mains = [domain.main_cause(m.type, m.causes) for m in found]
        lines, subscriptions = store.cause_details(
            self.session,
            {c.line_item_id for c in mains if c is not None and c.line_item_id
             and c.line_item_id not in self.line_details},
            {c.subscription_id for c in mains if c is not None and not c.line_item_id})
        lines.update(self.line_details)
        rows = []
        for movement, main in zip(found, mains):
            details = {}
            if main is not None:
                details = lines.get(main.line_item_id) or subscriptions.get(main.subscription_id) or {}
            rows.append({
                "uuid": f"mov_{uuid_lib.uuid4()}", "customer_id": customer.id, "at": movement.at,
                "type": movement.type, "delta": movement.delta, "mrr_after": movement.mrr_after,
                "causes": sorted_causes(movement.causes),
                "description": domain.describe_movement(
                    movement.type, details.get("plan_name"),
                    cancelled=main is not None and main.kind == "cancellation"),
                "subscription_external_id": details.get("subscription_external_id"),
                "plan_external_id": details.get("plan_external_id"),
                "data_source_uuid": details.get("data_source_uuid"),
            })
        store.add_rows(self.session, MovementRow, rows)
        for row in rows:
            self.tx.record("mrr_movement_recorded", customer_uuid=customer.uuid, movement={
                "uuid": row["uuid"], "type": row["type"], "date": render(row["at"]),
                "mrr_movement": row["delta"], "mrr": row["mrr_after"], "arr": 12 * row["mrr_after"],
                "currency": self.currency, "description": row["description"],
                "subscription_external_id": row["subscription_external_id"],
                "plan_external_id": row["plan_external_id"], "data_source_uuid": row["data_source_uuid"],
                "causes": row["causes"],
            })

    # ---- figures ----

    def evaluate(self, customer: Customer) -> bool:
        """Set the customer's MRR, status, customer-since and next review as of now; return
        whether MRR, status or customer-since changed."""
        state = CustomerState.from_dict(customer.state or {})
        next_change = None
        if state.as_of is not None and state.as_of > self.now:  # lines dated in the future
            changes = store.customer_changes(self.session, customer.id)
            state = state_at(changes, self.now)
            next_change = min(c.at for c in changes if c.at > self.now)
        unsettled = store.unsettled_invoices(self.session, customer.id, self.now) if customer.may_owe else []
        customer.may_owe = bool(unsettled)
        status = customer_status(state=state, invoices=unsettled, at=self.now, lead_status=None)
        before = (customer.mrr, customer.status, customer.customer_since)
        customer.mrr, customer.status, customer.customer_since = state.mrr, status, state.customer_since
        customer.review_at = domain.next_review(now=self.now, next_change=next_change, unsettled=unsettled)
        return before != (customer.mrr, customer.status, customer.customer_since)

    def announce(self, customer: Customer) -> dict:
        """Record `customer_metrics_changed` with the customer's figures; return them."""
        customer.sequence = (customer.sequence or 0) + 1
        figures = metrics_of(customer, self.currency)
        self.tx.record("customer_metrics_changed", **figures)
        return figures

    def settle(self, customer: Customer) -> dict:
        """Evaluate and announce the customer's figures (after any change to its books)."""
        self.evaluate(customer)
        return self.announce(customer)

    def close(self) -> None:
        """Add the metric day changes of this transaction, in day order."""
        store.add_metric_days(self.session, [row for row in self.days.values() if not row.is_zero()])
        self.days = {}


def metrics_of(customer: Customer | None, currency: str, uuid: str | None = None) -> dict:
    """Return a customer's figures as `customer_metrics_changed` and the RPC carry them."""
    if customer is None:
        return {"customer_uuid": uuid, "sequence": 0, "mrr": 0, "arr": 0, "status": None,
                "customer_since": None, "net_payments": 0, "currency": currency}
    return {"customer_uuid": customer.uuid, "sequence": customer.sequence or 0, "mrr": customer.mrr,
            "arr": 12 * customer.mrr, "status": customer.status, "customer_since": render(customer.customer_since),
            "net_payments": customer.net_payments, "currency": currency}

