"""A customer's MRR over time and its movements (reference §4): new_biz, expansion, contraction,
churn, reactivation.

The engine is a fold. Every subscription line item and every cancellation becomes an `MrrChange` at
an instant; `movements_from(state, changes)` applies the changes instant by instant to a
`CustomerState` (each subscription's MRR, which are cancelled, since when the customer pays) and
emits one `Movement` per instant at which the customer's total MRR changes. The full recompute is the
same fold from the empty state, so the incremental path (fold from a stored state) agrees with it by
construction; `tests/unit/test_mrr_incremental.py` checks it on generated histories.

Pure: no nameko, database or network. Rules and worked examples: `docs/mrr.md`.
"""
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from itertools import groupby

from roster.errors import ValidationFailed
from services.billing_sync.invoices import (
    DIFFERENTIAL, DIFFERENTIAL_MRR, ONE_TIME, SUBSCRIPTION, Cancellation, Invoice, LineItem,
)
from services.billing_sync.mrr import line_item_mrr

SET, ADD, CANCEL = "set", "add", "cancel"
NEW_BIZ, EXPANSION, CONTRACTION, CHURN, REACTIVATION = (
    "new_biz", "expansion", "contraction", "churn", "reactivation",
)
MOVEMENT_TYPES = (NEW_BIZ, EXPANSION, CONTRACTION, CHURN, REACTIVATION)
ADDITIVE_PRORATIONS = (DIFFERENTIAL, DIFFERENTIAL_MRR)


@dataclass(frozen=True)
class MrrChange:
    """One thing that moves one subscription's MRR at one instant.

    `kind` is SET (the line's MRR replaces the subscription's; several SETs at one instant add up),
    ADD (a differential proration: the line's MRR is added) or CANCEL (the subscription drops to 0).
    """

    at: datetime
    subscription_id: str
    kind: str
    mrr: int = 0
    line_item_id: str | None = None
    line_item_external_id: str | None = None
    event_order: int | None = None


@dataclass(frozen=True)
class Cause:
    """A line item (or an API cancellation, with no line item) behind a movement."""

    subscription_id: str
    kind: str
    line_item_id: str | None = None
    line_item_external_id: str | None = None


@dataclass(frozen=True)
class Movement:
    """A change of the customer's total MRR at one instant, with the lines that caused it."""

    at: datetime
    type: str
    delta: int
    mrr_after: int
    causes: tuple[Cause, ...] = ()

    @property
    def mrr_before(self) -> int:
        """Return the customer's MRR just before this movement."""
        return self.mrr_after - self.delta

    @property
    def arr_after(self) -> int:
        """Return the customer's ARR after this movement (12 × MRR)."""
        return 12 * self.mrr_after


