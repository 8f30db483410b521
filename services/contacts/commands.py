"""The contacts service layer: one function per command, query or event, no nameko.

Each takes a `roster.uow.UnitOfWork` and, where it needs another service, a port for it
(`customers` with `get_customer(uuid)`, `billing` with `get_data_source(uuid)`).
"""
import uuid as uuid_lib

from roster.errors import NotFound, ValidationFailed
from roster.pagination import decode_cursor, keyset_page, page_size
from roster.uow import Transaction, UnitOfWork
from services.contacts import domain, store
from services.contacts.models import Contact
from services.contacts.schemas import dump_contact, dump_contacts


def validate_contact(uow: UnitOfWork, data: dict, field_prefix: str = "", data_source_uuid: str | None = None) -> None:
    """Check a contact's own fields (no customer needed); a 422 names the first bad field.

    With `data_source_uuid`, also check that the external id is still free there.
    """
    fields = domain.clean_fields(data, field_prefix)
    if data_source_uuid and fields.get("external_id"):
        with uow.read() as session:
            if store.external_id_taken(session, data_source_uuid, fields["external_id"]):
                name = f"{field_prefix}external_id"
                raise ValidationFailed(
                    f"{name}: {fields['external_id']!r} is already used by another contact of this data source",
                    param=name,
                )


def create_contact(uow: UnitOfWork, data: dict, *, customers, billing) -> dict:
    """Create a contact of an existing customer; return it."""
    fields = domain.clean_fields(data)
    customer_uuid = domain.required_reference(data, "customer_uuid")
    data_source_uuid = domain.required_reference(data, "data_source_uuid")
    customer = _customer(customers, customer_uuid)
    _check_data_source(billing, customer, data_source_uuid)
    custom = {key: value for key, value in fields.pop("custom", {}).items() if value is not None}
    email = fields.pop("email", None)
    with uow.write() as tx:
        _check_still_there(tx.session, customer_uuid)
        store.check_external_id_free(tx.session, data_source_uuid, fields.get("external_id"))
        contact = Contact(
            uuid=f"con_{uuid_lib.uuid4()}",
            customer_uuid=customer["uuid"],
            customer_external_id=customer.get("external_id") or None,
            data_source_uuid=data_source_uuid,
            custom=custom,
            **fields,
        )
        store.set_email(contact, email)
        tx.session.add(contact)
        tx.session.flush()
        created = dump_contact(contact)
        tx.record("contact_created", uuid=contact.uuid, customer_uuid=contact.customer_uuid, contact=created)
        return tx.result(created)


def get_contact(uow: UnitOfWork, uuid: str) -> dict:
    with uow.read() as session:
        return dump_contact(store.by_uuid(session, uuid))


def list_contacts(uow: UnitOfWork, filters: dict, cursor: str | None = None, per_page=None) -> dict:
    """Return {entries, has_more, cursor} of contacts matching `filters`, oldest first."""
    size = page_size(per_page)
    after_id = decode_cursor(cursor, after_id=int).get("after_id", 0)
    with uow.read() as session:
        rows = store.page(session, filters or {}, after_id, size)
        contacts, has_more, next_cursor = keyset_page(rows, size, lambda c: {"after_id": c.id})
        return {"entries": dump_contacts(contacts), "has_more": has_more, "cursor": next_cursor}


def update_contact(uow: UnitOfWork, uuid: str, changes: dict) -> dict:
    """Set the given fields; `custom` keys are added or replaced (a null value removes one)."""
    fields = domain.clean_fields(changes)
    with uow.write() as tx:
        contact = store.by_uuid(tx.session, uuid)
        before = dump_contact(contact)
        if "external_id" in fields:
            store.check_external_id_free(tx.session, contact.data_source_uuid, fields["external_id"], contact.id)
        if "custom" in fields:
            contact.custom = domain.updated_custom(contact.custom, fields.pop("custom"))
        if "email" in fields:
            store.set_email(contact, fields.pop("email"))
        for name, value in fields.items():
            setattr(contact, name, value)
        return _record_update(tx, contact, before)


def delete_contact(uow: UnitOfWork, uuid: str) -> None:
    with uow.write() as tx:
        _delete(tx, store.by_uuid(tx.session, uuid), reason="deleted")


