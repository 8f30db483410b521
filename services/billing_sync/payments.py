"""Payments: net payments of a customer and whether an invoice is settled or past due.

Pure: no nameko, database or network. Rules: `docs/mrr.md` ("Payments and status").
"""
from collections.abc import Iterable, Sequence
from datetime import datetime

from services.billing_sync.invoices import (
    FAILED, PAYMENT, REFUND, SUCCESSFUL, Invoice, Transaction,
)
from services.billing_sync.money import round_cents


def transaction_amount(invoice: Invoice, transaction: Transaction) -> int:
    """Return the transaction's amount in account-currency cents (no amount = the invoice total)."""
    amount = transaction.amount_in_cents
    if amount is None:
        amount = invoice.total_in_cents
    return round_cents(amount * invoice.exchange_rate)


def payment_effect(invoice: Invoice, transaction: Transaction) -> int:
    """Return what the transaction adds to net payments: +amount for a successful payment,
    −amount for a successful refund, 0 for a failed one (so a running total can be kept)."""
    if transaction.result != SUCCESSFUL:
        return 0
    sign = {PAYMENT: 1, REFUND: -1}.get(transaction.type, 0)
    return sign * transaction_amount(invoice, transaction)


def transaction_refusals(total_in_cents: int, transactions: Sequence[Transaction]) -> dict[int, str]:
    """Return, by position in `transactions`, why a transaction cannot be on an invoice of
    `total_in_cents` (amounts in the invoice's currency, no amount = the whole total).

    A transaction moves at most the invoice's total (its size, for a credit note), and the
    successful refunds together return at most that much: otherwise one mistyped amount puts
    the customer's net payments anywhere. Payments are not capped in total: a customer can be
    charged twice. Refunds are counted in date order (the order given, on the same date).
    """
    bound = abs(total_in_cents)
    refusals, refunded = {}, 0
    for index in sorted(range(len(transactions)), key=lambda i: transactions[i].date):
        transaction = transactions[index]
        amount = bound if transaction.amount_in_cents is None else transaction.amount_in_cents
        if amount > bound:
            refusals[index] = f"must not be more than the invoice's total ({bound})"
        elif transaction.type == REFUND and transaction.result == SUCCESSFUL:
            if refunded + amount > bound:
                refusals[index] = (f"refunds {amount}, but only {bound - refunded} of the invoice's total "
                                   f"({bound}) is left to refund (no amount means the whole total)")
            else:
                refunded += amount
    return refusals


def net_payments(invoices: Iterable[Invoice], at: datetime | None = None) -> int:
    """Return successful payments minus successful refunds (failed ones ignored), in account
    cents, counting transactions dated on or before `at` (all of them when `at` is None)."""
    return sum(payment_effect(invoice, transaction)
               for invoice in invoices for transaction in invoice.transactions
               if at is None or transaction.date <= at)


def is_settled(invoice: Invoice, at: datetime) -> bool:
    """Return whether a successful payment dated on or before `at` was recorded on the invoice."""
    return any(t.type == PAYMENT and t.result == SUCCESSFUL and t.date <= at
               for t in invoice.transactions)


def is_past_due(invoice: Invoice, at: datetime) -> bool:
    """Return whether the invoice is unpaid at `at` and either overdue (due date before `at`) or
    refused (a failed payment on or before `at`). Invoices for nothing (total ≤ 0) never are."""
    if invoice.total_in_cents <= 0 or is_settled(invoice, at):
        return False
    overdue = invoice.due_date is not None and invoice.due_date < at
    refused = any(t.type == PAYMENT and t.result == FAILED and t.date <= at
                  for t in invoice.transactions)
    return overdue or refused