@dataclass(frozen=True)
class CustomerState:
    """Everything the fold needs to carry on after `as_of` (the last instant it applied).

    `subscription_mrr` holds every subscription seen so far (0 for cancelled or free ones).
    """

    as_of: datetime | None = None
    subscription_mrr: dict[str, int] = field(default_factory=dict)
    cancelled: frozenset[str] = frozenset()
    customer_since: datetime | None = None

    @property
    def mrr(self) -> int:
        """Return the customer's MRR: the sum of its subscriptions' MRR."""
        return sum(self.subscription_mrr.values())

    @property
    def arr(self) -> int:
        """Return 12 × MRR."""
        return 12 * self.mrr

    @property
    def has_paid(self) -> bool:
        """Return whether the customer's MRR was ever above 0."""
        return self.customer_since is not None

    def active_subscriptions(self) -> frozenset[str]:
        """Return the subscriptions with MRR above 0."""
        return frozenset(s for s, mrr in self.subscription_mrr.items() if mrr > 0)

    def to_dict(self) -> dict:
        """Return the state as JSON-safe data (to store beside the customer's movements)."""
        return {
            "as_of": _iso(self.as_of),
            "subscription_mrr": dict(sorted(self.subscription_mrr.items())),
            "cancelled": sorted(self.cancelled),
            "customer_since": _iso(self.customer_since),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "CustomerState":
        """Return the state `to_dict` wrote."""
        return cls(
            as_of=_parse(data.get("as_of")),
            subscription_mrr={k: int(v) for k, v in data.get("subscription_mrr", {}).items()},
            cancelled=frozenset(data.get("cancelled", ())),
            customer_since=_parse(data.get("customer_since")),
        )


@dataclass(frozen=True)
class Replay:
    """What a fold returns: the movements it found, oldest first, and the state after them."""

    movements: tuple[Movement, ...]
    state: CustomerState


EMPTY = CustomerState()


def changes_of_item(item: LineItem, exchange_rate: Decimal = Decimal(1)) -> list[MrrChange]:
    """Return the MRR changes one line item makes: none for one-time lines; a SET or ADD at the
    service period start for subscription and trial lines; a CANCEL at `cancelled_at` if set."""
    if item.type == ONE_TIME:
        return []
    if not item.subscription_id:
        raise ValidationFailed(
            "subscription_external_id: required for subscription and trial line items",
            param="subscription_external_id",
        )
    if item.service_period_start is None:
        raise ValidationFailed(
            "service_period_start: required for subscription and trial line items",
            param="service_period_start",
        )
    additive = (item.type == SUBSCRIPTION and item.prorated
                and item.proration_type in ADDITIVE_PRORATIONS)
    changes = [_change(item, item.service_period_start, ADD if additive else SET,
                       line_item_mrr(item, exchange_rate))]
    if item.cancelled_at is not None:
        changes.append(_change(item, item.cancelled_at, CANCEL, 0))
    return changes


def changes_of(
    invoices: Iterable[Invoice], cancellations: Iterable[Cancellation] = ()
) -> list[MrrChange]:
    """Return every MRR change of a customer's invoices and API cancellations, in input order."""
    changes = [
        change
        for invoice in invoices
        for item in invoice.line_items
        for change in changes_of_item(item, invoice.exchange_rate)
    ]
    changes.extend(MrrChange(at=c.at, subscription_id=c.subscription_id, kind=CANCEL)
                   for c in cancellations)
    return changes


def movements_from(state_before: CustomerState, changes_after: Iterable[MrrChange]) -> Replay:
    """Return the movements `changes_after` make, starting from `state_before`, and the new state.

    Every change must come after `state_before.as_of`; pass all changes at or after the point you
    recompute from (not only the new ones). Cost: proportional to the changes given, not to the
    customer's history before `state_before`.
    """
    changes = sorted(changes_after, key=_order)
    if changes and state_before.as_of is not None and changes[0].at <= state_before.as_of:
        raise ValueError(
            f"changes must come after the state's as_of {state_before.as_of.isoformat()}, "
            f"got one at {changes[0].at.isoformat()}"
        )
    mrr_by_sub = dict(state_before.subscription_mrr)
    cancelled = set(state_before.cancelled)
    since, as_of = state_before.customer_since, state_before.as_of
    total = sum(mrr_by_sub.values())
    found = []
    for at, group in groupby(changes, key=lambda change: change.at):
        delta, causes = _apply_instant(list(group), mrr_by_sub, cancelled)
        movement = classify(at=at, before=total, after=total + delta, has_paid=since is not None,
                            causes=causes)
        if movement is not None:
            found.append(movement)
        total += delta
        if total > 0 and since is None:
            since = at
        as_of = at
    state = CustomerState(as_of=as_of, subscription_mrr=mrr_by_sub,
                          cancelled=frozenset(cancelled), customer_since=since)
    return Replay(movements=tuple(found), state=state)


def movements(changes: Iterable[MrrChange]) -> Replay:
    """Return the full recompute: every movement of a customer's whole history, and its state."""
    return movements_from(EMPTY, changes)


def state_at(changes: Iterable[MrrChange], at: datetime) -> CustomerState:
    """Return the customer's state as of `at`: every change at or before it applied."""
    return movements_from(EMPTY, [c for c in changes if c.at <= at]).state


def classify(
    *, at: datetime, before: int, after: int, has_paid: bool, causes: Sequence[Cause] = ()
) -> Movement | None:
    """Return the movement of a change of total MRR from `before` to `after`, or None if equal."""
    if after == before:
        return None
    if before == 0:
        kind = REACTIVATION if has_paid else NEW_BIZ
    elif after == 0:
        kind = CHURN
    else:
        kind = EXPANSION if after > before else CONTRACTION
    return Movement(at=at, type=kind, delta=after - before, mrr_after=after, causes=tuple(causes))


def _apply_instant(
    changes: list[MrrChange], mrr_by_sub: dict[str, int], cancelled: set[str]
) -> tuple[int, list[Cause]]:
    """Apply one instant's changes in place; return the change of total MRR and its causes."""
    by_sub: dict[str, list[MrrChange]] = {}
    for change in changes:
        by_sub.setdefault(change.subscription_id, []).append(change)
    delta, causes = 0, []
    for sub, own in by_sub.items():
        before = mrr_by_sub.get(sub, 0)
        after = _subscription_mrr_after(before, own)
        if any(c.kind == CANCEL for c in own):
            cancelled.add(sub)
        else:
            cancelled.discard(sub)  # a new line after a cancellation restarts the subscription
        mrr_by_sub[sub] = after
        if after != before:
            delta += after - before
            causes.extend(_cause(c) for c in own)
    return delta, causes


def _subscription_mrr_after(before: int, changes: list[MrrChange]) -> int:
    """Return one subscription's MRR after its changes at one instant (already in order)."""
    value, replaced = before, False
    for change in changes:
        if change.kind == CANCEL:
            return 0
        if change.kind == SET and not replaced:
            value, replaced = change.mrr, True
        else:
            value += change.mrr  # a further SET is another component; an ADD is a difference
    return max(0, value)


def _order(change: MrrChange) -> tuple:
    """Return the sort key: instant, cancellations last, event_order, SET before ADD."""
    return (change.at, change.kind == CANCEL, change.event_order is None,
            change.event_order or 0, change.kind == ADD)


def _change(item: LineItem, at: datetime, kind: str, mrr: int) -> MrrChange:
    return MrrChange(at=at, subscription_id=item.subscription_id, kind=kind, mrr=mrr,
                     line_item_id=item.id, line_item_external_id=item.external_id,
                     event_order=item.event_order)


def _cause(change: MrrChange) -> Cause:
    return Cause(subscription_id=change.subscription_id,
                 kind="cancellation" if change.kind == CANCEL else "line_item",
                 line_item_id=change.line_item_id,
                 line_item_external_id=change.line_item_external_id)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
