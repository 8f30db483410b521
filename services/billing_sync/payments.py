"""Payments: net payments of a customer and whether an invoice is settled or past due.

Pure: no nameko, database or network. Rules: `docs/mrr.md` ("Payments and status").
"""
from collections.abc import Iterable
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
