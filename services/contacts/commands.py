"""The contacts service layer: one function per command, query or event, no nameko.

Each takes a `roster.uow.UnitOfWork` and, where it needs another service, a port for it
(`customers` with `get_customer(uuid)`, `billing` with `get_data_source(uuid)`); ports are
asked before the write transaction opens, never inside it.

Locks, so concurrent writes queue instead of losing each other's work: a contact's own
row for an update or a delete (`custom` keys of concurrent PATCHes all land), both rows
in id order for a merge (re-checked once locked), and the customer's known-customers row
for anything that adds contacts to a customer or takes them away (a contact is never
created behind a deletion that is being handled).
"""
import uuid as uuid_lib

from roster.errors import Conflict, NotFound, invalid
from roster.pagination import decode_cursor, keyset_page, page_size
from roster.uow import Transaction, UnitOfWork
from services.contacts import domain, store
from services.contacts.models import EXTERNAL_ID_TAKEN, Contact, KnownCustomer
from services.contacts.schemas import dump_contact, dump_contacts


# --- commands and queries -----------------------------------------------------------------

def validate_contact(uow: UnitOfWork, data: dict, field_prefix: str = "", data_source_uuid: str | None = None) -> None:
    """Check a contact's own fields (no customer needed); a 422 names the first bad field.

    With `data_source_uuid`, also check that the external id is still free there.
    """
    fields = domain.clean_fields(data, field_prefix)
    if data_source_uuid and fields.get("external_id"):
        with uow.read() as session:
            if store.external_id_taken(session, data_source_uuid, fields["external_id"]):
                raise invalid(f"{field_prefix}external_id", EXTERNAL_ID_TAKEN.reason)


def check_primary_contact(fields: dict) -> None:
    """Check the `primary_contact` of a customer update; a 422 names `primary_contact.<field>`."""
    domain.clean_primary_contact(fields)


def create_contact(uow: UnitOfWork, data: dict, *, customers, billing) -> dict:
    """Create a contact of an existing customer; return it."""
    fields = domain.clean_fields(data)
    if data.get("overrides") is not None:
        fields["overrides"] = domain.contact_overrides({}, data["overrides"])
    customer_uuid = domain.required_reference(data, "customer_uuid")
    data_source_uuid = domain.required_reference(data, "data_source_uuid")
    customer = _customer(customers, customer_uuid)
    _check_data_source(billing, customer, data_source_uuid)
    with uow.write() as tx:
        known = _lock_customer(tx, customer)
        return tx.result(_insert(tx, known, data_source_uuid, fields))


def set_primary_contact(uow: UnitOfWork, customer_uuid: str, fields: dict, *, customers) -> dict:
    """Update the customer's primary contact (position 1) with `fields`, creating it when there is none; return it."""
    changes = domain.clean_primary_contact(fields)
    customer = _customer(customers, customer_uuid)
    with uow.write() as tx:
        known = _lock_customer(tx, customer)
        primary = store.primary_of(tx.session, customer_uuid, lock=True)
        if primary is None:
            changes["position"] = domain.PRIMARY_POSITION
            return tx.result(_insert(tx, known, customer["data_source_uuid"], changes))
        return tx.result(_change(tx, primary, changes))


def get_contact(uow: UnitOfWork, uuid: str, with_overrides: bool = False) -> dict:
    """Return one contact (with its `overrides` if asked); 404 if there is none."""
    with uow.read() as session:
        contact = _contact(session, uuid)
        dumped = dump_contact(contact)
        if with_overrides:
            dumped["overrides"] = dict(contact.overrides or {})
        return dumped


def list_contacts(uow: UnitOfWork, filters: dict, cursor: str | None = None, per_page=None) -> dict:
    """Return {entries, has_more, cursor} of contacts matching the known filters in `filters`, oldest first."""
    size = page_size(per_page)
    after_id = decode_cursor(cursor, after_id=int).get("after_id", 0)
    wanted = domain.list_filters(filters)
    with uow.read() as session:
        rows = store.page(session, wanted, after_id, size)
        contacts, has_more, next_cursor = keyset_page(rows, size, lambda c: {"after_id": c.id})
        return {"entries": dump_contacts(contacts), "has_more": has_more, "cursor": next_cursor}


