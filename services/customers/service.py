"""The customers service: RPC commands and queries on customer records, and their events."""
from roster.dependencies import UnitOfWorkProvider
from roster.rpc import BoundedRpcProxy, rpc
from services.customers import commands, store
from services.customers.models import UNIQUE_RULES, Base, bookkeeping


class CustomersService:
    name = "customers"

    uow = UnitOfWorkProvider(Base, bookkeeping, unique_rules=UNIQUE_RULES)
    billing_rpc = BoundedRpcProxy("billing_sync")

    @rpc
    def health(self):
        return {"service": self.name, "status": "ok"}

    @rpc
    def create_customer(self, data: dict) -> dict:
        return commands.create_customer(self.uow, data, billing=self.billing_rpc)

    @rpc
    def get_customer(self, uuid: str) -> dict:
        return commands.get_customer(self.uow, uuid)

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
    def add_tags(self, uuid: str, tags: list) -> list[str]:
        return commands.change_one(self.uow, uuid, lambda c: store.add_tags(c, tags))["attributes"]["tags"]

    @rpc
    def remove_tags(self, uuid: str, tags: list) -> list[str]:
        return commands.change_one(self.uow, uuid, lambda c: store.remove_tags(c, tags))["attributes"]["tags"]

    @rpc
    def add_tags_by_email(self, email: str, tags: list) -> list[dict]:
        return commands.change_by_email(self.uow, email, lambda c: store.add_tags(c, tags))

    @rpc
    def remove_tags_by_email(self, email: str, tags: list) -> list[dict]:
        return commands.change_by_email(self.uow, email, lambda c: store.remove_tags(c, tags))

    @rpc
    def add_custom_attributes(self, uuid: str, attributes: list) -> dict:
        change = lambda c: store.add_custom_attributes(c, attributes)  # noqa: E731
        return commands.change_one(self.uow, uuid, change)["attributes"]["custom"]

    @rpc
    def add_custom_attributes_by_email(self, email: str, attributes: list) -> list[dict]:
        return commands.change_by_email(self.uow, email, lambda c: store.add_custom_attributes(c, attributes))

    @rpc
    def update_custom_attributes(self, uuid: str, values: dict) -> dict:
        change = lambda c: store.set_custom_values(c, values)  # noqa: E731
        return commands.change_one(self.uow, uuid, change)["attributes"]["custom"]

    @rpc
    def update_custom_attributes_by_email(self, email: str, values: dict) -> list[dict]:
        return commands.change_by_email(self.uow, email, lambda c: store.set_custom_values(c, values))

    @rpc
    def remove_custom_attributes_by_email(self, email: str, keys: list) -> list[dict]:
        return commands.change_by_email(self.uow, email, lambda c: store.remove_custom_attributes(c, keys))

    @rpc
    def remove_custom_attributes(self, uuid: str, keys: list) -> dict:
        change = lambda c: store.remove_custom_attributes(c, keys)  # noqa: E731
        return commands.change_one(self.uow, uuid, change)["attributes"]["custom"]
