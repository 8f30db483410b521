"""The import shapes both connectors produce, and the small conversions they share.

The shapes are the bodies of the Import API (contract §2.1, §2.3, §2.7, §2.8), so the sync can
validate and write them through the same service functions as an HTTP import. Timestamps are ISO-8601
strings in UTC (`2024-01-31T00:00:00Z`); money is integer cents.

    customer    {external_id, name, email, company, country, state, city, zip, website_url,
                 lead_created_at, billing_system_type?, billing_system_url?, attributes?}
    contact     {external_id, customer_external_id, first_name, last_name, email, phone, title}
    plan        {external_id, name, interval_count, interval_unit: day|month|year}
    invoice     {external_id, customer_external_id, date, due_date, currency, collection_method?,
                 line_items: [line item], transactions: [transaction]}
    line item   {type: subscription|one_time|trial, external_id, amount_in_cents, tax_amount_in_cents,
                 discount_amount_in_cents, quantity, subscription_external_id, plan_external_id,
                 plan_uuid (after `with_plan_uuids`), service_period_start, service_period_end,
                 prorated, cancelled_at, description}
    transaction {type: payment|refund, result: successful|failed, date, amount_in_cents, external_id}
"""
from collections.abc import Mapping
from datetime import datetime, timezone

from services.billing_sync.connectors.errors import UnknownPlan

PLAN_INTERVAL_UNITS = ("day", "month", "year")


def iso_utc(moment: datetime) -> str:
    """Return an aware datetime as an ISO-8601 UTC string ending in Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_plan_uuids(invoice: dict, plan_uuid_by_external_id: Mapping[str, str]) -> dict:
    """Return a copy of `invoice` whose subscription and trial line items carry `plan_uuid`.

    Raises UnknownPlan naming the line item when its plan has not been imported.
    """
    line_items = []
    for index, item in enumerate(invoice["line_items"]):
        item = dict(item)
        plan_external_id = item.get("plan_external_id")
        if plan_external_id is not None:
            plan_uuid = plan_uuid_by_external_id.get(plan_external_id)
            if plan_uuid is None:
                raise UnknownPlan(invoice["external_id"], f"line_items[{index}].plan_external_id",
                                  f"plan {plan_external_id!r} has not been imported")
            item["plan_uuid"] = plan_uuid
        line_items.append(item)
    return {**invoice, "line_items": line_items}