def update_contact(uow: UnitOfWork, uuid: str, changes: dict) -> dict:
    """Set the given fields; `custom` keys are added or replaced (a null value removes one)."""
    fields = domain.clean_changes(changes)
    overrides = changes.get("overrides") if isinstance(changes, dict) else None
    domain.contact_overrides({}, overrides)  # a bad key is a 422 before anything changes
    with uow.write() as tx:
        contact = _contact(tx.session, uuid, lock=True)
        if overrides is not None:
            contact.overrides = domain.contact_overrides(contact.overrides, overrides)
        return tx.result(_change(tx, contact, fields))


def sync_contacts(uow: UnitOfWork, customer_uuid: str, data_source_uuid: str, contacts: list, *,
                  customers) -> list[dict]:
    """Create or update a billing system's contacts of a customer by (data_source_uuid, external_id);
    return them in the order given.

    Missing ones are created (at the position given when the customer has no contact there,
    else after its others); existing ones get every field given except their position and
    overridden fields. Nothing is deleted; nothing changed records nothing. The customer's
    known-customer row is locked first, so two syncs of one customer queue and the second
    finds what the first created.
    """
    if not domain.is_reference(customer_uuid) or not str(customer_uuid).strip():
        raise invalid("customer_uuid", "is required")
    if not domain.is_reference(data_source_uuid) or not str(data_source_uuid).strip():
        raise invalid("data_source_uuid", "is required")
    wanted = domain.synced_contacts(contacts)
    customer = _customer(customers, customer_uuid)
    with uow.write() as tx:
        known = _lock_customer(tx, customer)
        synced = []
        for fields in wanted:
            existing = store.by_external_id(tx.session, data_source_uuid, fields["external_id"])
            if existing is None:
                fields = dict(fields)
                if fields.get("position") is not None and store.position_taken(tx.session, known.uuid,
                                                                                fields["position"]):
                    del fields["position"]
                synced.append(_insert(tx, known, data_source_uuid, fields))
            else:
                synced.append(_change(tx, existing, domain.synced_changes(fields, existing.overrides)))
        return tx.result(synced)


def delete_contact(uow: UnitOfWork, uuid: str) -> None:
    """Delete a contact; `contact_deleted` says so."""
    with uow.write() as tx:
        _delete(tx, _contact(tx.session, uuid, lock=True), reason="deleted")


def merge_contacts(uow: UnitOfWork, into_uuid: str, from_uuid: str) -> dict:
    """Keep `into`, fill its empty fields from `from`, union custom attributes, delete `from`; return `into`.

    Two merges of the same contacts queue on their row locks; the later one finds a side
    gone and is refused with a 404 naming it, so no merge undoes another.
    """
    if into_uuid == from_uuid:
        raise invalid("from_uuid", "a contact cannot be merged into itself")
    with uow.write() as tx:
        locked = store.lock_by_uuids(tx.session, [uuid for uuid in (into_uuid, from_uuid) if domain.is_reference(uuid)])
        if into_uuid not in locked:
            raise NotFound(f"Contact {into_uuid} not found", param="into_uuid")
        if from_uuid not in locked:
            raise NotFound(f"Contact {from_uuid} not found", param="from_uuid")
        into, merged_from = locked[into_uuid], locked[from_uuid]
        changes = domain.merged_contact(_values(into), _values(merged_from))
        if "external_id" in changes and into.data_source_uuid != merged_from.data_source_uuid and \
                store.external_id_taken(tx.session, into.data_source_uuid, changes["external_id"], into.id):
            del changes["external_id"]  # that id already names another contact of the survivor's source
        tx.session.delete(merged_from)
        tx.session.flush()  # `from`'s external id is free before `into` takes it
        for name, value in changes.items():
            setattr(into, name, value)
        tx.session.flush()
        merged = dump_contact(into)
        tx.record("contact_merged", into_uuid=into.uuid, from_uuid=from_uuid,
                  customer_uuid=into.customer_uuid, from_customer_uuid=merged_from.customer_uuid, contact=merged)
        return tx.result(merged)


# --- events from other services -------------------------------------------------------------

