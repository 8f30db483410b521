"""The activities service: notes and call logs, email threads, tasks, opportunities and each
customer's activity feed, fed by its own writes and by other services' events."""
from roster.dependencies import UnitOfWorkProvider, service_health
from roster.handlers import EVENT_BATCH, changes_any, event_handler
from roster.rpc import BoundedRpcProxy, rpc
from services.activities import commands
from services.activities.models import UNIQUE_RULES, Base, bookkeeping


class ActivitiesService:
    name = "activities"

    uow = UnitOfWorkProvider(Base, bookkeeping, unique_rules=UNIQUE_RULES)
    customers_rpc = BoundedRpcProxy("customers")
    contacts_rpc = BoundedRpcProxy("contacts")

    @rpc
    def health(self):
        return service_health(self.name, self.uow)

    # ---- notes and calls

    @rpc
    def create_note(self, data: dict) -> dict:
        return commands.create_note(self.uow, data, customers=self.customers_rpc, contacts=self.contacts_rpc)

    @rpc
    def get_note(self, uuid: str) -> dict:
        return commands.get_note(self.uow, uuid)

    @rpc
    def list_notes(self, filters: dict, cursor: str | None = None, per_page=None) -> dict:
        return commands.list_notes(self.uow, filters, cursor, per_page)

    @rpc
    def update_note(self, uuid: str, changes: dict) -> dict:
        return commands.update_note(self.uow, uuid, changes)

    @rpc
    def delete_note(self, uuid: str) -> None:
        return commands.delete_note(self.uow, uuid)

    # ---- email threads

    @rpc
    def create_thread(self, customer_uuid: str, data: dict) -> dict:
        return commands.create_thread(self.uow, customer_uuid, data, customers=self.customers_rpc)

    @rpc
    def add_thread_messages(self, customer_uuid: str, thread_uuid: str, data: dict) -> dict:
        return commands.add_thread_messages(self.uow, customer_uuid, thread_uuid, data)

    @rpc
    def get_thread(self, customer_uuid: str, thread_uuid: str) -> dict:
        return commands.get_thread(self.uow, customer_uuid, thread_uuid)

    @rpc
    def list_threads(self, customer_uuid: str, cursor: str | None = None, per_page=None) -> dict:
        return commands.list_threads(self.uow, customer_uuid, cursor, per_page)

    # ---- tasks

    @rpc
    def create_task(self, data: dict) -> dict:
        return commands.create_task(self.uow, data, customers=self.customers_rpc, contacts=self.contacts_rpc)

    @rpc
    def get_task(self, uuid: str) -> dict:
        return commands.get_task(self.uow, uuid)

    @rpc
    def list_tasks(self, filters: dict, cursor: str | None = None, per_page=None) -> dict:
        return commands.list_tasks(self.uow, filters, cursor, per_page)

    @rpc
    def update_task(self, uuid: str, changes: dict) -> dict:
        return commands.update_task(self.uow, uuid, changes)

    @rpc
    def delete_task(self, uuid: str) -> None:
        return commands.delete_task(self.uow, uuid)

    # ---- opportunities

    @rpc
    def create_opportunity(self, data: dict) -> dict:
        return commands.create_opportunity(self.uow, data, customers=self.customers_rpc)

    @rpc
    def get_opportunity(self, uuid: str) -> dict:
        return commands.get_opportunity(self.uow, uuid)

    @rpc
    def list_opportunities(self, filters: dict, cursor: str | None = None, per_page=None) -> dict:
        return commands.list_opportunities(self.uow, filters, cursor, per_page)

    @rpc
    def update_opportunity(self, uuid: str, changes: dict) -> dict:
        return commands.update_opportunity(self.uow, uuid, changes)

    @rpc
    def delete_opportunity(self, uuid: str) -> None:
        return commands.delete_opportunity(self.uow, uuid)

    # ---- the feed and the MRR activities

    @rpc
    def feed(self, customer_uuid: str, types=None, cursor: str | None = None, per_page=None) -> dict:
        return commands.feed(self.uow, customer_uuid, types, cursor, per_page)

    @rpc
    def customer_activities(self, customer_uuid: str, cursor: str | None = None, per_page=None) -> dict:
        return commands.customer_activities(self.uow, customer_uuid, cursor, per_page)

    @rpc
    def list_activities(self, query: dict, cursor: str | None = None, per_page=None) -> dict:
        return commands.list_activities(self.uow, query, cursor, per_page)

    # ---- events from other services

    @event_handler("customers", "customer_created", batch=EVENT_BATCH, bulk="record_created_customers")
    def handle_customer_created(self, payload):
        commands.on_customer_created(self.uow, payload)

    def record_created_customers(self, payloads):
        commands.on_customers_created(self.uow, payloads)

    @event_handler("customers", "customer_updated", when=changes_any("name"), batch=EVENT_BATCH)
    def handle_customer_updated(self, payload):
        commands.on_customer_updated(self.uow, payload)

    @event_handler("customers", "customer_merged")
    def handle_customer_merged(self, payload):
        commands.on_customer_merged(self.uow, payload)

    @event_handler("customers", "customer_unmerged")
    def handle_customer_unmerged(self, payload):
        commands.on_customer_unmerged(self.uow, payload)

    @event_handler("customers", "customer_deleted")
    def handle_customer_deleted(self, payload):
        commands.on_customer_deleted(self.uow, payload)

    @event_handler("contacts", "contact_created", batch=EVENT_BATCH)
    def handle_contact_created(self, payload):
        commands.on_contact_created(self.uow, payload)

    @event_handler("contacts", "contact_merged")
    def handle_contact_merged(self, payload):
        commands.on_contact_merged(self.uow, payload)

    @event_handler("contacts", "contact_deleted")
    def handle_contact_deleted(self, payload):
        commands.on_contact_deleted(self.uow, payload)

    @event_handler("billing_sync", "mrr_movement_recorded", batch=EVENT_BATCH, bulk="record_mrr_movements")
    def handle_mrr_movement_recorded(self, payload):
        commands.on_mrr_movement_recorded(self.uow, payload)

    def record_mrr_movements(self, payloads):
        commands.on_mrr_movements_recorded(self.uow, payloads)

    @event_handler("billing_sync", "mrr_movement_retracted", batch=EVENT_BATCH)
    def handle_mrr_movement_retracted(self, payload):
        commands.on_mrr_movement_retracted(self.uow, payload)

    @event_handler("billing_sync", "transaction_recorded", batch=EVENT_BATCH, bulk="record_transactions")
    def handle_transaction_recorded(self, payload):
        commands.on_transaction_recorded(self.uow, payload)

    def record_transactions(self, payloads):
        commands.on_transactions_recorded(self.uow, payloads)
