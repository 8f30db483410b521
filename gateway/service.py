"""The HTTP gateway: one nameko service whose routes live in one mixin per domain."""
from nameko.events import BROADCAST, event_handler

from gateway.cache import RecordCacheDependency
from gateway.routes.activities import ActivityRoutes
from gateway.routes.app import AppRoutes
from gateway.routes.avatars import AVATAR_RPC_TIMEOUT, AvatarRoutes
from gateway.routes.billing import BillingRoutes
from gateway.routes.contacts import ContactRoutes
from gateway.routes.customers import CustomerRoutes
from gateway.routes.data_sources import DataSourceRoutes
from gateway.routes.meta import MetaRoutes
from gateway.routes.stream import StreamRoutes
from gateway.routes.sync import SyncRoutes
from roster.errors import RosterError
from roster.rpc import BoundedRpcProxy
from roster.timestamps import parse


def revision_in(payload: dict):
    """The record's revision a customer_updated event carries (None for an older event without one)."""
    try:
        return parse(payload["updated_at"], "updated_at") if payload.get("updated_at") else None
    except RosterError:
        return None


class GatewayService(MetaRoutes, CustomerRoutes, ContactRoutes, DataSourceRoutes, AvatarRoutes, ActivityRoutes,
                     BillingRoutes, AppRoutes, StreamRoutes, SyncRoutes):
    name = "gateway"

    customers_rpc = BoundedRpcProxy("customers")
    contacts_rpc = BoundedRpcProxy("contacts")
    billing_rpc = BoundedRpcProxy("billing_sync")
    avatars_rpc = BoundedRpcProxy("avatars", timeout=AVATAR_RPC_TIMEOUT)
    activities_rpc = BoundedRpcProxy("activities")
    cache = RecordCacheDependency()

    # Changes made outside this gateway (event consumers, other hosts) reach every gateway
    # process as a broadcast. Broadcast queues are per process and short-lived: the cache's
    # TTL covers a message missed while reconnecting.
    @event_handler("customers", "customer_updated", handler_type=BROADCAST, reliable_delivery=False)
    def forget_updated_customer(self, payload):
        self.cache.changed_elsewhere(payload["uuid"], revision_in(payload))

    @event_handler("customers", "customer_deleted", handler_type=BROADCAST, reliable_delivery=False)
    def forget_deleted_customer(self, payload):
        self.cache.gone(payload["uuid"])

    @event_handler("customers", "customer_merged", handler_type=BROADCAST, reliable_delivery=False)
    def forget_merged_customers(self, payload):
        self.cache.gone(payload["from_uuid"])
        self.cache.changed_elsewhere(payload["into_uuid"], None)  # its customer_updated follows
