"""Reading and writing contacts in this service's database (one session, no commits here)."""
from sqlalchemy import select
from sqlalchemy.orm import Session

from roster.errors import NotFound, ValidationFailed
from services.contacts.models import Contact, GoneCustomer

LIST_FILTERS = ("customer_uuid", "data_source_uuid", "email", "customer_external_id", "external_id")


def by_uuid(session: Session, uuid: str, param: str = "uuid") -> Contact:
    """Return the contact with this uuid; 404 naming `param` if there is none."""
    contact = session.scalars(select(Contact).where(Contact.uuid == uuid)).first()
    if contact is None:
        raise NotFound(f"Contact {uuid} not found", param=param)
    return contact


def page(session: Session, filters: dict, after_id: int, size: int) -> list[Contact]:
    """Return up to `size + 1` contacts matching `filters` (exact; email ignores case), by id."""
    query = select(Contact).where(Contact.id > after_id).order_by(Contact.id).limit(size + 1)
    for name in LIST_FILTERS:
        value = filters.get(name)
        if value in (None, ""):
            continue
        if name == "email":
            query = query.where(Contact.email_lower == value.strip().lower())
        else:
            query = query.where(getattr(Contact, name) == value)
    return list(session.scalars(query))


def of_customer(session: Session, customer_uuid: str) -> list[Contact]:
    """Return every contact of one customer, oldest first."""
    return list(session.scalars(select(Contact).where(Contact.customer_uuid == customer_uuid).order_by(Contact.id)))


def external_id_taken(session: Session, data_source_uuid: str, external_id: str | None,
                      except_id: int | None = None) -> bool:
    """True when another contact of this data source already has this external id."""
    if external_id in (None, ""):
        return False
    query = select(Contact.id).where(
        Contact.data_source_uuid == data_source_uuid, Contact.external_id == external_id
    )
    if except_id is not None:
        query = query.where(Contact.id != except_id)
    return session.scalar(query.limit(1)) is not None


def check_external_id_free(session: Session, data_source_uuid: str, external_id: str | None,
                           except_id: int | None = None) -> None:
    if external_id_taken(session, data_source_uuid, external_id, except_id):
        raise ValidationFailed(
            f"external_id: {external_id!r} is already used by another contact of this data source",
            param="external_id",
        )


def set_email(contact: Contact, email: str | None) -> None:
    contact.email = email
    contact.email_lower = email.lower() if email else None


def known_customer_external_id(session: Session, customer_uuid: str) -> str | None:
    """Return the customer's external id as recorded on one of its contacts, if it has any."""
    return session.scalar(
        select(Contact.customer_external_id)
        .where(Contact.customer_uuid == customer_uuid, Contact.customer_external_id.is_not(None))
        .limit(1)
    )


def mark_gone(session: Session, customer_uuid: str, merged_into: str | None = None) -> None:
    """Remember that a customer was deleted (or merged into `merged_into`)."""
    if session.get(GoneCustomer, customer_uuid) is None:
        session.add(GoneCustomer(uuid=customer_uuid, merged_into=merged_into))


def is_gone(session: Session, customer_uuid: str) -> bool:
    return session.get(GoneCustomer, customer_uuid) is not None


def surviving_customer(session: Session, customer_uuid: str) -> str | None:
    """Return the customer that now holds `customer_uuid`'s records (following merges); None if deleted."""
    seen = set()
    current = customer_uuid
    while current not in seen:
        seen.add(current)
        gone = session.get(GoneCustomer, current)
        if gone is None:
            return current
        if gone.merged_into is None:
            return None
        current = gone.merged_into
    return None  # a merge cycle cannot happen; treat it as gone rather than loop