def on_customer_deleted(uow: UnitOfWork, payload: dict) -> None:
    """Delete the contacts of a deleted customer, and refuse new ones from now on."""
    customer_uuid = payload["uuid"]
    with uow.write() as tx:
        known = store.lock_customers(tx.session, [customer_uuid])[customer_uuid]
        known.state, known.merged_into = domain.DELETED, None
        for contact in store.of_customer(tx.session, customer_uuid, lock=True):
            _delete(tx, contact, reason="customer_deleted")


def on_customer_merged(uow: UnitOfWork, payload: dict, *, customers) -> None:
    """Move the merged-away customer's contacts to the survivor, after the survivor's own contacts."""
    from_uuid, into_uuid = payload["from_uuid"], payload["into_uuid"]
    with uow.read() as session:
        survivor = _survivor(session, into_uuid)
        external_id = _survivor_external_id(session, survivor, payload)
    if survivor is not None and external_id is None:
        external_id = _asked_external_id(customers, survivor)  # RPC only outside a transaction
    with uow.write() as tx:
        known = _lock_merge_chain(tx.session, from_uuid, into_uuid)
        known[from_uuid].state, known[from_uuid].merged_into = domain.MERGED, into_uuid
        if payload.get("into_external_id"):
            known[into_uuid].external_id = payload["into_external_id"]
        if _survivor(tx.session, into_uuid) != survivor:
            raise Conflict(f"customer {into_uuid} changed while its merge was handled; trying again")
        moving = sorted(store.of_customer(tx.session, from_uuid, lock=True), key=lambda c: (c.position, c.id))
        if survivor is None:  # the survivor has been deleted meanwhile
            for contact in moving:
                _delete(tx, contact, reason="customer_deleted")
            return
        positions = domain.positions_after(store.highest_position(tx.session, survivor), len(moving))
        for contact, position in zip(moving, positions):
            before = dump_contact(contact)
            contact.customer_uuid, contact.position = survivor, position
            contact.merged_from = contact.merged_from or from_uuid
            if external_id is not None:
                contact.customer_external_id = external_id
            _record_update(tx, contact, before, reason="customer_merged")


def on_customer_unmerged(uow: UnitOfWork, payload: dict) -> None:
    """Move the contacts that came with an unmerged external id to its new customer, after the new
    customer's own (the first becomes its primary when it has none).

    They are the contacts of the customer that external id belonged to before its merge
    (`former_uuid`), wherever merges took them, or still on it when that merge has not been
    handled here yet (its handler then moves only what is left). A new customer deleted or
    merged meanwhile gets them as a merge would: deleted, or moved on to the survivor.
    """
    former, new_uuid = payload.get("former_uuid"), payload["new_uuid"]
    with uow.write() as tx:
        known = store.lock_customers(tx.session, [uuid for uuid in (payload["from_uuid"], new_uuid, former) if uuid])
        if known[new_uuid].state == domain.ACTIVE and payload.get("external_id"):
            known[new_uuid].external_id = payload["external_id"]
        if not former:
            return
        moving = sorted(store.came_from(tx.session, former, lock=True), key=lambda c: (c.position, c.id))
        target = _survivor(tx.session, new_uuid)
        if target is None:
            for contact in moving:
                _delete(tx, contact, reason="customer_deleted")
            return
        external_id = known[new_uuid].external_id if target == new_uuid else _known_external_id(tx.session, target)
        positions = domain.positions_after(store.highest_position(tx.session, target), len(moving))
        for contact, position in zip(moving, positions):
            before = dump_contact(contact)
            contact.customer_uuid, contact.position = target, position
            contact.merged_from = None if target == new_uuid else new_uuid
            if external_id is not None:
                contact.customer_external_id = external_id
            _record_update(tx, contact, before, reason="customer_unmerged")


def on_data_source_deleted(uow: UnitOfWork, payload: dict) -> None:
    """Delete the contacts of a deleted data source."""
    with uow.write() as tx:
        for contact in store.of_data_source(tx.session, payload["uuid"], lock=True):
            _delete(tx, contact, reason="data_source_deleted")


# --- helpers ---------------------------------------------------------------------------------

def _contact(session, uuid: str, *, lock: bool = False) -> Contact:
    if not domain.is_reference(uuid):
        raise NotFound(f"Contact {uuid!r} not found", param="uuid")
    return store.by_uuid(session, uuid, lock=lock)


