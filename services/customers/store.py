"""Reading and writing customers in this service's database (one session, no commits here)."""
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from roster import timestamps
from roster.errors import NotFound, ValidationFailed
from services.customers import domain
from services.customers.models import CustomAttribute, Customer, ExternalId, Tag
from services.customers.schemas import PROFILE_FIELDS, TIME_FIELDS, customer_dict

WITH_DETAILS = (
    selectinload(Customer.external_ids),
    selectinload(Customer.tags),
    selectinload(Customer.custom_attributes),
)

CUSTOMER_COLUMNS = [getattr(Customer, field) for field in PROFILE_FIELDS + TIME_FIELDS]
SIMPLE_FIELDS = ("name", "email", "company", "city", "state", "country", "zip", "owner")
DATE_FIELDS = ("lead_created_at", "free_trial_started_at")


def by_uuid(session: Session, uuid: str) -> Customer:
    """Return the customer with this uuid, with its ids, tags and attributes; 404 if none."""
    customer = session.scalars(select(Customer).options(*WITH_DETAILS).where(Customer.uuid == uuid)).first()
    if customer is None:
        raise NotFound(f"Customer {uuid} not found", param="uuid")
    return customer


def read_by_uuid(session: Session, uuid: str) -> dict:
    """Return the customer with this uuid as the service answers it; 404 if none."""
    rows = session.connection().execute(select(*CUSTOMER_COLUMNS).where(Customer.uuid == uuid)).all()
    if not rows:
        raise NotFound(f"Customer {uuid} not found", param="uuid")
    return customer_dicts(session, rows)[0]


def by_external_id(session: Session, data_source_uuid: str, external_id: str) -> Customer:
    """Return the customer known by this external id in this data source; 404 if none."""
    customer = session.scalars(
        select(Customer).options(*WITH_DETAILS).join(ExternalId)
        .where(ExternalId.data_source_uuid == data_source_uuid, ExternalId.external_id == external_id)
    ).first()
    if customer is None:
        raise NotFound(
            f"No customer with external_id {external_id} in data source {data_source_uuid}", param="external_id"
        )
    return customer


def by_email(session: Session, email: str) -> list[Customer]:
    """Return every customer with this email (case-insensitive), oldest first."""
    return list(session.scalars(
        select(Customer).options(*WITH_DETAILS)
        .where(Customer.email_lower == email.strip().lower()).order_by(Customer.id)
    ))


def check_external_id_free(session: Session, data_source_uuid: str, external_id: str) -> None:
    taken = session.scalar(
        select(ExternalId.id).where(
            ExternalId.data_source_uuid == data_source_uuid, ExternalId.external_id == external_id
        )
    )
    if taken is not None:
        raise ValidationFailed(
            f"external_id: {external_id!r} is already used by another customer of this data source",
            param="external_id",
        )


def page(session: Session, filters: dict, after_id: int, size: int) -> list[dict]:
    """Return up to `size + 1` customers after `after_id` (keyset on id) matching `filters`.

    Reads columns, not ORM objects, and fetches ids, tags and attributes of the whole
    page in one query each: a page costs four indexed queries whatever the table size.
    """
    query = select(*CUSTOMER_COLUMNS).where(Customer.id > after_id)
    if filters.get("status"):
        query = query.where(Customer.status == domain.status_filter(filters["status"]))
    if filters.get("system"):
        query = query.where(Customer.billing_system_type == filters["system"])
    if filters.get("email"):
        query = query.where(Customer.email_lower == filters["email"].strip().lower())
    if filters.get("data_source_uuid") or filters.get("external_id"):
        ids = select(ExternalId.customer_id)
        if filters.get("data_source_uuid"):
            ids = ids.where(ExternalId.data_source_uuid == filters["data_source_uuid"])
        if filters.get("external_id"):
            ids = ids.where(ExternalId.external_id == filters["external_id"])
        query = query.where(Customer.id.in_(ids))
    rows = session.connection().execute(query.order_by(Customer.id).limit(size + 1)).all()
    return customer_dicts(session, rows)


def customer_dicts(session: Session, rows) -> list[dict]:
    """Return the dicts of customer rows, with the ids, tags and attributes of all in 3 queries.

    Core queries on the session's connection: the ORM's per-row work cost more than the SQL.
    """
    connection = session.connection()
    ids = [row.id for row in rows]
    external_ids = defaultdict(list)
    for customer_id, source, external_id in connection.execute(
        select(ExternalId.customer_id, ExternalId.data_source_uuid, ExternalId.external_id)
        .where(ExternalId.customer_id.in_(ids)).order_by(ExternalId.id)
    ):
        external_ids[customer_id].append((source, external_id))
    tags = defaultdict(list)
    for customer_id, tag in connection.execute(
        select(Tag.customer_id, Tag.tag).where(Tag.customer_id.in_(ids)).order_by(Tag.id)
    ):
        tags[customer_id].append(tag)
    custom = defaultdict(dict)
    for customer_id, key, value in connection.execute(
        select(CustomAttribute.customer_id, CustomAttribute.key, CustomAttribute.value)
        .where(CustomAttribute.customer_id.in_(ids)).order_by(CustomAttribute.id)
    ):
        custom[customer_id][key] = value
    return [
        customer_dict(row._asdict(), external_ids[row.id], tags[row.id], custom[row.id]) for row in rows
    ]


