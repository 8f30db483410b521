"""Queries on the customers service's tables: select, lock, page. No commits, no rules, no writes."""

from sqlalchemy import bindparam, case, func, insert, literal_column, null, select, union_all
from sqlalchemy.orm import Session

from roster.database import lock_rows
from roster.timestamps import render, utcnow
from services.customers.models import CustomAttribute, CustomAttributeChange, Customer, ExternalId, MergedCustomer, Tag
from services.customers.schemas import ATTRIBUTE_FIELDS, PROFILE_FIELDS, TIME_FIELDS, customer_dict

CUSTOMER_COLUMNS = [getattr(Customer, field) for field in PROFILE_FIELDS + TIME_FIELDS + ATTRIBUTE_FIELDS]

# The statements every read and write runs, built once: building a statement costs more
# CPU than SQLite takes to run it.
IDS = bindparam("ids", expanding=True)
BY_UUID = select(*CUSTOMER_COLUMNS).where(Customer.uuid == bindparam("uuid"))
BY_ID = select(*CUSTOMER_COLUMNS).where(Customer.id == bindparam("id"))
ID_BY_UUID = select(Customer.id).where(Customer.uuid == bindparam("uuid"))
# Customers' custom attributes, external ids and tags in one statement (each a round trip, and
# on SQLite SQLAlchemy's cost per statement is many times SQLite's): rows of (kind, customer_id,
# a, b, c, value) in the order each was added; external ids: the customer's own (merged_from is
# null) first, then those gained by merges.
ATTRIBUTE, EXTERNAL_ID, TAG = 0, 1, 2
_CHILDREN = union_all(
    select(literal_column(str(ATTRIBUTE)).label("kind"), CustomAttribute.customer_id.label("customer_id"),
           CustomAttribute.key.label("a"), CustomAttribute.type.label("b"), CustomAttribute.source.label("c"),
           CustomAttribute.value.label("value"), literal_column("0").label("rank"), CustomAttribute.id.label("seq"))
    .where(CustomAttribute.customer_id.in_(IDS)),
    select(literal_column(str(EXTERNAL_ID)), ExternalId.customer_id, ExternalId.data_source_uuid,
           ExternalId.external_id, ExternalId.merged_from, null(),
           case((ExternalId.merged_from.is_(None), 0), else_=1), ExternalId.id)
    .where(ExternalId.customer_id.in_(IDS)),
    select(literal_column(str(TAG)), Tag.customer_id, Tag.tag, null(), null(), null(), literal_column("0"), Tag.id)
    .where(Tag.customer_id.in_(IDS)),
)
CHILDREN = _CHILDREN.order_by(*(_CHILDREN.selected_columns[name] for name in ("kind", "rank", "seq")))


def read_by_uuid(session: Session, uuid: str) -> dict | None:
    """Return the customer with this uuid as the service answers it; None if there is none."""
    rows = session.connection().execute(BY_UUID, {"uuid": uuid}).all()
    return customer_dicts(session, rows)[0] if rows else None


def read_by_id(session: Session, customer_id: int) -> dict | None:
    """Return the customer with this id as the service answers it; None if there is none."""
    rows = session.connection().execute(BY_ID, {"id": customer_id}).all()
    return customer_dicts(session, rows)[0] if rows else None


def id_by_uuid(session: Session, uuid: str) -> int | None:
    return session.connection().execute(ID_BY_UUID, {"uuid": uuid}).scalar()


def id_by_external_id(session: Session, data_source_uuid: str, external_id: str) -> int | None:
    return session.scalar(select(ExternalId.customer_id).where(
        ExternalId.data_source_uuid == data_source_uuid, ExternalId.external_id == external_id))


def ids_by_email(session: Session, email_lower: str) -> list[int]:
    return list(session.scalars(select(Customer.id).where(Customer.email_lower == email_lower)))


def ids_in_data_source(session: Session, data_source_uuid: str) -> list[int]:
    """Return the ids of customers holding an external id of this data source."""
    return list(session.scalars(
        select(ExternalId.customer_id).where(ExternalId.data_source_uuid == data_source_uuid).distinct()))


def add_attribute_changes(session: Session, customer_id: int, changes: list[tuple[str, object, str, bool]]) -> None:
    """Remember values custom attributes took: (key, value or None when removed, source, initial)."""
    if changes:
        now = utcnow()
        session.execute(insert(CustomAttributeChange), [
            {"customer_id": customer_id, "key": key, "value": value, "performed_at": now,
             "performed_by": source or "API", "initial": initial} for key, value, source, initial in changes])


