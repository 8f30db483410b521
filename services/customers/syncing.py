"""What a billing-system sync may change on a customer, overrides, and duplicate records.

Plain functions on plain values (`tests/unit/test_customers_syncing.py`):

* `synced_customer` checks a connector's `customer_record()` (RPC `sync_customer`);
  `synced_values` says which columns a sync sets on an existing customer: every field given
  except those the customer's overrides protect, and `attributes.stripe` as a whole.
* Overrides (ChartMogul 4.11): `{"company": true, "address": true, "attributes": {"custom":
  {"channel": true}}}`; `address` stands for country, state, city and zip; `false` un-marks.
  Stored with only the marked entries.
* Duplicates (customer-records seed, line 82): a customer of a custom source with the same
  email as a customer of a connector's source is merged into the connector's record.
"""
from typing import NamedTuple

from roster.errors import invalid
from services.customers.domain import check_custom_key, profile, record_identity, text

# Billing systems Roster imports from by itself; every other system is a custom source.
CONNECTOR_SYSTEMS = frozenset({"Stripe"})

# The customer fields a sync sets (when given) and a user may protect with an override.
SYNCED_FIELDS = ("name", "email", "company", "country", "state", "city", "zip", "website_url",
                 "lead_created_at", "billing_system_url")
ADDRESS_FIELDS = ("country", "state", "city", "zip")
# Override keys → the columns they protect from a sync.
OVERRIDABLE = {"name": ("name",), "email": ("email", "email_lower"), "company": ("company",),
               "address": ADDRESS_FIELDS, "website_url": ("website_url",),
               "lead_created_at": ("lead_created_at",), "billing_system_url": ("billing_system_url",)}

STRIPE_MAX_KEYS = 100
STRIPE_KEY_MAX = 200
STRIPE_VALUE_MAX = 1000


class SyncedCustomer(NamedTuple):
    """A customer as a billing system has it, every part checked."""

    data_source_uuid: str
    external_id: str
    billing_system_type: str | None
    profile: dict  # the columns of the fields given
    stripe: dict | None  # attributes.stripe, None when not given


def synced_customer(data) -> SyncedCustomer:
    """Return the checked parts of a connector's customer record; a 422 names the first bad field."""
    attributes, source, external_id, system = record_identity(data, "must be an object")
    return SyncedCustomer(
        data_source_uuid=source,
        external_id=external_id,
        billing_system_type=system or None,
        profile=profile({field: data[field] for field in SYNCED_FIELDS if field in data}),
        stripe=stripe_attributes(attributes["stripe"]) if "stripe" in attributes else None,
    )


def stripe_attributes(value) -> dict:
    """Return `attributes.stripe` as text by key (numbers and booleans become text; null is dropped)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid("attributes.stripe", "must be an object of key: value")
    if len(value) > STRIPE_MAX_KEYS:
        raise invalid("attributes.stripe", f"may hold at most {STRIPE_MAX_KEYS} keys")
    checked = {}
    for key, item in value.items():
        key = text(key, "attributes.stripe", max_length=STRIPE_KEY_MAX, required=True)
        if item is None:
            continue
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, (int, float)):
            item = str(item)
        checked[key] = text(item, f"attributes.stripe.{key}", max_length=STRIPE_VALUE_MAX)
    return checked


def synced_values(synced: SyncedCustomer, overrides: dict | None) -> dict:
    """Return the columns a sync sets on an existing customer: all given, but none an override protects."""
    protected = protected_columns(overrides)
    values = {column: value for column, value in synced.profile.items() if column not in protected}
    if synced.billing_system_type is not None:
        values["billing_system_type"] = synced.billing_system_type
    if synced.stripe is not None:
        values["stripe_attributes"] = synced.stripe
    return values


def follows_source(external_ids: list[tuple[str, str, str | None]], data_source_uuid: str, external_id: str) -> bool:
    """Whether a sync of (data_source_uuid, external_id) may change the customer now holding it.

    Not when a merge brought that id to a customer whose own id is another one of the same
    data source: two records of one billing system would overwrite each other on every sync.
    """
    own = [(source, name) for source, name, merged_from in external_ids if merged_from is None]
    return not any(source == data_source_uuid and name != external_id for source, name in own)


# ---- overrides ------------------------------------------------------------------------------

def overrides_after(current: dict | None, given) -> dict:
    """Return the overrides once `given` is applied (true marks, false un-marks); a 422 names a bad key."""
    result = {key: value for key, value in (current or {}).items() if key != "attributes"}
    custom = dict(((current or {}).get("attributes") or {}).get("custom") or {})
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise invalid("overrides", "must be an object of field: true or false")
    for key, value in given.items():
        if key == "attributes":
            _custom_overrides(custom, value)
            continue
        if key not in OVERRIDABLE:
            raise invalid(f"overrides.{str(key)[:100]}",
                          f"is not a field that can be overridden; one of {', '.join(OVERRIDABLE)}, attributes")
        _mark(result, key, value, f"overrides.{key}")
    if custom:
        result["attributes"] = {"custom": custom}
    return result


def _custom_overrides(custom: dict, value) -> None:
    if not isinstance(value, dict) or any(key != "custom" for key in value):
        raise invalid("overrides.attributes", 'must be {"custom": {key: true or false}}')
    keys = value.get("custom") or {}
    if not isinstance(keys, dict):
        raise invalid("overrides.attributes.custom", "must be an object of key: true or false")
    for key, marked in keys.items():
        check_custom_key(key, "overrides.attributes.custom")
        _mark(custom, key, marked, f"overrides.attributes.custom.{key}")


def _mark(marks: dict, key: str, value, field: str) -> None:
    if not isinstance(value, bool):
        raise invalid(field, "must be true or false")
    if value:
        marks[key] = True
    else:
        marks.pop(key, None)


def protected_columns(overrides: dict | None) -> set[str]:
    """Return the columns the overrides keep a sync from changing."""
    return {column for key in (overrides or {}) if key in OVERRIDABLE for column in OVERRIDABLE[key]}


def overridden_custom(overrides: dict | None) -> set[str]:
    """Return the custom attribute keys marked as overridden."""
    return set((((overrides or {}).get("attributes") or {}).get("custom") or {}))


# ---- duplicates -----------------------------------------------------------------------------

def is_connector(billing_system_type: str | None) -> bool:
    return billing_system_type in CONNECTOR_SYSTEMS


def duplicate_merges(customer: dict, same_email: list[dict]) -> list[tuple[int, int]]:
    """Return the merges (from id, into id) that fold custom-source duplicates into connector records.

    `customer` and each of `same_email` are `{"id", "email_lower", "billing_system_type"}`.
    A custom-source customer goes into the oldest connector customer with its email; a
    connector customer takes every custom-source customer with its email. No email, no merge.
    """
    email = customer.get("email_lower") or ""
    if not email.strip():
        return []
    others = [other for other in same_email if other["id"] != customer["id"] and other["email_lower"] == email]
    if is_connector(customer["billing_system_type"]):
        return [(other["id"], customer["id"]) for other in sorted(others, key=lambda c: c["id"])
                if not is_connector(other["billing_system_type"])]
    connectors = sorted((other for other in others if is_connector(other["billing_system_type"])),
                        key=lambda c: c["id"])
    return [(customer["id"], connectors[0]["id"])] if connectors else []
