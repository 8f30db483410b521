"""RPC at the edge: typed errors across the bus, replays, and calls bounded by a deadline.

* Every `roster.errors` type is registered with nameko, so a caller gets the same type back
  (with its field name) rather than a RemoteError.
* `rpc` is nameko's entrypoint with RosterError expected (a 4xx is not a crash) and an
  idempotent replay (`roster.uow.Replay`) turned into the stored answer.
* `BoundedRpcProxy` never waits longer than RPC_TIMEOUT, nor past the deadline of the
  request it serves: the gateway stamps a deadline into the call context, every hop
  inherits it minus HOP_MARGIN, so an inner call gives up first and the 503 names the
  service that did not answer. Each request carries the same expiration, so a request
  nobody picked up in time is dropped by RabbitMQ instead of running after its caller gave up.
  A request is published with a broker confirmation (which is how an unknown service is told
  at once, rather than at the deadline) only until the broker has routed one to that service:
  from then on a process sends unconfirmed, saving a round trip per call, and goes back to
  confirming after a call to that service timed out.

Eventlet-specific code stays in this module and in roster.handlers / roster.dependencies.
"""
import inspect
import logging
import time

import eventlet
import kombu.serialization
from kombu.exceptions import EncodeError
from nameko.exceptions import IncorrectSignature, UnknownService, registry
from nameko.exceptions import get_module_path, serialize

from nameko.rpc import MethodProxy, Responder, Rpc, RpcConsumer, RpcProxy, get_rpc_exchange

from roster import config, metrics
from roster import serialization  # registers the bus codec; MAX_MESSAGE_BYTES
from roster import transport  # noqa: F401  (buffers py-amqp's socket reads)
from roster.database import database_unavailable
from roster.publishing import SharedChannelPublisher
from roster.errors import ALL_ERRORS, AnswerTooLarge, PayloadTooLarge, RosterError, ServiceUnavailable
from roster.uow import AlreadyHandled, Replay

HOP_MARGIN = 0.25  # seconds an inner call leaves its caller to answer after giving up
DEADLINE = "deadline"  # context key: epoch seconds by which the original caller needs an answer
IDEMPOTENCY_KEY = "idempotency_key"  # context key: the client's Idempotency-Key, scoped by the gateway

logger = logging.getLogger(__name__)

for _error in ALL_ERRORS:
    registry[get_module_path(_error)] = _error


class UnconfirmedPublisher(SharedChannelPublisher):
    """Publishes without waiting for the broker's confirmation."""

    use_confirms = False


class UnroutedPublisher(SharedChannelPublisher):
    """Asks for `mandatory` routing only when confirming (unconfirmed, a return goes unnoticed)."""

    def publish(self, payload, **kwargs):
        if not kwargs.get("use_confirms", self.use_confirms):
            kwargs["mandatory"] = False
        return super().publish(payload, **kwargs)


class QuickMethodProxy(MethodProxy):
    publisher_cls = UnroutedPublisher


_ROUTED: set[str] = set()  # services this process's requests are known to reach (see the module docstring)


class QuickResponder(Responder):
    """Sends RPC replies unconfirmed: a confirmation costs a round trip and protects nothing here,
    since a reply lost on the way is the caller's timeout either way.

    No reply can kill its sender. nameko's send_response encodes the result once to check it,
    and for one that does not encode sends UnserializableValueError, whose message quotes the
    whole value: for an answer over MAX_MESSAGE_BYTES that error is over the limit too, the
    publish raised EncodeError out of the worker and nameko killed the container (the request,
    never acked, was then redelivered to the next instance). Here the reply is encoded once, as
    it is published; when it cannot be (too large, or a value JSON cannot express) the caller
    gets a small typed error instead (AnswerTooLarge, or a 500 RosterError naming the reason).
    """

    publisher_cls = UnconfirmedPublisher

    def send_response(self, result, exc_info):
        error = serialize(exc_info[1]) if exc_info is not None else None
        # answer encoded the same way as the request (nameko's rule)
        serializer = kombu.serialization.registry.type_to_name[self.message.properties["content_type"]]
        publisher = self.publisher_cls(self.amqp_uri, ssl=self.ssl, login_method=self.login_method)
        options = {"serializer": serializer, "exchange": self.exchange,
                   "routing_key": self.message.properties["reply_to"],
                   "correlation_id": self.message.properties.get("correlation_id")}
        try:
            publisher.publish({"result": result, "error": error}, **options)
        except EncodeError as failure:  # raised before anything was sent: the connection is fine
            refusal = unsendable_answer(failure)
            logger.error("an RPC answer could not be sent (%s); the caller is told: %s", failure, refusal)
            publisher.publish({"result": None, "error": serialize(refusal)}, **options)
            return None, (type(refusal), refusal, failure.__traceback__)
        return result, exc_info


