"""Events as a public contract: the envelope, a transactional outbox, and consumer dedupe.

A service records an event in its `outbox` table inside the same transaction as the
change it describes; the Outbox dependency publishes pending rows after the worker
finishes (and on a timer, to cover a crash between commit and publish). Consumers
remember the event ids they have handled, so a redelivery changes nothing.
"""
import logging
import time
import uuid
import weakref
from datetime import datetime, timedelta, timezone

import eventlet
from nameko.events import SERVICE_POOL, EventDispatcher, EventHandler
from sqlalchemy import JSON, DateTime, Integer, String, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

logger = logging.getLogger(__name__)

ENVELOPE_VERSION = 1
REPUBLISH_INTERVAL = 2.0
OUTBOX_RETENTION = timedelta(days=7)  # published rows are kept this long, for inspection
PRUNE_EVERY = 600  # seconds
REQUEUE_PAUSE = 1.0


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def envelope(**fields) -> dict:
    """Return an event payload: `event_id`, `occurred_at`, `version`, then the fields."""
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": utcnow().isoformat(),
        "version": ENVELOPE_VERSION,
        **fields,
    }


class OutboxRowMixin:
    """Columns of the outbox table; each service declares `class OutboxRow(OutboxRowMixin, Base)`."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict] = mapped_column(JSON)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)


class ProcessedEventMixin:
    """Event ids a consumer has already applied; each service declares its own table."""

    __tablename__ = "processed_events"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def first_delivery(session: Session, row_class, handler: str, payload: dict) -> bool:
    """Mark the event as handled by `handler`; False if it already was (skip it)."""
    key = f"{handler}:{payload['event_id']}"
    if session.get(row_class, key) is not None:
        return False
    session.add(row_class(key=key))
    return True


class Outbox(EventDispatcher):
    """Records events in the service's outbox and publishes them once committed.

    Inject as `outbox = Outbox(OutboxRow, "db")` next to `db = Database(Base)`; in a
    worker call `self.outbox(session, "customer_created", uuid=...)` inside the
    transaction. Publishing happens after the worker returns.
    """

    def __init__(self, row_class, database_attr: str = "db", **kwargs):
        super().__init__(**kwargs)
        self.row_class = row_class
        self.database_attr = database_attr  # a name, not the provider: nameko binds attributes
        self.database = None
        self._flushing = None
        self._timer = None
        self._recorded = weakref.WeakSet()

    def setup(self):
        super().setup()
        self._flushing = eventlet.semaphore.Semaphore()
        self.database = next(
            dep for dep in self.container.dependencies if dep.attr_name == self.database_attr
        )

    def start(self):
        self._timer = self.container.spawn_managed_thread(self._republish_forever)

    def stop(self):
        if self._timer is not None:
            self._timer.kill()
        super().stop()

    def get_dependency(self, worker_ctx):
        def record(session: Session, event_type: str, **fields) -> dict:
            payload = envelope(**fields)
            session.add(self.row_class(event_type=event_type, payload=payload))
            self._recorded.add(worker_ctx)
            return payload

        return record

    def worker_teardown(self, worker_ctx):
        # Only workers that recorded an event pay for a look at the outbox.
        if worker_ctx in self._recorded:
            self._recorded.discard(worker_ctx)
            self.publish_pending()

    def _republish_forever(self):
        last_pruned = 0.0
        while True:
            eventlet.sleep(REPUBLISH_INTERVAL)
            try:
                self.publish_pending()
                if time.monotonic() - last_pruned > PRUNE_EVERY:
                    self.prune_published()
                    last_pruned = time.monotonic()
            except Exception:  # the broker or database may be away; try again next round
                logger.exception("outbox: publishing pending events failed")

    def prune_published(self, older_than: timedelta = OUTBOX_RETENTION) -> None:
        """Delete published rows older than `older_than`, so the outbox does not grow forever."""
        with self.database.sessions.begin() as session:
            session.execute(delete(self.row_class).where(self.row_class.published_at < utcnow() - older_than))

    def publish_pending(self):
        """Publish every committed, unpublished event in order."""
        sessions = self.database.sessions
        with self._flushing:
            while True:
                with sessions() as session:
                    rows = session.execute(
                        select(self.row_class.id, self.row_class.event_type, self.row_class.payload)
                        .where(self.row_class.published_at.is_(None))
                        .order_by(self.row_class.id)
                        .limit(200)
                    ).all()
                if not rows:
                    return
                for row in rows:
                    self.publisher.publish(row.payload, exchange=self.exchange, routing_key=row.event_type)
                with sessions.begin() as session:
                    session.execute(
                        update(self.row_class)
                        .where(self.row_class.id.in_([row.id for row in rows]))
                        .values(published_at=utcnow())
                    )


class DurableEventHandler(EventHandler):
    """A handler on a durable queue whose failed messages go back on the queue, not lost.

    Before a failed message is requeued the worker pauses, so a handler that cannot succeed
    for now (its database or a service it asks is away) retries about once a second instead
    of spinning.
    """

    def __init__(self, source_service: str, event_type: str, **kwargs):
        super().__init__(source_service, event_type, handler_type=SERVICE_POOL,
                         reliable_delivery=True, requeue_on_error=True, **kwargs)

    def handle_message_processed(self, message, result=None, exc_info=None):
        if exc_info is not None:
            eventlet.sleep(REQUEUE_PAUSE)
        super().handle_message_processed(message, result, exc_info)


durable_event_handler = DurableEventHandler.decorator
