"""RPC with a bound: a service that does not answer becomes a fast ServiceUnavailable.

nameko's RpcProxy waits forever for a reply. This proxy waits at most RPC_TIMEOUT
seconds and sends each request with the same expiration, so a request that nobody
picked up in time is dropped by RabbitMQ instead of running later, after the caller
has already been told it failed. Eventlet-specific code stays in this module.
"""
import eventlet
from nameko.exceptions import UnknownService
from nameko.rpc import RpcProxy

from roster import config
from roster.errors import ServiceUnavailable


class BoundedRpcProxy(RpcProxy):
    def __init__(self, target_service: str, timeout: float | None = None, **options):
        self.timeout = timeout if timeout is not None else config.rpc_timeout()
        super().__init__(target_service, expiration=self.timeout, **options)

    def get_dependency(self, worker_ctx):
        return BoundedServiceProxy(super().get_dependency(worker_ctx), self.target_service, self.timeout)


class BoundedServiceProxy:
    def __init__(self, proxy, service_name: str, timeout: float):
        self._proxy = proxy
        self._service_name = service_name
        self._timeout = timeout

    def __getattr__(self, method_name):
        method = getattr(self._proxy, method_name)

        def call(*args, **kwargs):
            try:
                with eventlet.Timeout(self._timeout):
                    return method.call_async(*args, **kwargs).result()
            except eventlet.Timeout:
                raise ServiceUnavailable(
                    f"The {self._service_name} service did not answer within {self._timeout:g}s"
                )
            except UnknownService:
                raise ServiceUnavailable(f"The {self._service_name} service is not running")

        return call
