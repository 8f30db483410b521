"""The customers service: RPC commands and queries on customer records, and their events."""
import uuid as uuid_lib

from nameko.rpc import rpc
from sqlalchemy.exc import IntegrityError

from roster.database import Database
from roster.errors import NotFound, RosterError, ValidationFailed
from roster.events import Outbox
from roster.pagination import decode_cursor, keyset_page, page_size
from roster.rpc import BoundedRpcProxy
from services.customers import domain, store
from services.customers.models import Base, OutboxRow
from services.customers.schemas import dump_customer


class CustomersService:
    name = "customers"

    db = Database(Base)
    outbox = Outbox(OutboxRow, "db")
    billing_rpc = BoundedRpcProxy("billing_sync")

    @rpc(expected_exceptions=RosterError)
    def health(self):
        return {"service": self.name, "status": "ok"}

    @rpc(expected_exceptions=RosterError)
    def create_customer(self, data: dict) -> dict:
        data_source = self._data_source(data["data_source_uuid"])
        try:
            with self.db.begin() as session:
                store.check_external_id_free(session, data["data_source_uuid"], data["external_id"])
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
                session.add(customer)
                session.flush()
                created = dump_customer(customer)
                self.outbox(session, "customer_created", customer=created)
        except IntegrityError:  # a concurrent create took the same external id first
            raise ValidationFailed(
                f"external_id: {data['external_id']!r} is already used by another customer of this data source",
                param="external_id",
            )
        return created

    @rpc(expected_exceptions=RosterError)
    def get_customer(self, uuid: str) -> dict:
        with self.db() as session:
            return store.read_by_uuid(session, uuid)

    @rpc(expected_exceptions=RosterError)
    def list_customers(self, filters: dict, cursor: str | None = None, per_page=None) -> dict:
        size = page_size(per_page)
        after_id = int(decode_cursor(cursor).get("after_id", 0))
        with self.db() as session:
            rows = store.page(session, filters, after_id, size)
        customers, has_more, next_cursor = keyset_page(rows, size, lambda c: {"after_id": c["id"]})
        return {"entries": customers, "has_more": has_more, "cursor": next_cursor}

    @rpc(expected_exceptions=RosterError)
    def update_customer(self, uuid: str, changes: dict) -> dict:
        with self.db.begin() as session:
            customer = store.by_uuid(session, uuid)
            before = dump_customer(customer)
            store.apply_fields(customer, changes)
            attributes = changes.get("attributes") or {}
            if "tags" in attributes:
                store.replace_tags(customer, attributes["tags"] or [])
            if "custom" in attributes:
                store.set_custom_values(customer, attributes["custom"] or {})
            return self._record_update(session, customer, before)

    @rpc(expected_exceptions=RosterError)
    def delete_customer(self, uuid: str) -> None:
        with self.db.begin() as session:
            customer = store.by_uuid(session, uuid)
            gone = dump_customer(customer)
            session.delete(customer)
            self.outbox(session, "customer_deleted", uuid=uuid, external_ids=gone["external_ids"],
                        data_source_uuids=gone["data_source_uuids"])

    @rpc(expected_exceptions=RosterError)
    def merge_customers(self, from_ref: dict, into_ref: dict) -> dict:
        with self.db.begin() as session:
            merged = self._resolve(session, from_ref, "from")
            into = self._resolve(session, into_ref, "into")
            if merged.id == into.id:
                raise ValidationFailed("from: a customer cannot be merged into itself", param="from")
            before = dump_customer(into)
            moved_ids = [
                {"data_source_uuid": row.data_source_uuid, "external_id": row.external_id}
                for row in merged.external_ids
            ]
            store.absorb(into, merged)
            session.flush()
            session.delete(merged)
            self.outbox(session, "customer_merged", from_uuid=merged.uuid, into_uuid=into.uuid,
                        into_external_id=into.external_ids[0].external_id, moved_external_ids=moved_ids)
            return {"from_uuid": merged.uuid, "into": self._record_update(session, into, before)}

    @rpc(expected_exceptions=RosterError)
    def add_tags(self, uuid: str, tags: list) -> list[str]:
        return self._change_one(uuid, lambda customer: store.add_tags(customer, tags))["attributes"]["tags"]

    @rpc(expected_exceptions=RosterError)
    def remove_tags(self, uuid: str, tags: list) -> list[str]:
        return self._change_one(uuid, lambda customer: store.remove_tags(customer, tags))["attributes"]["tags"]

    @rpc(expected_exceptions=RosterError)
    def add_tags_by_email(self, email: str, tags: list) -> list[dict]:
        return self._change_by_email(email, lambda customer: store.add_tags(customer, tags))

    @rpc(expected_exceptions=RosterError)
    def remove_tags_by_email(self, email: str, tags: list) -> list[dict]:
        return self._change_by_email(email, lambda customer: store.remove_tags(customer, tags))

    @rpc(expected_exceptions=RosterError)
    def add_custom_attributes(self, uuid: str, attributes: list) -> dict:
        change = lambda customer: store.add_custom_attributes(customer, attributes)  # noqa: E731
        return self._change_one(uuid, change)["attributes"]["custom"]

    @rpc(expected_exceptions=RosterError)
    def add_custom_attributes_by_email(self, email: str, attributes: list) -> list[dict]:
        return self._change_by_email(email, lambda customer: store.add_custom_attributes(customer, attributes))

    @rpc(expected_exceptions=RosterError)
    def update_custom_attributes(self, uuid: str, values: dict) -> dict:
        change = lambda customer: store.set_custom_values(customer, values)  # noqa: E731
        return self._change_one(uuid, change)["attributes"]["custom"]

    @rpc(expected_exceptions=RosterError)
    def update_custom_attributes_by_email(self, email: str, values: dict) -> list[dict]:
        return self._change_by_email(email, lambda customer: store.set_custom_values(customer, values))

    @rpc(expected_exceptions=RosterError)
    def remove_custom_attributes_by_email(self, email: str, keys: list) -> list[dict]:
        return self._change_by_email(email, lambda customer: store.remove_custom_attributes(customer, keys))

    @rpc(expected_exceptions=RosterError)
    def remove_custom_attributes(self, uuid: str, keys: list) -> dict:
        change = lambda customer: store.remove_custom_attributes(customer, keys)  # noqa: E731
        return self._change_one(uuid, change)["attributes"]["custom"]

    def _data_source(self, data_source_uuid: str) -> dict:
        try:
            return self.billing_rpc.get_data_source(data_source_uuid)
        except NotFound:
            raise ValidationFailed(
                f"data_source_uuid: no data source {data_source_uuid} exists", param="data_source_uuid"
            )

    def _resolve(self, session, ref: dict, side: str):
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
        raise ValidationFailed(
            f"{side}: give customer_uuid, or data_source_uuid and external_id", param=side
        )

    def _change_one(self, uuid: str, change) -> dict:
        with self.db.begin() as session:
            customer = store.by_uuid(session, uuid)
            before = dump_customer(customer)
            change(customer)
            return self._record_update(session, customer, before)

    def _change_by_email(self, email: str, change) -> list[dict]:
        with self.db.begin() as session:
            customers = store.by_email(session, email)
            if not customers:
                raise NotFound(f"No customer has the email {email}", param="email")
            changed = []
            for customer in customers:
                before = dump_customer(customer)
                change(customer)
                changed.append(self._record_update(session, customer, before))
            return changed

    def _record_update(self, session, customer, before: dict) -> dict:
        """Flush, and record `customer_updated` with the fields that changed (if any did)."""
        session.flush()
        after = dump_customer(customer)
        changes = domain.changed_fields(before, after)
        changes.pop("updated_at", None)
        if changes:
            self.outbox(session, "customer_updated", uuid=customer.uuid, changes=changes)
        return after