def apply_fields(customer: Customer, data: dict) -> None:
    """Set the plain profile fields present in `data`, normalised by the domain rules."""
    for field in SIMPLE_FIELDS:
        if field in data:
            value = data[field]
            setattr(customer, field, "" if value is None and field in ("name", "email", "company") else value)
    if data.get("country"):
        customer.country = data["country"].upper()  # ISO 3166-1 alpha-2 codes are upper case
    if "email" in data:
        customer.email_lower = (customer.email or "").strip().lower()
    for field in DATE_FIELDS:
        if field in data:
            setattr(customer, field, timestamps.parse(data[field], field, not_in_future=True))
    if "website_url" in data:
        customer.website_url = domain.normalise_website(data["website_url"])
    if data.get("status") is not None:
        customer.status = domain.settable_status(data["status"], current=customer.status)


def replace_tags(customer: Customer, tags: list[str]) -> None:
    wanted = domain.clean_tags(tags)
    customer.tags[:] = [row for row in customer.tags if row.tag in wanted]
    add_tags(customer, wanted)


def add_tags(customer: Customer, tags: list[str]) -> None:
    present = {row.tag for row in customer.tags}
    customer.tags.extend(Tag(tag=tag) for tag in domain.clean_tags(tags) if tag not in present)


def remove_tags(customer: Customer, tags: list[str]) -> None:
    unwanted = set(domain.clean_tags(tags))
    customer.tags[:] = [row for row in customer.tags if row.tag not in unwanted]


def add_custom_attributes(customer: Customer, attributes: list[dict]) -> None:
    """Add typed attributes; re-adding a key with its own type sets its value."""
    existing = {row.key: row for row in customer.custom_attributes}
    for attribute in attributes:
        key = domain.check_custom_key(attribute.get("key"), field="custom.key")
        type_name = attribute.get("type")
        if type_name not in domain.CUSTOM_TYPES:
            raise ValidationFailed(
                f"custom.{key}.type: must be one of {', '.join(domain.CUSTOM_TYPES)}", param=f"custom.{key}.type"
            )
        value = domain.coerce_custom_value(type_name, attribute.get("value"), key)
        source = attribute.get("source") or "API"
        row = existing.get(key)
        if row is None:
            row = CustomAttribute(key=key, type=type_name, value=value, source=source)
            customer.custom_attributes.append(row)
            existing[key] = row
        elif row.type != type_name:
            raise ValidationFailed(
                f"custom.{key}: already exists with type {row.type}, not {type_name}", param=f"custom.{key}"
            )
        else:
            row.value, row.source = value, source


def set_custom_values(customer: Customer, values: dict) -> None:
    """Set attributes by key; an existing key keeps its type, a new key's type is inferred."""
    if not isinstance(values, dict):
        raise ValidationFailed("custom: must be an object of key: value", param="custom")
    existing = {row.key: row for row in customer.custom_attributes}
    for key, given in values.items():
        domain.check_custom_key(key)
        value, source = (given.get("value"), given.get("source")) if isinstance(given, dict) else (given, None)
        row = existing.get(key)
        if row is None:
            type_name = domain.infer_custom_type(value, key)
            row = CustomAttribute(key=key, type=type_name, value=domain.coerce_custom_value(type_name, value, key),
                                  source=source or "API")
            customer.custom_attributes.append(row)
            existing[key] = row
        else:
            row.value = domain.coerce_custom_value(row.type, value, key)
            if source:
                row.source = source


def remove_custom_attributes(customer: Customer, keys: list[str]) -> None:
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise ValidationFailed("custom: must be a list of attribute keys", param="custom")
    customer.custom_attributes[:] = [row for row in customer.custom_attributes if row.key not in set(keys)]


def absorb(into: Customer, merged: Customer) -> None:
    """Move the merged-away customer's external ids, tags and missing attributes to `into`."""
    for row in list(merged.external_ids):
        row.customer = into  # back_populates moves it between the two collections
    add_tags(into, domain.merged_tags([r.tag for r in into.tags], [r.tag for r in merged.tags]))
    gained = domain.merged_custom(
        {row.key: row for row in into.custom_attributes}, {row.key: row for row in merged.custom_attributes}
    )
    for row in gained.values():
        into.custom_attributes.append(CustomAttribute(key=row.key, type=row.type, value=row.value, source=row.source))
