"""The customers service layer: one function per command or query, no nameko.

Each takes a `roster.uow.UnitOfWork` and, where it needs another service, a port for it
(e.g. `billing`, anything with `get_data_source(uuid)`), so RPC entrypoints, event handlers
and tests run the same code.
"""
import uuid as uuid_lib

from roster.errors import NotFound, ValidationFailed
from roster.pagination import decode_cursor, keyset_page, page_size
from roster.uow import Transaction, UnitOfWork
from services.customers import domain, store
from services.customers.schemas import dump_customer


def create_customer(uow: UnitOfWork, data: dict, *, billing) -> dict:
    """Create a customer with its external id, tags and custom attributes; return it."""
    data_source = _data_source(billing, data["data_source_uuid"])
    with uow.write() as tx:
        store.check_external_id_free(tx.session, data["data_source_uuid"], data["external_id"])
        customer = store.Customer(
            uuid=f"cus_{uuid_lib.uuid4()}", billing_system_type=data_source.get("system") or "Import API"
        )
        customer.external_ids.append(
            store.ExternalId(data_source_uuid=data["data_source_uuid"], external_id=data["external_id"])
        )
        store.apply_fields(customer, data)
        attributes = data.get("attributes") or {}
        store.add_tags(customer, attributes.get("tags") or [])
        store.add_custom_attributes(customer, attributes.get("custom") or [])
        tx.session.add(customer)
        tx.session.flush()
        created = dump_customer(customer)
        tx.record("customer_created", customer=created)
        return tx.result(created)


def get_customer(uow: UnitOfWork, uuid: str) -> dict:
    """Return one customer; 404 if there is none."""
    with uow.read() as session:
        return store.read_by_uuid(session, uuid)


def list_customers(uow: UnitOfWork, filters: dict, cursor: str | None = None, per_page=None) -> dict:
    """Return `{entries, has_more, cursor}`: customers matching `filters`, oldest first."""
    size = page_size(per_page)
    after_id = decode_cursor(cursor, after_id=int).get("after_id", 0)
    with uow.read() as session:
        rows = store.page(session, filters, after_id, size)
    customers, has_more, next_cursor = keyset_page(rows, size, lambda c: {"after_id": c["id"]})
    return {"entries": customers, "has_more": has_more, "cursor": next_cursor}


def update_customer(uow: UnitOfWork, uuid: str, changes: dict) -> dict:
    """Set the profile fields, tags and custom values given; return the customer."""
    def change(customer):
        store.apply_fields(customer, changes)
        attributes = changes.get("attributes") or {}
        if "tags" in attributes:
            store.replace_tags(customer, attributes["tags"] or [])
        if "custom" in attributes:
            store.set_custom_values(customer, attributes["custom"] or {})
    return change_one(uow, uuid, change)


def delete_customer(uow: UnitOfWork, uuid: str) -> None:
    """Delete a customer; `customer_deleted` tells the services holding its records."""
    with uow.write() as tx:
        customer = store.by_uuid(tx.session, uuid)
        gone = dump_customer(customer)
        tx.session.delete(customer)
        tx.record("customer_deleted", uuid=uuid, external_ids=gone["external_ids"],
                  data_source_uuids=gone["data_source_uuids"])


def merge_customers(uow: UnitOfWork, from_ref: dict, into_ref: dict) -> dict:
    """Merge one customer into another; return `{from_uuid, into}`."""
    with uow.write() as tx:
        merged = _resolve(tx.session, from_ref, "from")
        into = _resolve(tx.session, into_ref, "into")
        if merged.id == into.id:
            raise ValidationFailed("from: a customer cannot be merged into itself", param="from")
        before = dump_customer(into)
        moved_ids = [
            {"data_source_uuid": row.data_source_uuid, "external_id": row.external_id}
            for row in merged.external_ids
        ]
        store.absorb(into, merged)
        tx.session.flush()
        tx.session.delete(merged)
        tx.record("customer_merged", from_uuid=merged.uuid, into_uuid=into.uuid,
                  into_external_id=into.external_ids[0].external_id, moved_external_ids=moved_ids)
        return {"from_uuid": merged.uuid, "into": _record_update(tx, into, before)}


def change_one(uow: UnitOfWork, uuid: str, change) -> dict:
    """Apply `change` to one customer in a transaction; return the customer after it."""
    with uow.write() as tx:
        customer = store.by_uuid(tx.session, uuid)
        before = dump_customer(customer)
        change(customer)
        return _record_update(tx, customer, before)


def change_by_email(uow: UnitOfWork, email: str, change) -> list[dict]:
    """Apply `change` to every customer with this email; return them; 404 when there is none."""
    with uow.write() as tx:
        customers = store.by_email(tx.session, email)
        if not customers:
            raise NotFound(f"No customer has the email {email}", param="email")
        changed = []
        for customer in customers:
            before = dump_customer(customer)
            change(customer)
            changed.append(_record_update(tx, customer, before))
        return changed


def _data_source(billing, data_source_uuid: str) -> dict:
    try:
        return billing.get_data_source(data_source_uuid)
    except NotFound:
        raise ValidationFailed(
            f"data_source_uuid: no data source {data_source_uuid} exists", param="data_source_uuid"
        )


def _resolve(session, ref: dict, side: str):
    if ref.get("customer_uuid"):
        try:
            return store.by_uuid(session, ref["customer_uuid"])
        except NotFound:
            raise ValidationFailed(f"{side}.customer_uuid: no customer {ref['customer_uuid']}",
                                   param=f"{side}.customer_uuid")
    if ref.get("data_source_uuid") and ref.get("external_id"):
        try:
            return store.by_external_id(session, ref["data_source_uuid"], ref["external_id"])
        except NotFound as missing:
            raise ValidationFailed(f"{side}.external_id: {missing.message}", param=f"{side}.external_id")
    raise ValidationFailed(f"{side}: give customer_uuid, or data_source_uuid and external_id", param=side)


def _record_update(tx: Transaction, customer, before: dict) -> dict:
    """Flush, and record `customer_updated` with the fields that changed (if any did)."""
    tx.session.flush()
    after = dump_customer(customer)
    changes = domain.changed_fields(before, after)
    changes.pop("updated_at", None)
    if changes:
        tx.record("customer_updated", uuid=customer.uuid, changes=changes)
    return after