def unsendable_answer(failure: EncodeError) -> RosterError:
    """Return the error that tells a caller why its answer could not be encoded."""
    causes = (failure.args[0] if failure.args else None, failure.__cause__, failure.__context__)
    if any(isinstance(cause, PayloadTooLarge) for cause in causes):
        limit = serialization.MAX_MESSAGE_BYTES
        size = f"{limit // 2**20} MiB" if limit % 2**20 == 0 else f"{limit} bytes"
        return AnswerTooLarge(f"the answer would be larger than {size}: ask for fewer entries (per_page)")
    reason = str(failure)
    if len(reason) > 200:
        reason = reason[:200] + "..."
    return RosterError(f"the answer could not be encoded: {reason}")


class RosterRpcConsumer(RpcConsumer):
    def handle_result(self, message, result, exc_info):
        """Answer the caller (QuickResponder never fails on the answer itself), then ack the request,
        so an answer that cannot be sent is not redelivered and run again."""
        config = self.container.config
        responder = QuickResponder(config["AMQP_URI"], get_rpc_exchange(config), config.get("serializer", "json"),
                                   message, ssl=config.get("AMQP_SSL"), login_method=config.get("LOGIN_METHOD"))
        result, exc_info = responder.send_response(result, exc_info)
        self.queue_consumer.ack_message(message)
        return result, exc_info


class SignatureOnce:
    """An entrypoint mixin: nameko's check_signature (a call with the wrong arguments is an
    IncorrectSignature, before a worker starts) with the method's signature worked out once.
    nameko's runs inspect.getcallargs on every call, which builds the signature each time (a
    few per cent of a request's CPU in the gateway)."""

    _signature = None

    def check_signature(self, args, kwargs):
        if self._signature is None:
            self._signature = inspect.signature(getattr(self.container.service_cls, self.method_name))
        try:
            self._signature.bind(None, *args, **kwargs)  # None: the service instance (the method is unbound)
        except TypeError as exc:
            raise IncorrectSignature(str(exc))


class RosterRpc(SignatureOnce, Rpc):
    """nameko's @rpc with RosterError expected, idempotent replays answered, replies unconfirmed.

    Every entrypoint of a service must be this one (not nameko's plain @rpc): two RPC consumers
    in one service would share its queue and answer each other's methods as unknown.
    """

    rpc_consumer = RosterRpcConsumer()

    def __init__(self, expected_exceptions=(), **kwargs):
        if not isinstance(expected_exceptions, tuple):
            expected_exceptions = (expected_exceptions,)
        super().__init__(expected_exceptions=(RosterError, Replay, AlreadyHandled) + expected_exceptions, **kwargs)

    def handle_result(self, message, worker_ctx, result=None, exc_info=None):
        if exc_info is not None and isinstance(exc_info[1], Replay):
            result, exc_info = exc_info[1].result, None
        elif exc_info is not None and database_unavailable(exc_info[1]):
            # the caller gets a 503 naming the service, not a 500: the request may be retried
            error = ServiceUnavailable(f"The {worker_ctx.service_name} service cannot reach its database; "
                                       "try again shortly")
            exc_info = (ServiceUnavailable, error, exc_info[2])
        return super().handle_result(message, worker_ctx, result, exc_info)


rpc = RosterRpc.decorator


def deadline_after(seconds: float) -> str:
    """Return the context value of a deadline `seconds` from now (plus the first hop's margin)."""
    return repr(time.time() + seconds + HOP_MARGIN)


class BoundedRpcProxy(RpcProxy):
    def __init__(self, target_service: str, timeout: float | None = None, **options):
        self.timeout = timeout
        super().__init__(target_service, **options)

    def get_dependency(self, worker_ctx):
        timeout = self.timeout if self.timeout is not None else config.rpc_timeout()
        return BoundedServiceProxy(worker_ctx, self.target_service, self.rpc_reply_listener, timeout)