def merge_contacts(uow: UnitOfWork, into_uuid: str, from_uuid: str) -> dict:
    """Keep `into`, fill its empty fields from `from`, union custom attributes, delete `from`."""
    if into_uuid == from_uuid:
        raise ValidationFailed("from_uuid: a contact cannot be merged into itself", param="from_uuid")
    with uow.write() as tx:
        into = store.by_uuid(tx.session, into_uuid, param="into_uuid")
        merged_from = store.by_uuid(tx.session, from_uuid, param="from_uuid")
        changes = domain.merged_contact(_values(into), _values(merged_from))
        if "external_id" in changes and into.data_source_uuid != merged_from.data_source_uuid and \
                store.external_id_taken(tx.session, into.data_source_uuid, changes["external_id"], into.id):
            del changes["external_id"]  # that id already names another contact of the survivor's source
        tx.session.delete(merged_from)
        tx.session.flush()  # `from`'s external id is free before `into` takes it
        if "email" in changes:
            store.set_email(into, changes.pop("email"))
        for name, value in changes.items():
            setattr(into, name, value)
        tx.session.flush()
        merged = dump_contact(into)
        tx.record("contact_merged", into_uuid=into.uuid, from_uuid=from_uuid,
                  customer_uuid=into.customer_uuid, contact=merged)
        return merged


def on_customer_deleted(uow: UnitOfWork, payload: dict) -> None:
    """Delete the contacts of a deleted customer."""
    with uow.write() as tx:
        store.mark_gone(tx.session, payload["uuid"])
        for contact in store.of_customer(tx.session, payload["uuid"]):
            _delete(tx, contact, reason="customer_deleted")


def on_customer_merged(uow: UnitOfWork, payload: dict, *, customers) -> None:
    """Move the merged-away customer's contacts to the survivor."""
    from_uuid, into_uuid = payload["from_uuid"], payload["into_uuid"]
    with uow.read() as session:
        survivor = store.surviving_customer(session, into_uuid)
        external_id = payload.get("into_external_id") or (
            store.known_customer_external_id(session, survivor) if survivor else None
        )
    if survivor is not None and external_id is None:
        external_id = _survivor_external_id(customers, survivor)  # RPC only outside a transaction
    with uow.write() as tx:
        survivor = store.surviving_customer(tx.session, into_uuid)
        store.mark_gone(tx.session, from_uuid, merged_into=into_uuid)
        for contact in store.of_customer(tx.session, from_uuid):
            if survivor is None:  # the survivor has been deleted meanwhile
                _delete(tx, contact, reason="customer_deleted")
                continue
            before = dump_contact(contact)
            contact.customer_uuid = survivor
            if external_id is not None:
                contact.customer_external_id = external_id
            _record_update(tx, contact, before, reason="customer_merged")


def _customer(customers, customer_uuid: str) -> dict:
    try:
        return customers.get_customer(customer_uuid)
    except NotFound:
        raise ValidationFailed(f"customer_uuid: no customer {customer_uuid} exists", param="customer_uuid")


def _check_still_there(session, customer_uuid: str) -> None:
    """Refuse a customer deleted or merged away since it was fetched (its event already handled)."""
    survivor = store.surviving_customer(session, customer_uuid)
    if survivor is None:
        raise ValidationFailed(f"customer_uuid: customer {customer_uuid} was deleted", param="customer_uuid")
    if survivor != customer_uuid:
        raise ValidationFailed(f"customer_uuid: customer {customer_uuid} was merged into {survivor}",
                               param="customer_uuid")


def _check_data_source(billing, customer: dict, data_source_uuid: str) -> None:
    known = set(customer.get("data_source_uuids") or []) | {customer.get("data_source_uuid")}
    if data_source_uuid in known:
        return
    try:
        billing.get_data_source(data_source_uuid)
    except NotFound:
        raise ValidationFailed(f"data_source_uuid: no data source {data_source_uuid} exists",
                               param="data_source_uuid")


def _survivor_external_id(customers, customer_uuid: str) -> str | None:
    try:
        return customers.get_customer(customer_uuid).get("external_id") or None
    except NotFound:
        return None  # deleted too: its customer_deleted event removes the contacts


def _delete(tx: Transaction, contact: Contact, reason: str) -> None:
    tx.session.delete(contact)
    tx.record("contact_deleted", uuid=contact.uuid, customer_uuid=contact.customer_uuid,
              data_source_uuid=contact.data_source_uuid, external_id=contact.external_id, reason=reason)


def _record_update(tx: Transaction, contact: Contact, before: dict, reason: str = "updated") -> dict:
    """Flush, and record `contact_updated` with the fields that changed (if any did)."""
    tx.session.flush()
    after = dump_contact(contact)
    changes = {key: value for key, value in after.items() if key != "updated_at" and before.get(key) != value}
    if changes:
        tx.record("contact_updated", uuid=contact.uuid, customer_uuid=contact.customer_uuid,
                  changes=changes, reason=reason, contact=after)
    return after


def _values(contact: Contact) -> dict:
    """The merge-relevant values of a contact as a plain dict (for the domain rules)."""
    values = {field: getattr(contact, field) for field in domain.FILLABLE_FIELDS}
    values["custom"] = dict(contact.custom or {})
    return values
