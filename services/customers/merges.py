"""Merge provenance: what a merge remembers of the merged-away customer, and what an unmerge
may take back. Plain functions on plain values; `tests/unit/customers/test_customers_unmerge.py`.

A merge moves the merged-away customer's external ids to the survivor, marking each with the
customer it came from (`merged_from`, kept through later merges), and keeps a snapshot of that
customer's profile, tags and custom attributes. An unmerge names one of those external ids: it
becomes a new customer again, with the snapshot of the customer it came from (when the merge
was made before snapshots were kept: an empty profile of the survivor's billing system type).
"""
from typing import NamedTuple

from roster import timestamps
from roster.errors import ValidationFailed, invalid
from services.customers.domain import DATA_SOURCE_UUID_MAX, EXTERNAL_ID_MAX, Attribute, text

# What an unmerge may take along to the new customer besides its external id, contacts and
# billing data (the activities service moves them): ChartMogul's `move_to_new_customer`.
MOVABLE_KINDS = ("tasks", "opportunities", "notes")

# The columns of a customer a snapshot keeps. Not the billing projection (mrr, arr, status,
# customer_since, net_payments): billing_sync recomputes the new customer and announces it.
SNAPSHOT_FIELDS = ("name", "email", "company", "lead_status", "owner", "city", "state", "country", "zip",
                   "website_url", "billing_system_url", "billing_system_type", "currency")
SNAPSHOT_TIMES = ("lead_created_at", "free_trial_started_at")


class UnmergeRequest(NamedTuple):
    """An unmerge, every part checked."""

    customer_uuid: str
    data_source_uuid: str
    external_id: str
    move_to_new_customer: list[str]


class Restored(NamedTuple):
    """The new customer an unmerge makes: its column values, tags and custom attributes."""

    profile: dict
    tags: list[str]
    custom: dict[str, Attribute]


def unmerge_request(data) -> UnmergeRequest:
    """Return the checked parts of `{customer_uuid, data_source_uuid, external_id, move_to_new_customer}`."""
    if not isinstance(data, dict):
        raise ValidationFailed("the unmerge must be an object")
    return UnmergeRequest(
        customer_uuid=text(data.get("customer_uuid"), "customer_uuid", max_length=DATA_SOURCE_UUID_MAX,
                           required=True),
        data_source_uuid=text(data.get("data_source_uuid"), "data_source_uuid", max_length=DATA_SOURCE_UUID_MAX,
                              required=True),
        external_id=text(data.get("external_id"), "external_id", max_length=EXTERNAL_ID_MAX, required=True),
        move_to_new_customer=movable_kinds(data.get("move_to_new_customer")),
    )


def movable_kinds(value) -> list[str]:
    """Return the kinds of data to move, each once, in MOVABLE_KINDS order; None is none."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(kind, str) for kind in value):
        raise invalid("move_to_new_customer", f"must be a list of {', '.join(MOVABLE_KINDS)}")
    unknown = [kind for kind in value if kind not in MOVABLE_KINDS]
    if unknown:
        raise invalid("move_to_new_customer",
                      f"{unknown[0][:100]!r} is not one of {', '.join(MOVABLE_KINDS)}")
    return [kind for kind in MOVABLE_KINDS if kind in value]


def former_customer(external_ids: list[tuple[str, str, str | None]], *, data_source_uuid: str,
                    external_id: str, customer_uuid: str) -> str:
    """Return the uuid of the customer the named external id came from by a merge.

    `external_ids` are the customer's (data_source_uuid, external_id, merged_from). An id the
    customer does not hold, its only id, or its own id (not brought by a merge) is a 422.
    """
    held = [merged_from for source, name, merged_from in external_ids
            if source == data_source_uuid and name == external_id]
    if not held:
        raise invalid("external_id", f"{external_id[:100]!r} of data source {data_source_uuid[:100]!r} is not an "
                                     f"external id of customer {customer_uuid}")
    if len(external_ids) == 1:
        raise invalid("external_id", "is the customer's only external id; there is nothing to unmerge")
    if held[0] is None:
        raise invalid("external_id", "is the customer's own external id, not one a merge brought; "
                                     "only those can be unmerged")
    return held[0]


def snapshot(columns: dict, tags: list[str], custom: dict[str, Attribute]) -> dict:
    """Return what a merge keeps of the merged-away customer, as JSON-ready values."""
    profile = {field: columns.get(field) for field in SNAPSHOT_FIELDS}
    for field in SNAPSHOT_TIMES:
        profile[field] = timestamps.render(columns.get(field))
    return {"profile": profile, "tags": list(tags),
            "custom": {key: [attribute.type, attribute.value, attribute.source] for key, attribute in custom.items()}}


def restored(kept: dict | None, *, billing_system_type: str) -> Restored:
    """Return the new customer an unmerge makes from a snapshot (None: an empty profile).

    Its status is the lead status it had; billing_sync announces its billing status.
    """
    if not kept:
        return Restored({"billing_system_type": billing_system_type}, [], {})
    stored = kept.get("profile") or {}
    profile = {field: stored[field] for field in SNAPSHOT_FIELDS if stored.get(field) is not None}
    for field in SNAPSHOT_TIMES:
        profile[field] = timestamps.parse(stored.get(field), field)
    profile["email_lower"] = (profile.get("email") or "").lower()
    profile["status"] = profile.get("lead_status") or "New Lead"
    profile.setdefault("billing_system_type", billing_system_type)
    custom = {key: Attribute(*values) for key, values in (kept.get("custom") or {}).items()}
    return Restored(profile, list(kept.get("tags") or []), custom)