class BoundedServiceProxy:
    def __init__(self, worker_ctx, service_name: str, reply_listener, timeout: float):
        self._worker_ctx = worker_ctx
        self._service_name = service_name
        self._reply_listener = reply_listener
        self._timeout = timeout

    def _budget(self) -> float:
        deadline = self._worker_ctx.context_data.get(DEADLINE)
        if deadline is None:
            return self._timeout
        try:
            # Each hop gives up one margin before its caller does (the gateway is hop 1), so the
            # innermost call that hangs fails first and its 503 names the service at fault.
            depth = max(1, len(self._worker_ctx.call_id_stack))
            remaining = float(deadline) - time.time() - HOP_MARGIN * depth
        except (TypeError, ValueError):
            return self._timeout
        return min(self._timeout, remaining)

    def restart_deadline(self) -> None:
        """Give the request a fresh deadline from now: for a route that first spends long on the
        client (a large upload) and only then asks a service."""
        self._worker_ctx.context_data[DEADLINE] = deadline_after(self._timeout)

    def __getattr__(self, method_name):
        def call(*args, **kwargs):
            budget = self._budget()
            if budget <= 0.05:
                raise ServiceUnavailable(f"No time was left to ask the {self._service_name} service")
            confirm = self._service_name not in _ROUTED
            method = QuickMethodProxy(self._worker_ctx, self._service_name, method_name, self._reply_listener,
                                      expiration=budget, use_confirms=confirm)
            reply = None
            started, outcome = time.monotonic(), "error"
            try:
                with eventlet.Timeout(budget):
                    reply = method.call_async(*args, **kwargs)
                    if confirm:
                        _ROUTED.add(self._service_name)
                    result = reply.result()
                    outcome = "ok"
                    return result
            except eventlet.Timeout:
                outcome = "timeout"
                _ROUTED.discard(self._service_name)  # confirm again: its queue may be gone
                self._forget(reply)
                raise ServiceUnavailable(f"The {self._service_name} service did not answer within {budget:.3g}s")
            except UnknownService:
                outcome = "unavailable"
                _ROUTED.discard(self._service_name)
                raise ServiceUnavailable(f"The {self._service_name} service is not running")
            except RosterError:
                outcome = "refused"  # the service answered with a 4xx-like error
                raise
            finally:
                metrics.RPC_CALLS.labels(self._service_name, method_name, outcome).observe(time.monotonic() - started)

        return call

    def _forget(self, reply) -> None:
        """Drop the reply we stopped waiting for, so abandoned calls do not pile up in memory."""
        if reply is None:
            return
        events = self._reply_listener._reply_events
        for correlation_id, event in list(events.items()):
            if event is reply.reply_event:
                events.pop(correlation_id, None)


class RememberingRpcProxy(BoundedRpcProxy):
    """A BoundedRpcProxy that remembers, per process, the answers of lookups that rarely change.

    `RememberingRpcProxy("billing_sync", remember={"get_data_source": 5.0})` answers a repeated
    `get_data_source(uuid)` from memory for 5 seconds. Only answers are remembered, never errors,
    so something created a moment ago is found at once; `proxy.forget(method, *args)` drops an
    answer early (e.g. when an event says the data source was deleted).
    """

    def __init__(self, target_service: str, remember: dict[str, float], max_entries: int = 10_000, **options):
        super().__init__(target_service, **options)
        self.remember = dict(remember)
        self.max_entries = max_entries
        self.answers: dict[tuple, tuple[float, object]] = {}

    def get_dependency(self, worker_ctx):
        return RememberingServiceProxy(super().get_dependency(worker_ctx), self)


class RememberingServiceProxy:
    def __init__(self, proxy: BoundedServiceProxy, provider: RememberingRpcProxy):
        self._proxy = proxy
        self._provider = provider

    def forget(self, method_name: str, *args) -> None:
        self._provider.answers.pop((method_name, args), None)

    def __getattr__(self, method_name):
        ttl = self._provider.remember.get(method_name)
        call = getattr(self._proxy, method_name)
        if ttl is None:
            return call

        def remembered(*args):
            answers, key = self._provider.answers, (method_name, args)
            found = answers.get(key)
            if found is not None and time.monotonic() < found[0]:
                return found[1]
            answer = call(*args)
            if len(answers) >= self._provider.max_entries:
                answers.clear()
            answers[key] = (time.monotonic() + ttl, answer)
            return answer

        return remembered
