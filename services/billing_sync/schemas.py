"""What the billing_sync service answers over RPC: plain dicts of one shape.

These are already the wire shapes of the contract (§2.6–2.10); the gateway passes them on.
Timestamps are rendered by `roster.timestamps.render`; money is integer cents.
"""
from collections.abc import Mapping

from roster.timestamps import render
from services.billing_sync.models import DataSource, Plan, Subscription

CURRENCY_SIGNS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "AUD": "A$", "CAD": "C$", "CHF": "CHF",
                  "INR": "₹", "BRL": "R$", "SEK": "kr", "NOK": "kr", "DKK": "kr", "PLN": "zł"}


def currency_sign(currency: str) -> str:
    return CURRENCY_SIGNS.get(currency, currency)


def dump_data_source(source: DataSource) -> dict:
    dumped = {
        "uuid": source.uuid,
        "name": source.name,
        "system": source.system,
        "status": source.status,
        "created_at": render(source.created_at),
    }
    if source.base_url:  # a connector's connection; its API key is never answered
        dumped["connection"] = {"base_url": source.base_url, "api_key_set": bool(source.api_key)}
    return dumped


def dump_plan(plan: Plan, data_source_uuid: str) -> dict:
    return {
        "uuid": plan.uuid,
        "data_source_uuid": data_source_uuid,
        "name": plan.name,
        "interval_count": plan.interval_count,
        "interval_unit": plan.interval_unit,
        "external_id": plan.external_id,
    }


def dump_line_item(item) -> dict:
    """Return a line from a mapping of its columns plus `subscription_uuid`,
    `subscription_external_id`, `subscription_set_external_id` and `plan_uuid`."""
    return {
        "uuid": item["uuid"],
        "external_id": item["external_id"],
        "type": item["type"],
        "subscription_uuid": item["subscription_uuid"],
        "subscription_external_id": item["subscription_external_id"],
        "subscription_set_external_id": item["subscription_set_external_id"],
        "plan_uuid": item["plan_uuid"],
        "prorated": bool(item["prorated"]),
        "proration_type": item["proration_type"],
        "service_period_start": render(item["service_period_start"]),
        "service_period_end": render(item["service_period_end"]),
        "cancelled_at": render(item["cancelled_at"]),
        "amount_in_cents": item["amount_in_cents"],
        "quantity": item["quantity"],
        "discount_code": item["discount_code"],
        "discount_amount_in_cents": item["discount_amount_in_cents"] or 0,
        "discount_description": item["discount_description"],
        "tax_amount_in_cents": item["tax_amount_in_cents"] or 0,
        "transaction_fees_in_cents": item["transaction_fees_in_cents"] or 0,
        "transaction_fees_currency": item["transaction_fees_currency"],
        "account_code": item["account_code"],
        "description": item["description"],
        "event_order": item["event_order"],
        "mrr": item["mrr"],
    }


def dump_transaction(row) -> dict:
    """Return a transaction from a mapping of its columns (or the row itself)."""
    get = row.__getitem__ if isinstance(row, Mapping) else row.__getattribute__
    return {
        "uuid": get("uuid"),
        "external_id": get("external_id"),
        "type": get("type"),
        "date": render(get("date")),
        "result": get("result"),
        "amount_in_cents": get("amount_in_cents"),
        "transaction_fees_in_cents": get("transaction_fees_in_cents"),
        "transaction_fees_currency": get("transaction_fees_currency"),
    }


def dump_invoice(invoice, lines: list, transactions: list, status: str) -> dict:
    """Return an invoice from a mapping of its columns plus `customer_uuid` and `data_source_uuid`,
    with its lines and transactions (mappings, see `dump_line_item`)."""
    return {
        "uuid": invoice["uuid"],
        "external_id": invoice["external_id"],
        "customer_uuid": invoice["customer_uuid"],
        "customer_external_id": invoice["customer_external_id"],
        "data_source_uuid": invoice["data_source_uuid"],
        "currency": invoice["currency"],
        "exchange_rate": invoice["exchange_rate"],
        "status": status,
        "date": render(invoice["date"]),
        "due_date": render(invoice["due_date"]),
        "collection_method": invoice["collection_method"],
        "total_in_cents": invoice["total_in_cents"],
        "disabled": False,
        "line_items": [dump_line_item(line) for line in lines],
        "transactions": [dump_transaction(row) for row in transactions],
    }


def dump_import_subscription(subscription: Subscription, customer_uuid: str, data_source_uuid: str,
                             plan_uuid: str | None, cancellation_dates: list) -> dict:
    """Return a subscription as `/import/customers/{uuid}/subscriptions` and the cancel PATCH show it."""
    return {
        "uuid": subscription.uuid,
        "external_id": subscription.external_id,
        "subscription_set_external_id": subscription.subscription_set_external_id,
        "plan_uuid": plan_uuid,
        "customer_uuid": customer_uuid,
        "data_source_uuid": data_source_uuid,
        "cancellation_dates": [render(at) for at in sorted(cancellation_dates)],
    }


def dump_subscription_entry(subscription: Subscription, summary, plan: Plan | None, currency: str) -> dict:
    """Return one row of `/customers/{uuid}/subscriptions` (the contract's hyphenated keys)."""
    return {
        "id": subscription.id,
        "uuid": subscription.uuid,
        "external_id": subscription.external_id,
        "subscription_set_external_id": subscription.subscription_set_external_id,
        "plan": plan.name if plan else None,
        "plan_uuid": plan.uuid if plan else None,
        "quantity": summary.quantity,
        "mrr": summary.mrr,
        "arr": summary.arr,
        "status": summary.status,
        "billing-cycle": plan.interval_unit if plan else None,
        "billing-cycle-count": plan.interval_count if plan else None,
        "start-date": render(summary.start_date),
        "end-date": render(summary.end_date),
        "currency": currency,
        "currency-sign": currency_sign(currency),
    }
