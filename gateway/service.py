"""The HTTP gateway: one nameko service whose routes live in one mixin per domain."""
from gateway.cache import RecordCacheDependency
from gateway.routes.activities import ActivityRoutes
from gateway.routes.app import AppRoutes
from gateway.routes.avatars import AVATAR_RPC_TIMEOUT, AvatarRoutes
from gateway.routes.billing import BillingRoutes
from gateway.routes.contacts import ContactRoutes
from gateway.routes.customers import CustomerRoutes
from gateway.routes.data_sources import DataSourceRoutes
from gateway.routes.meta import MetaRoutes
from gateway.routes.ops import OpsRoutes
from gateway.routes.stream import StreamRoutes
from gateway.routes.sync import SyncRoutes
from roster.observe import WorkerObserver
from roster.rpc import BoundedRpcProxy


class GatewayService(MetaRoutes, CustomerRoutes, ContactRoutes, DataSourceRoutes, AvatarRoutes, ActivityRoutes,
                     BillingRoutes, AppRoutes, StreamRoutes, OpsRoutes, SyncRoutes):
    name = "gateway"

    customers_rpc = BoundedRpcProxy("customers")
    contacts_rpc = BoundedRpcProxy("contacts")
    billing_rpc = BoundedRpcProxy("billing_sync")
    avatars_rpc = BoundedRpcProxy("avatars", timeout=AVATAR_RPC_TIMEOUT)
    activities_rpc = BoundedRpcProxy("activities")
    cache = RecordCacheDependency()
    observer = WorkerObserver()  # request ids in the logs, worker timings
