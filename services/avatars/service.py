"""The avatars service: Clearbit logo, then Gravatar, then a generated initial, cached per customer.

It follows the customers service's events, answers `get_avatar` over RPC, refreshes avatars
older than AVATAR_MAX_AGE on a timer and announces `avatar_resolved`.
"""
from roster.dependencies import UnitOfWorkProvider, service_health
from roster.handlers import EVENT_BATCH, NOT_PREPARED, changes_any, event_handler
from roster.rpc import BoundedRpcProxy, rpc
from services.avatars import commands
from services.avatars.dependencies import AvatarSources, refresh_timer
from services.avatars.domain import REFRESH_FIELDS
from services.avatars.models import UNIQUE_RULES, Base, bookkeeping


class AvatarsService:
    name = "avatars"

    uow = UnitOfWorkProvider(Base, bookkeeping, unique_rules=UNIQUE_RULES)
    sources = AvatarSources()
    customers_rpc = BoundedRpcProxy("customers")

    @rpc
    def health(self):
        return service_health(self.name, self.uow)

    @rpc
    def get_avatar(self, customer_uuid: str) -> dict:
        return commands.get_avatar(self.uow, customer_uuid)

    @event_handler("customers", "customer_created", batch=EVENT_BATCH, prepare="resolve_created_avatars",
                   bulk="store_created_avatars")
    def handle_customer_created(self, payload, prepared=NOT_PREPARED):
        if prepared is NOT_PREPARED:  # called on its own, not by a batch
            commands.on_customer_created(self.uow, payload, fetchers=self.sources.fetchers)
        else:
            commands.store_created(self.uow, payload, prepared)

    def resolve_created_avatars(self, payloads):
        return commands.resolve_created(self.uow, payloads, fetchers=self.sources.fetchers)

    def store_created_avatars(self, payloads, prepared):
        commands.store_created_many(self.uow, payloads, prepared)

    @event_handler("customers", "customer_updated", when=changes_any(*REFRESH_FIELDS))
    def handle_customer_updated(self, payload):
        commands.on_customer_updated(self.uow, payload, fetchers=self.sources.fetchers, customers=self.customers_rpc)

    @event_handler("customers", "customer_deleted")
    def handle_customer_deleted(self, payload):
        commands.on_customer_deleted(self.uow, payload)

    @event_handler("customers", "customer_merged")
    def handle_customer_merged(self, payload):
        commands.on_customer_merged(self.uow, payload)

    @refresh_timer()
    def refresh_stale_avatars(self):
        commands.refresh_stale(self.uow, fetchers=self.sources.fetchers, max_age=self.sources.max_age)
