"""The contacts service: RPC commands and queries on contacts, their events, and the
handlers that make contacts follow their customer through merges and deletions."""
import logging
import uuid as uuid_lib

from nameko.rpc import rpc

from roster.database import Database
from roster.errors import NotFound, RosterError, ValidationFailed
from roster.events import Outbox, durable_event_handler, first_delivery
from roster.pagination import decode_cursor, keyset_page, page_size
from roster.rpc import BoundedRpcProxy
from services.contacts import domain, store
from services.contacts.models import Base, Contact, OutboxRow, ProcessedEvent
from services.contacts.schemas import dump_contact, dump_contacts

logger = logging.getLogger(__name__)



class ContactsService:
    name = "contacts"

    db = Database(Base)
    outbox = Outbox(OutboxRow, "db")
    customers_rpc = BoundedRpcProxy("customers")
    billing_rpc = BoundedRpcProxy("billing_sync")

    @rpc
    def health(self):
        return {"service": self.name, "status": "ok"}

    @rpc(expected_exceptions=RosterError)
    def validate_contact(self, data: dict, field_prefix: str = "", data_source_uuid: str | None = None) -> None:
        """Check a contact's own fields (no customer needed); a 422 names the first bad field.

        With `data_source_uuid`, also check that the external id is still free there.
        """
        fields = domain.clean_fields(data, field_prefix)
        if data_source_uuid and fields.get("external_id"):
            with self.db() as session:
                if store.external_id_taken(session, data_source_uuid, fields["external_id"]):
                    name = f"{field_prefix}external_id"
                    raise ValidationFailed(
                        f"{name}: {fields['external_id']!r} is already used by another contact of this data source",
                        param=name,
                    )

    @rpc(expected_exceptions=RosterError)
    def create_contact(self, data: dict) -> dict:
        fields = domain.clean_fields(data)
        customer_uuid = domain.required_reference(data, "customer_uuid")
        data_source_uuid = domain.required_reference(data, "data_source_uuid")
        customer = self._customer(customer_uuid)
        self._check_data_source(customer, data_source_uuid)
        custom = {key: value for key, value in fields.pop("custom", {}).items() if value is not None}
        email = fields.pop("email", None)
        with self.db.begin() as session:
            self._check_still_there(session, customer_uuid)
            store.check_external_id_free(session, data_source_uuid, fields.get("external_id"))
            contact = Contact(
                uuid=f"con_{uuid_lib.uuid4()}",
                customer_uuid=customer["uuid"],
                customer_external_id=customer.get("external_id") or None,
                data_source_uuid=data_source_uuid,
                custom=custom,
                **fields,
            )
            store.set_email(contact, email)
            session.add(contact)
            session.flush()
            created = dump_contact(contact)
            self.outbox(session, "contact_created", uuid=contact.uuid, customer_uuid=contact.customer_uuid,
                        contact=created)
        return created

    @rpc(expected_exceptions=RosterError)
    def get_contact(self, uuid: str) -> dict:
        with self.db() as session:
            return dump_contact(store.by_uuid(session, uuid))

    @rpc(expected_exceptions=RosterError)
    def list_contacts(self, filters: dict, cursor: str | None = None, per_page=None) -> dict:
        """Return {entries, has_more, cursor} of contacts matching `filters`, oldest first."""
        size = page_size(per_page)
        try:
            after_id = int(decode_cursor(cursor).get("after_id", 0))
        except (TypeError, ValueError):
            raise ValidationFailed("cursor: is not a cursor this API returned", param="cursor")
        with self.db() as session:
            rows = store.page(session, filters or {}, after_id, size)
            contacts, has_more, next_cursor = keyset_page(rows, size, lambda c: {"after_id": c.id})
            return {"entries": dump_contacts(contacts), "has_more": has_more, "cursor": next_cursor}

    @rpc(expected_exceptions=RosterError)
    def update_contact(self, uuid: str, changes: dict) -> dict:
        """Set the given fields; `custom` keys are added or replaced (a null value removes one)."""
        fields = domain.clean_fields(changes)
        with self.db.begin() as session:
            contact = store.by_uuid(session, uuid)
            before = dump_contact(contact)
            if "external_id" in fields:
                store.check_external_id_free(session, contact.data_source_uuid, fields["external_id"], contact.id)
            if "custom" in fields:
                contact.custom = domain.updated_custom(contact.custom, fields.pop("custom"))
            if "email" in fields:
                store.set_email(contact, fields.pop("email"))
            for name, value in fields.items():
                setattr(contact, name, value)
            return self._record_update(session, contact, before)

    @rpc(expected_exceptions=RosterError)
    def delete_contact(self, uuid: str) -> None:
        with self.db.begin() as session:
            contact = store.by_uuid(session, uuid)
            self._delete(session, contact, reason="deleted")

    @rpc(expected_exceptions=RosterError)
    def merge_contacts(self, into_uuid: str, from_uuid: str) -> dict:
        """Keep `into`, fill its empty fields from `from`, union custom attributes, delete `from`."""
        if into_uuid == from_uuid:
            raise ValidationFailed("from_uuid: a contact cannot be merged into itself", param="from_uuid")
        with self.db.begin() as session:
            into = store.by_uuid(session, into_uuid, param="into_uuid")
            merged_from = store.by_uuid(session, from_uuid, param="from_uuid")
            changes = domain.merged_contact(_values(into), _values(merged_from))
            if "external_id" in changes and into.data_source_uuid != merged_from.data_source_uuid and \
                    store.external_id_taken(session, into.data_source_uuid, changes["external_id"], into.id):
                del changes["external_id"]  # that id already names another contact of the survivor's source
            session.delete(merged_from)
            session.flush()  # `from`'s external id is free before `into` takes it
            if "email" in changes:
                store.set_email(into, changes.pop("email"))
            for name, value in changes.items():
                setattr(into, name, value)
            session.flush()
            merged = dump_contact(into)
            self.outbox(session, "contact_merged", into_uuid=into.uuid, from_uuid=from_uuid,
                        customer_uuid=into.customer_uuid, contact=merged)
            return merged

    @durable_event_handler("customers", "customer_deleted")
    def handle_customer_deleted(self, payload):
        """Delete the contacts of a deleted customer (once per event)."""
        with self.db.begin() as session:
            if not first_delivery(session, ProcessedEvent, "handle_customer_deleted", payload):
                return
            store.mark_gone(session, payload["uuid"])
            for contact in store.of_customer(session, payload["uuid"]):
                self._delete(session, contact, reason="customer_deleted")

    @durable_event_handler("customers", "customer_merged")
    def handle_customer_merged(self, payload):
        """Move the merged-away customer's contacts to the survivor (once per event)."""
        from_uuid, into_uuid = payload["from_uuid"], payload["into_uuid"]
        with self.db() as session:
            survivor = store.surviving_customer(session, into_uuid)
            external_id = payload.get("into_external_id") or (
                store.known_customer_external_id(session, survivor) if survivor else None
            )
        if survivor is not None and external_id is None:
            external_id = self._survivor_external_id(survivor)  # RPC only outside a transaction
        with self.db.begin() as session:
            if not first_delivery(session, ProcessedEvent, "handle_customer_merged", payload):
                return
            survivor = store.surviving_customer(session, into_uuid)
            store.mark_gone(session, from_uuid, merged_into=into_uuid)
            for contact in store.of_customer(session, from_uuid):
                if survivor is None:  # the survivor has been deleted meanwhile
                    self._delete(session, contact, reason="customer_deleted")
                    continue
                before = dump_contact(contact)
                contact.customer_uuid = survivor
                if external_id is not None:
                    contact.customer_external_id = external_id
                self._record_update(session, contact, before, reason="customer_merged")

    def _customer(self, customer_uuid: str) -> dict:
        try:
            return self.customers_rpc.get_customer(customer_uuid)
        except NotFound:
            raise ValidationFailed(f"customer_uuid: no customer {customer_uuid} exists", param="customer_uuid")

    def _check_still_there(self, session, customer_uuid: str) -> None:
        """Refuse a customer deleted or merged away since it was fetched (its event already handled)."""
        survivor = store.surviving_customer(session, customer_uuid)
        if survivor is None:
            raise ValidationFailed(f"customer_uuid: customer {customer_uuid} was deleted", param="customer_uuid")
        if survivor != customer_uuid:
            raise ValidationFailed(f"customer_uuid: customer {customer_uuid} was merged into {survivor}",
                                   param="customer_uuid")

    def _check_data_source(self, customer: dict, data_source_uuid: str) -> None:
        known = set(customer.get("data_source_uuids") or []) | {customer.get("data_source_uuid")}
        if data_source_uuid in known:
            return
        try:
            self.billing_rpc.get_data_source(data_source_uuid)
        except NotFound:
            raise ValidationFailed(
                f"data_source_uuid: no data source {data_source_uuid} exists", param="data_source_uuid"
            )

    def _survivor_external_id(self, customer_uuid: str) -> str | None:
        try:
            return self.customers_rpc.get_customer(customer_uuid).get("external_id") or None
        except NotFound:
            return None  # deleted too: its customer_deleted event removes the contacts

    def _delete(self, session, contact: Contact, reason: str) -> None:
        session.delete(contact)
        self.outbox(session, "contact_deleted", uuid=contact.uuid, customer_uuid=contact.customer_uuid,
                    data_source_uuid=contact.data_source_uuid, external_id=contact.external_id, reason=reason)

    def _record_update(self, session, contact: Contact, before: dict, reason: str = "updated") -> dict:
        """Flush, and record `contact_updated` with the fields that changed (if any did)."""
        session.flush()
        after = dump_contact(contact)
        changes = {
            key: value for key, value in after.items()
            if key not in ("updated_at",) and before.get(key) != value
        }
        if changes:
            self.outbox(session, "contact_updated", uuid=contact.uuid, customer_uuid=contact.customer_uuid,
                        changes=changes, reason=reason, contact=after)
        return after


def _values(contact: Contact) -> dict:
    """The merge-relevant values of a contact as a plain dict (for the domain rules)."""
    values = {field: getattr(contact, field) for field in domain.FILLABLE_FIELDS}
    values["custom"] = dict(contact.custom or {})
    return values
