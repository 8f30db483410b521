"""The nameko dependency every service declares: its database, as one UnitOfWork per worker.

    class CustomersService:
        name = "customers"
        uow = UnitOfWorkProvider(Base, models.bookkeeping, unique_rules=models.UNIQUE_RULES)

At start-up it upgrades the service's database to the newest migration, then hands every
worker a `roster.uow.UnitOfWork` that knows what the worker is doing: an event handler's
UnitOfWork dedupes on the event id, an RPC carrying an idempotency key replays its first
answer. It also runs the outbox relay: woken as soon as a worker commits events, and every
RELAY_INTERVAL seconds to pick up rows another process left behind; it prunes old
bookkeeping rows every PRUNE_INTERVAL seconds.
"""
import logging
import time

import eventlet
from eventlet.event import Event
from nameko.constants import AMQP_SSL_CONFIG_KEY, AMQP_URI_CONFIG_KEY, LOGIN_METHOD_CONFIG_KEY
from nameko.events import EventDispatcher
from nameko.messaging import Publisher
from nameko.standalone.events import get_event_exchange
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from roster import config, metrics, migrations, observe
from roster.database import make_engine
from roster.events import OutboxRelay, PendingEvent, prune
from roster.publishing import BatchPublisher
from roster.handlers import DurableEventHandler
from roster.rpc import IDEMPOTENCY_KEY
from roster.serialization import MAX_MESSAGE_BYTES
from roster.uow import UnitOfWork, answer_key, fingerprint

logger = logging.getLogger(__name__)

RELAY_INTERVAL = 1.0
# Woken by a commit, the relay waits this long before it claims: under load the events of the
# commits made meanwhile go in the same batch (one claim, one confirm) instead of a round each.
RELAY_LINGER = 0.005
PRUNE_INTERVAL = 600.0
ERROR_LOG_INTERVAL = 30.0


class UnitOfWorkProvider(EventDispatcher):
    """Injects a UnitOfWork bound to this service's database, and publishes its outbox."""

    def __init__(self, base, tables, unique_rules=(), migrate: bool = True, service: str | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        # `service`: whose database and events these are, when not the container's own (a
        # service's worker processes run as another nameko service but share its data).
        self.service = service
        self.migrate = migrate  # False: create the tables as they are (toy services in tests)
        self.base = base
        self.tables = tables
        self.unique_rules = tuple(unique_rules)
        self.engine = None
        self.sessions = None
        self.relay = None
        self._wake = None
        self._relay_thread = None
        self.batch_publisher = None

    def setup(self):
        name = self.service or self.container.service_name
        if self.service is None:
            super().setup()
        else:  # EventDispatcher.setup with the owning service's exchange
            self.exchange = get_event_exchange(name, self.container.config)
            self.declare.append(self.exchange)
            Publisher.setup(self)
        self.engine = make_engine(config.database_url(name), config.database_schema(name))
        if self.migrate:
            migrations.upgrade(self.engine, name, self.base.metadata)
        else:
            self.base.metadata.create_all(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        config_ = self.container.config
        self.batch_publisher = BatchPublisher(config_[AMQP_URI_CONFIG_KEY], self.exchange,
                                              ssl=config_.get(AMQP_SSL_CONFIG_KEY),
                                              login_method=config_.get(LOGIN_METHOD_CONFIG_KEY))
        self.relay = OutboxRelay(self.sessions, self.tables.outbox, self._publish_batch, service=name)
        self._wake = Event()

    def start(self):
        self._relay_thread = self.container.spawn_managed_thread(self._relay_forever)
        metrics.register_collector(self._collect_backlog)
        metrics.serve(self.container.service_name)

    def _collect_backlog(self):
        yield metrics.gauge("roster_outbox_backlog", "Committed events waiting in the outbox to be published",
                            ["service"], [([self.container.service_name], float(self.relay.backlog()))])

    # ---- every worker: request id for the logs, timings

    def worker_setup(self, worker_ctx):
        observe.worker_started(worker_ctx)

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        observe.worker_finished(worker_ctx, exc_info)

    def worker_teardown(self, worker_ctx):
        observe.worker_done()

    def stop(self):
        if self._relay_thread is not None:
            self._relay_thread.kill()
        if self.batch_publisher is not None:
            self.batch_publisher.close()
        super().stop()
        if self.engine is not None:
            self.engine.dispose()

    def kill(self):
        self.stop()

    def get_dependency(self, worker_ctx):
        return UnitOfWork(
            self.sessions, self.tables, unique_rules=self.unique_rules,
            idempotency=_idempotency(worker_ctx), client_key=worker_ctx.context_data.get(IDEMPOTENCY_KEY) or None,
            handled_event=_handled_event(worker_ctx), on_commit=self._committed,
        )

    # ---- the relay ----

    def _committed(self, _payloads) -> None:
        if not self._wake.ready():
            self._wake.send(True)

    def _relay_forever(self) -> None:
        last_pruned = last_error_logged = 0.0
        while True:
            with eventlet.Timeout(RELAY_INTERVAL, False):
                self._wake.wait()
            eventlet.sleep(RELAY_LINGER)
            self._wake = Event()  # a commit from now on wakes the next round
            try:
                self.relay.publish_pending()
                if time.monotonic() - last_pruned > PRUNE_INTERVAL:
                    prune(self.sessions, self.tables)
                    last_pruned = time.monotonic()
            except Exception:  # the broker or the database is away: try again next round
                if time.monotonic() - last_error_logged > ERROR_LOG_INTERVAL:
                    logger.exception("outbox %s: publishing failed; retrying every %.0fs",
                                     self.service or self.container.service_name, RELAY_INTERVAL)
                    last_error_logged = time.monotonic()
                eventlet.sleep(RELAY_INTERVAL)

    def _publish_batch(self, batch: list[PendingEvent]) -> list[tuple[PendingEvent, str]]:
        refused, sendable = [], []
        for event in batch:
            if len(event.payload) > MAX_MESSAGE_BYTES:
                refused.append((event, f"payload of {len(event.payload)} bytes exceeds {MAX_MESSAGE_BYTES}"))
            else:
                sendable.append((event.event_type, event.payload))
        self.batch_publisher.publish(sendable)
        return refused


def service_health(service_name: str, uow: UnitOfWork) -> dict:
    """The answer of a service's `health` RPC: status "ok" when its database answers, else "failing".

    The reason names the failing part and the error type only: this goes to /readyz, which anyone
    may call, and a driver's message can quote SQL or connection details.
    """
    report = {"service": service_name, "status": "ok", "database": "ok"}
    try:
        with uow.read() as session:
            session.execute(text("SELECT 1"))
    except Exception as error:
        logger.warning("%s: health: the database does not answer: %s", service_name, error)
        report.update(status="failing", database=f"unreachable ({type(error).__name__})")
    return report


def _idempotency(worker_ctx) -> tuple[str, str] | None:
    key = worker_ctx.context_data.get(IDEMPOTENCY_KEY)
    if not key:
        return None
    entrypoint = worker_ctx.entrypoint
    return answer_key(entrypoint.method_name, key), fingerprint(entrypoint.method_name, worker_ctx.args,
                                                                worker_ctx.kwargs)


def _handled_event(worker_ctx) -> str | None:
    if not isinstance(worker_ctx.entrypoint, DurableEventHandler) or not worker_ctx.args:
        return None
    payload = worker_ctx.args[0]
    if not isinstance(payload, dict):  # a batch worker: roster.handlers sets it event by event
        return None
    return f"{worker_ctx.entrypoint.method_name}:{payload['event_id']}"