def attribute_history(session: Session, customer_id: int, keys: list[str], latest: int) -> dict[str, list[dict]]:
    """Return {key: the last `latest` values it took, oldest first} of these custom attributes."""
    found: dict[str, list[dict]] = {key: [] for key in keys}
    if keys:
        changes = CustomAttributeChange
        recent = func.row_number().over(partition_by=changes.key, order_by=changes.id.desc()).label("recent")
        ranked = (select(changes.id, changes.key, changes.value, changes.performed_at, changes.performed_by,
                         changes.initial, recent)
                  .where(changes.customer_id == customer_id, changes.key.in_(keys)).subquery())
        rows = session.execute(select(ranked).where(ranked.c.recent <= latest).order_by(ranked.c.id))
        for row in rows:
            found[row.key].append({"value": row.value, "update_performed_at": render(row.performed_at),
                                   "update_performed_by": row.performed_by, "initial": row.initial})
    return found


def overrides_of(session: Session, customer_id: int) -> dict:
    return session.scalar(select(Customer.overrides).where(Customer.id == customer_id)) or {}


def id_by_merged_uuid(session: Session, uuid: str) -> int | None:
    """Return the id of the customer now holding the merged-away customer `uuid`; None if none."""
    return session.scalar(select(MergedCustomer.customer_id).where(MergedCustomer.uuid == uuid))


def duplicate_key(session: Session, customer_id: int) -> dict | None:
    """Return `{id, email_lower, billing_system_type}` of one customer; None if there is none."""
    row = session.execute(select(Customer.id, Customer.email_lower, Customer.billing_system_type)
                          .where(Customer.id == customer_id)).first()
    return row._asdict() if row is not None else None


def same_email(session: Session, email_lower: str) -> list[dict]:
    """Return `{id, email_lower, billing_system_type}` of the customers with this (lower-cased) email."""
    rows = session.execute(select(Customer.id, Customer.email_lower, Customer.billing_system_type)
                           .where(Customer.email_lower == email_lower).order_by(Customer.id))
    return [row._asdict() for row in rows]


def merged_snapshot(session: Session, uuid: str) -> dict | None:
    """Return what the merged-away customer `uuid` was when it was merged; None if not kept."""
    return session.scalar(select(MergedCustomer.snapshot).where(MergedCustomer.uuid == uuid))


LOCK_BY_UUID = (select(Customer).where(Customer.uuid == bindparam("uuid")).with_for_update()
                .execution_options(populate_existing=True))


def lock_by_uuid(session: Session, uuid: str) -> Customer | None:
    """Lock one customer's row by its uuid and return it (None if there is none), in one statement."""
    return session.scalars(LOCK_BY_UUID, {"uuid": uuid}).first()


def lock(session: Session, ids) -> dict[int, Customer]:
    """Lock these customers' rows (id order) and return {id: row} of those that still exist."""
    return lock_rows(session, Customer, ids)


def details(session: Session, customer_ids) -> dict[int, tuple[list, list, dict]]:
    """Return {id: (external ids, tags, custom)} of these customers, in one statement.

    External ids are (data_source_uuid, external_id, merged_from); custom maps key to
    (type, value, source); each in the order they were added.
    """
    ids = list(customer_ids)
    found = {customer_id: ([], [], {}) for customer_id in ids}
    for kind, customer_id, a, b, c, value, _rank, _seq in session.connection().execute(CHILDREN, {"ids": ids}):
        if kind == ATTRIBUTE:
            found[customer_id][2][a] = (b, value, c)  # key: (type, value, source)
        elif kind == EXTERNAL_ID:
            found[customer_id][0].append((a, b, c))  # (data source, external id, merged_from)
        else:
            found[customer_id][1].append(a)
    return found


def page(session: Session, filters: dict, after_id: int, size: int) -> list[dict]:
    """Return up to `size + 1` customers after `after_id` (keyset on id) matching checked `filters`.

    Reads columns, not ORM objects, and fetches the ids, tags and attributes of the whole
    page in one more query: a page costs two indexed queries whatever the table size.
    """
    query = select(*CUSTOMER_COLUMNS).where(Customer.id > after_id)
    if filters.get("status"):
        query = query.where(Customer.status == filters["status"])
    if filters.get("system"):
        query = query.where(Customer.billing_system_type == filters["system"])
    if filters.get("email"):
        query = query.where(Customer.email_lower == filters["email"])
    if filters.get("q"):
        query = query.where(Customer.search_text.contains(filters["q"], autoescape=True))
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
    """Return the dicts of customer rows, with the ids, tags and attributes of all in one query.

    Core queries on the session's connection: the ORM's per-row work cost more than the SQL.
    """
    children = details(session, [row.id for row in rows])
    dicts = []
    for row in rows:
        external_ids, tags, custom = children[row.id]
        dicts.append(customer_dict(row._asdict(), [(source, external_id) for source, external_id, _ in external_ids],
                                   tags, {key: value for key, (_type, value, _source) in custom.items()}))
    return dicts
