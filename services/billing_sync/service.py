"""The billing_sync service: data sources now; invoices, subscriptions and MRR in later issues."""
from roster.dependencies import UnitOfWorkProvider
from roster.rpc import rpc
from services.billing_sync import commands
from services.billing_sync.models import UNIQUE_RULES, Base, bookkeeping


class BillingSyncService:
    name = "billing_sync"

    uow = UnitOfWorkProvider(Base, bookkeeping, unique_rules=UNIQUE_RULES)

    @rpc
    def health(self):
        return {"service": self.name, "status": "ok"}

    @rpc
    def create_data_source(self, data: dict) -> dict:
        return commands.create_data_source(self.uow, data)

    @rpc
    def list_data_sources(self, filters: dict) -> list[dict]:
        return commands.list_data_sources(self.uow, filters)

    @rpc
    def get_data_source(self, uuid: str) -> dict:
        return commands.get_data_source(self.uow, uuid)

    @rpc
    def delete_data_source(self, uuid: str) -> None:
        return commands.delete_data_source(self.uow, uuid)
