"""The contacts service: RPC commands and queries on contacts, their events, and the
handlers that make contacts follow their customer (merges, deletions) and their data
source (deletion)."""
from roster.dependencies import UnitOfWorkProvider
from roster.handlers import event_handler
from roster.rpc import BoundedRpcProxy, rpc
from services.contacts import commands
from services.contacts.models import UNIQUE_RULES, Base, bookkeeping


class ContactsService:
    name = "contacts"

    uow = UnitOfWorkProvider(Base, bookkeeping, unique_rules=UNIQUE_RULES)
    customers_rpc = BoundedRpcProxy("customers")
    billing_rpc = BoundedRpcProxy("billing_sync")

    @rpc
    def health(self):
        return {"service": self.name, "status": "ok"}

    @rpc
    def validate_contact(self, data: dict, field_prefix: str = "", data_source_uuid: str | None = None) -> None:
        return commands.validate_contact(self.uow, data, field_prefix, data_source_uuid)

    @rpc
    def check_primary_contact(self, fields: dict) -> None:
        return commands.check_primary_contact(fields)

    @rpc
    def create_contact(self, data: dict) -> dict:
        return commands.create_contact(self.uow, data, customers=self.customers_rpc, billing=self.billing_rpc)

    @rpc
    def set_primary_contact(self, customer_uuid: str, fields: dict) -> dict:
        return commands.set_primary_contact(self.uow, customer_uuid, fields, customers=self.customers_rpc)

    @rpc
    def get_contact(self, uuid: str, with_overrides: bool = False) -> dict:
        return commands.get_contact(self.uow, uuid, with_overrides)

    @rpc
    def sync_contacts(self, customer_uuid: str, data_source_uuid: str, contacts: list) -> list[dict]:
        return commands.sync_contacts(self.uow, customer_uuid, data_source_uuid, contacts,
                                      customers=self.customers_rpc)

    @rpc
    def list_contacts(self, filters: dict, cursor: str | None = None, per_page=None) -> dict:
        return commands.list_contacts(self.uow, filters, cursor, per_page)

    @rpc
    def update_contact(self, uuid: str, changes: dict) -> dict:
        return commands.update_contact(self.uow, uuid, changes)

    @rpc
    def delete_contact(self, uuid: str) -> None:
        return commands.delete_contact(self.uow, uuid)

    @rpc
    def merge_contacts(self, into_uuid: str, from_uuid: str) -> dict:
        return commands.merge_contacts(self.uow, into_uuid, from_uuid)

    @event_handler("customers", "customer_deleted")
    def handle_customer_deleted(self, payload):
        commands.on_customer_deleted(self.uow, payload)

    @event_handler("customers", "customer_merged")
    def handle_customer_merged(self, payload):
        commands.on_customer_merged(self.uow, payload, customers=self.customers_rpc)

    @event_handler("customers", "customer_unmerged")
    def handle_customer_unmerged(self, payload):
        commands.on_customer_unmerged(self.uow, payload)

    @event_handler("billing_sync", "data_source_deleted")
    def handle_data_source_deleted(self, payload):
        commands.on_data_source_deleted(self.uow, payload)
