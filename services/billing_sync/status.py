"""A customer's billing status and the state of each of its subscriptions, as of a time.

Pure: no nameko, database or network. Rules: `docs/mrr.md` ("Payments and status").
"""
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.billing_sync.invoices import ONE_TIME, Cancellation, Invoice, LineItem, Plan
from services.billing_sync.movements import CustomerState
from services.billing_sync.payments import is_past_due

ACTIVE, PAST_DUE, CANCELLED = "Active", "Past Due", "Cancelled"


@dataclass(frozen=True)
class SubscriptionSummary:
    """One row of the customer's Subscriptions tab (`/customers/{uuid}/subscriptions`)."""

    subscription_id: str
    status: str  # active, past_due or cancelled (lower case, as the contract's entries)
    mrr: int
    start_date: datetime
    end_date: datetime | None
    plan: Plan | None
    quantity: int
    cancelled_at: datetime | None = None

    @property
    def arr(self) -> int:
        """Return 12 × MRR."""
        return 12 * self.mrr


def past_due_subscriptions(
    state: CustomerState, invoices: Iterable[Invoice], at: datetime
) -> frozenset[str]:
    """Return the active subscriptions (MRR > 0) billed by an invoice that is past due at `at`."""
    active = state.active_subscriptions()
    late: set[str] = set()
    for invoice in invoices:
        billed = invoice.subscription_ids & active
        if billed and is_past_due(invoice, at):
            late |= billed
    return frozenset(late)


def customer_status(
    *, state: CustomerState, invoices: Iterable[Invoice], at: datetime, lead_status: str
) -> str:
    """Return Past Due, Active, Cancelled, or `lead_status` for a customer who never paid.

    `state` must be the customer's state as of `at` (`movements.state_at`, or the stored state when
    nothing is dated after `at`). Only invoices not settled by `at` can be past due, so passing just
    those gives the same answer at a cost that does not grow with the customer's history.
    """
    _check_state_time(state, at)
    if state.mrr > 0:
        return PAST_DUE if past_due_subscriptions(state, invoices, at) else ACTIVE
    return CANCELLED if state.has_paid else lead_status


def subscription_summaries(
    *,
    state: CustomerState,
    invoices: Sequence[Invoice],
    cancellations: Iterable[Cancellation] = (),
    at: datetime,
) -> list[SubscriptionSummary]:
    """Return one summary per subscription, oldest start first, as of `at`."""
    _check_state_time(state, at)
    lines = _subscription_lines(invoices, at)
    late = past_due_subscriptions(state, invoices, at)
    cancelled_at = _last_cancellations(invoices, cancellations, at)
    summaries = [
        _summary(sub, own, state, late, cancelled_at.get(sub) if sub in state.cancelled else None)
        for sub, own in lines.items()
    ]
    return sorted(summaries, key=lambda s: (s.start_date, s.subscription_id))


def _summary(sub: str, own: list[LineItem], state: CustomerState, late: frozenset[str],
             cancelled_at: datetime | None) -> SubscriptionSummary:
    latest = max(own, key=lambda item: item.service_period_start)
    if sub in state.cancelled:
        status = "cancelled"
    else:
        status = "past_due" if sub in late else "active"
    return SubscriptionSummary(
        subscription_id=sub, status=status, mrr=state.subscription_mrr.get(sub, 0),
        start_date=min(item.service_period_start for item in own),
        end_date=cancelled_at or latest.service_period_end,
        plan=latest.plan, quantity=latest.quantity, cancelled_at=cancelled_at,
    )


def _subscription_lines(invoices: Iterable[Invoice], at: datetime) -> dict[str, list[LineItem]]:
    """Return the subscription and trial lines started by `at`, grouped by subscription."""
    lines: dict[str, list[LineItem]] = {}
    for invoice in invoices:
        for item in invoice.line_items:
            if (item.type != ONE_TIME and item.subscription_id
                    and item.service_period_start is not None and item.service_period_start <= at):
                lines.setdefault(item.subscription_id, []).append(item)
    return lines


def _last_cancellations(invoices: Iterable[Invoice], cancellations: Iterable[Cancellation],
                        at: datetime) -> dict[str, datetime]:
    """Return each subscription's latest cancellation on or before `at`."""
    found = [(c.subscription_id, c.at) for c in cancellations]
    found += [(item.subscription_id, item.cancelled_at) for invoice in invoices
              for item in invoice.line_items if item.cancelled_at is not None]
    latest: dict[str, datetime] = {}
    for sub, when in found:
        if when <= at and (sub not in latest or when > latest[sub]):
            latest[sub] = when
    return latest


def _check_state_time(state: CustomerState, at: datetime) -> None:
    if state.as_of is not None and state.as_of > at:
        raise ValueError(f"state is as of {state.as_of.isoformat()}, after {at.isoformat()}")
