"""The customers service: RPC commands and queries on customer records, their events, and the
projections it keeps from billing_sync's events. One line per entrypoint into `commands`."""
from roster.dependencies import UnitOfWorkProvider, service_health
from roster.handlers import EVENT_BATCH, Retired, event_handler
from roster.rpc import RememberingRpcProxy, rpc
from services.customers import commands
from services.customers.models import UNIQUE_RULES, Base, bookkeeping

# How long a process answers data source lookups from memory (other processes of this service
# learn of a deletion no later than this).
DATA_SOURCE_MEMORY_SECONDS = 5.0


class CustomersService:
    name = "customers"

    uow = UnitOfWorkProvider(Base, bookkeeping, unique_rules=UNIQUE_RULES)
    # A data source hardly changes: one lookup serves the creates of the next seconds.
    billing_rpc = RememberingRpcProxy("billing_sync", remember={"get_data_source": DATA_SOURCE_MEMORY_SECONDS})

    @rpc
    def health(self):
        return service_health(self.name, self.uow)

    @rpc
    def create_customer(self, data: dict) -> dict:
        return commands.create_customer(self.uow, data, billing=self.billing_rpc)

    @rpc
    def discard_customer(self, uuid: str) -> None:
        return commands.discard_customer(self.uow, uuid)

    @rpc
    def get_customer(self, uuid: str, with_overrides: bool = False, attributes_with_history=None) -> dict:
        return commands.get_customer(self.uow, uuid, with_overrides, attributes_with_history)

    @rpc
    def get_survivor(self, uuid: str) -> dict:
        return commands.get_survivor(self.uow, uuid)

    @rpc
    def sync_customer(self, data: dict) -> dict:
        return commands.sync_customer(self.uow, data, billing=self.billing_rpc)

    @rpc
    def find_customer(self, data_source_uuid: str, external_id: str) -> dict:
        return commands.find_customer(self.uow, data_source_uuid, external_id)

    @rpc
    def list_customers(self, filters: dict, cursor: str | None = None, per_page=None) -> dict:
        return commands.list_customers(self.uow, filters, cursor, per_page)

    @rpc
    def update_customer(self, uuid: str, changes: dict) -> dict:
        return commands.update_customer(self.uow, uuid, changes)

    @rpc
    def delete_customer(self, uuid: str) -> None:
        return commands.delete_customer(self.uow, uuid)

    @rpc
    def merge_customers(self, from_ref: dict, into_ref: dict) -> dict:
        return commands.merge_customers(self.uow, from_ref, into_ref)

    @rpc
    def unmerge_customer(self, data: dict) -> dict:
        return commands.unmerge_customer(self.uow, data)

    @rpc
    def add_tags(self, uuid: str, tags: list) -> list[str]:
        return commands.add_tags(self.uow, {"uuid": uuid}, tags)[0]["attributes"]["tags"]

    @rpc
    def add_tags_by_email(self, email: str, tags: list) -> list[dict]:
        return commands.add_tags(self.uow, {"email": email}, tags)

    @rpc
    def remove_tags(self, uuid: str, tags: list) -> list[str]:
        return commands.remove_tags(self.uow, {"uuid": uuid}, tags)[0]["attributes"]["tags"]

    @rpc
    def remove_tags_by_email(self, email: str, tags: list) -> list[dict]:
        return commands.remove_tags(self.uow, {"email": email}, tags)

    @rpc
    def add_custom_attributes(self, uuid: str, attributes: list, overrides: dict | None = None) -> dict:
        return commands.add_custom_attributes(self.uow, {"uuid": uuid}, attributes,
                                              overrides)[0]["attributes"]["custom"]

    @rpc
    def add_custom_attributes_by_email(self, email: str, attributes: list) -> list[dict]:
        return commands.add_custom_attributes(self.uow, {"email": email}, attributes)

    @rpc
    def update_custom_attributes(self, uuid: str, values: dict, overrides: dict | None = None) -> dict:
        return commands.update_custom_attributes(self.uow, {"uuid": uuid}, values,
                                                 overrides)[0]["attributes"]["custom"]

    @rpc
    def update_custom_attributes_by_email(self, email: str, values: dict) -> list[dict]:
        return commands.update_custom_attributes(self.uow, {"email": email}, values)

    @rpc
    def remove_custom_attributes(self, uuid: str, keys: list, overrides: dict | None = None) -> dict:
        return commands.remove_custom_attributes(self.uow, {"uuid": uuid}, keys,
                                                 overrides)[0]["attributes"]["custom"]

    @rpc
    def remove_custom_attributes_by_email(self, email: str, keys: list) -> list[dict]:
        return commands.remove_custom_attributes(self.uow, {"email": email}, keys)

    @event_handler("billing_sync", "data_source_deleted")
    def handle_data_source_deleted(self, payload):
        self.billing_rpc.forget("get_data_source", payload.get("uuid"))
        commands.on_data_source_deleted(self.uow, payload)

    # linger=0: an importer reads the customer's new MRR right after its import
    @event_handler("billing_sync", "customer_metrics_changed", batch=EVENT_BATCH, linger=0)
    def handle_customer_metrics_changed(self, payload):
        commands.on_customer_metrics_changed(self.uow, payload)

    # A custom-source duplicate of a connector's customer is merged into it in the background
    # (syncing.duplicate_merges), whichever of the two arrives first. It took over the queues of
    # the handlers that took every customer_created and customer_updated off the bus.
    @event_handler("customers", commands.DUPLICATE_CHECK, takes_over=(
        Retired("customers", "customer_created", "merge_duplicate_of_created"),
        Retired("customers", "customer_updated", "merge_duplicate_of_updated")))
    def merge_duplicates(self, payload):
        commands.merge_duplicates(self.uow, payload)