def _customer(customers, customer_uuid: str) -> dict:
    """Return the customer; one merged away (a duplicate merged in the background, say) answers the
    customer that took it over, so a contact added to it lands there."""
    try:
        return customers.get_customer(customer_uuid)
    except NotFound:
        pass
    try:
        return customers.get_survivor(customer_uuid)
    except NotFound:
        raise invalid("customer_uuid", f"no customer {customer_uuid} exists")


def _check_data_source(billing, customer: dict, data_source_uuid: str) -> None:
    known = set(customer.get("data_source_uuids") or []) | {customer.get("data_source_uuid")}
    if data_source_uuid in known:
        return
    try:
        billing.get_data_source(data_source_uuid)
    except NotFound:
        raise invalid("data_source_uuid", f"no data source {data_source_uuid} exists")


def _lock_customer(tx: Transaction, customer: dict) -> KnownCustomer:
    """Lock the customer's known-customer row; refuse a customer deleted or merged away meanwhile."""
    known = store.lock_customers(tx.session, [customer["uuid"]])[customer["uuid"]]
    domain.check_can_hold_contacts(known.uuid, known.state, known.merged_into)
    known.external_id = customer.get("external_id") or known.external_id
    return known


def _insert(tx: Transaction, known: KnownCustomer, data_source_uuid: str, fields: dict) -> dict:
    """Add a contact to a locked known customer; record `contact_created`; return it."""
    fields = dict(fields)
    position = fields.pop("position", None) or domain.next_position(store.highest_position(tx.session, known.uuid))
    contact = Contact(
        uuid=f"con_{uuid_lib.uuid4()}",
        customer_uuid=known.uuid,
        customer_external_id=known.external_id,
        data_source_uuid=data_source_uuid,
        position=position,
        custom=domain.updated_custom({}, fields.pop("custom", {})),
        **fields,
    )
    tx.session.add(contact)
    tx.session.flush()
    created = dump_contact(contact)
    tx.record("contact_created", uuid=contact.uuid, customer_uuid=contact.customer_uuid, contact=created)
    return created


def _change(tx: Transaction, contact: Contact, fields: dict) -> dict:
    """Apply checked fields to a locked contact; record `contact_updated`; return the contact."""
    before = dump_contact(contact)
    for name, value in fields.items():
        setattr(contact, name, domain.updated_custom(contact.custom, value) if name == "custom" else value)
    return _record_update(tx, contact, before)


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


def _fate(session):
    def fate(customer_uuid: str):
        known = store.known_customer(session, customer_uuid)
        return None if known is None else (known.state, known.merged_into)
    return fate


def _survivor(session, customer_uuid: str) -> str | None:
    return domain.survivor_of(customer_uuid, _fate(session))


def _lock_merge_chain(session, from_uuid: str, into_uuid: str) -> dict[str, KnownCustomer]:
    """Lock the merged customer, the survivor and every customer on the way between them.

    The chain is read, locked, then read again until no new customer appears on it (a
    merge handled meanwhile can lengthen it). A lock taken in a later round may come out
    of uuid order; PostgreSQL then reports a deadlock, and the event is retried.
    """
    wanted = {from_uuid, into_uuid}
    while True:
        locked = store.lock_customers(session, wanted)
        chain, current = set(), into_uuid
        while current is not None and current not in chain:
            chain.add(current)
            current = locked[current].merged_into if current in locked else None
        if chain <= wanted:
            return locked
        wanted |= chain


def _survivor_external_id(session, survivor: str | None, payload: dict) -> str | None:
    """Return the survivor's external id as far as this service knows it."""
    if survivor is None:
        return None
    if survivor == payload["into_uuid"] and payload.get("into_external_id"):
        return payload["into_external_id"]
    known = store.known_customer(session, survivor)
    return known.external_id if known is not None else None


def _known_external_id(session, customer_uuid: str) -> str | None:
    known = store.known_customer(session, customer_uuid)
    return known.external_id if known is not None else None


def _asked_external_id(customers, customer_uuid: str) -> str | None:
    try:
        return customers.get_customer(customer_uuid).get("external_id") or None
    except NotFound:
        return None  # deleted too: its customer_deleted event removes the contacts

