"""Queries on the contacts service's tables: select, lock, page. No commits, no rules."""
from collections.abc import Iterable

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from roster.database import insert_ignore, lock_rows
from roster.errors import NotFound
from services.contacts.models import Contact, KnownCustomer

# A list filter → the column it matches exactly (email is stored lower-cased beside the email).
FILTER_COLUMNS = {
    "customer_uuid": Contact.customer_uuid,
    "data_source_uuid": Contact.data_source_uuid,
    "email": Contact.email_lower,
    "customer_external_id": Contact.customer_external_id,
    "external_id": Contact.external_id,
}


def by_uuid(session: Session, uuid: str, param: str = "uuid", *, lock: bool = False) -> Contact:
    """Return the contact with this uuid (row-locked with `lock`); 404 naming `param` if there is none."""
    query = select(Contact).where(Contact.uuid == uuid)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    contact = session.scalars(query).first()
    if contact is None:
        raise NotFound(f"Contact {uuid} not found", param=param)
    return contact


def lock_by_uuids(session: Session, uuids: Iterable[str]) -> dict[str, Contact]:
    """Lock the contacts with these uuids in id order; return {uuid: contact} of those that still exist."""
    ids = session.scalars(select(Contact.id).where(Contact.uuid.in_(list(uuids)))).all()
    return {contact.uuid: contact for contact in lock_rows(session, Contact, ids).values()}


def page(session: Session, filters: dict, after_id: int, size: int) -> list[Contact]:
    """Return up to `size + 1` contacts matching `filters` exactly (names from FILTER_COLUMNS), by id."""
    query = select(Contact).where(Contact.id > after_id).order_by(Contact.id).limit(size + 1)
    for name, value in filters.items():
        query = query.where(FILTER_COLUMNS[name] == value)
    return list(session.scalars(query))


def of_customer(session: Session, customer_uuid: str, *, lock: bool = False) -> list[Contact]:
    """Return every contact of one customer, oldest first (locked in id order with `lock`)."""
    return _all(session, select(Contact).where(Contact.customer_uuid == customer_uuid), lock)


def came_from(session: Session, customer_uuid: str, *, lock: bool = False) -> list[Contact]:
    """Return the contacts that belonged to `customer_uuid` before a merge, wherever they are now,
    and those still on it (a merge not handled yet), oldest first (locked in id order with `lock`)."""
    return _all(session, select(Contact).where(or_(
        Contact.merged_from == customer_uuid,
        and_(Contact.customer_uuid == customer_uuid, Contact.merged_from.is_(None)))), lock)


def of_data_source(session: Session, data_source_uuid: str, *, lock: bool = False) -> list[Contact]:
    """Return every contact of one data source, oldest first (locked in id order with `lock`)."""
    return _all(session, select(Contact).where(Contact.data_source_uuid == data_source_uuid), lock)


def _all(session: Session, query, lock: bool) -> list[Contact]:
    query = query.order_by(Contact.id)
    if lock:  # in id order, like lock_rows, so these writers queue behind merges instead of deadlocking
        query = query.with_for_update().execution_options(populate_existing=True)
    return list(session.scalars(query))


def primary_of(session: Session, customer_uuid: str, *, lock: bool = False) -> Contact | None:
    """Return the customer's primary contact (position 1, the oldest if several), or None."""
    query = (select(Contact).where(Contact.customer_uuid == customer_uuid, Contact.position == 1)
             .order_by(Contact.id).limit(1))
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.scalars(query).first()


def highest_position(session: Session, customer_uuid: str) -> int | None:
    """Return the highest position among the customer's contacts; None when it has none."""
    return session.scalar(select(func.max(Contact.position)).where(Contact.customer_uuid == customer_uuid))


def by_external_id(session: Session, data_source_uuid: str, external_id: str) -> Contact | None:
    """Return the contact with this external id in this data source, row-locked; None if none."""
    return session.scalars(select(Contact).where(
        Contact.data_source_uuid == data_source_uuid, Contact.external_id == external_id)
        .with_for_update().execution_options(populate_existing=True)).first()


def position_taken(session: Session, customer_uuid: str, position: int) -> bool:
    return session.scalar(select(Contact.id).where(
        Contact.customer_uuid == customer_uuid, Contact.position == position).limit(1)) is not None


def external_id_taken(session: Session, data_source_uuid: str, external_id: str | None,
                      except_id: int | None = None) -> bool:
    """True when another contact of this data source already has this external id."""
    if external_id is None:
        return False
    query = select(Contact.id).where(
        Contact.data_source_uuid == data_source_uuid, Contact.external_id == external_id
    )
    if except_id is not None:
        query = query.where(Contact.id != except_id)
    return session.scalar(query.limit(1)) is not None


def known_customer(session: Session, customer_uuid: str) -> KnownCustomer | None:
    """Return what this service knows of a customer (unlocked), or None."""
    return session.get(KnownCustomer, customer_uuid)


def lock_customers(session: Session, customer_uuids: Iterable[str]) -> dict[str, KnownCustomer]:
    """Lock the known-customer rows of these uuids in uuid order, adding an `active` row for any
    not known yet; return {uuid: row}.

    Everything that adds contacts to a customer or takes them away locks its row first, so
    those writes queue behind each other instead of missing each other's rows.
    """
    wanted = sorted(set(customer_uuids))
    if not wanted:
        return {}
    insert_ignore(session, KnownCustomer.__table__, [{"uuid": uuid, "state": "active"} for uuid in wanted], ["uuid"])
    rows = session.scalars(
        select(KnownCustomer).where(KnownCustomer.uuid.in_(wanted)).order_by(KnownCustomer.uuid)
        .with_for_update().execution_options(populate_existing=True)
    )
    return {row.uuid: row for row in rows}
