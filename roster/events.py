"""Events as a public contract: the envelope, and the relay that moves the outbox onto the bus.

A service records each event in its `outbox` table in the transaction that makes the change
(`roster.uow`). The relay publishes committed rows: it claims a batch (so several processes
of one service do not publish the same rows; `FOR UPDATE SKIP LOCKED` on PostgreSQL, the
write lock on SQLite), publishes it in id order, and marks it published. A crash between
publishing and marking republishes the batch later (at least once; consumers dedupe on
`event_id`); a claim by a process that died expires after CLAIM_SECONDS. A row the broker
refuses for good (`PermanentPublishError`) is quarantined with the reason and never blocks
the rows behind it. Nothing here knows nameko: `publish_batch` is handed in.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, bindparam, delete, or_, select, update
from sqlalchemy.orm import sessionmaker

from roster import metrics, tracing
from roster.database import WRITE
from roster.timestamps import render, utcnow

logger = logging.getLogger(__name__)

ENVELOPE_VERSION = 1
CLAIM_SECONDS = 30
BATCH_SIZE = 200
OUTBOX_RETENTION = timedelta(days=7)  # published rows are kept this long, for inspection
PROCESSED_RETENTION = timedelta(days=30)  # longer than any redelivery could take
IDEMPOTENCY_RETENTION = timedelta(hours=24)


def envelope(**fields) -> dict:
    """Return an event payload: `event_id`, `occurred_at`, `version`, `request_id` (when the change was
    made for a request; roster.tracing), then the fields."""
    payload = {"event_id": str(uuid.uuid4()), "occurred_at": render(utcnow()), "version": ENVELOPE_VERSION}
    request_id = tracing.current()
    if request_id:
        payload[tracing.REQUEST_ID] = request_id
    payload.update(fields)
    return payload


class PermanentPublishError(Exception):
    """The broker will never take this message (e.g. it is larger than its frame limit)."""


@dataclass(frozen=True)
class PendingEvent:
    id: int
    event_type: str
    payload: str


PublishBatch = Callable[[list[PendingEvent]], list[tuple[PendingEvent, str]]]
"""Publishes events in order; returns those refused for good with the reason. Raises when the
broker is unreachable (nothing after the failure counts as published)."""


class OutboxRelay:
    """Publishes one service's committed outbox rows (see the module docstring)."""

    def __init__(self, sessions: sessionmaker, row_class, publish_batch: PublishBatch, *, service: str = ""):
        self.sessions = sessions
        self.rows = row_class
        self.publish_batch = publish_batch
        self.service = service
        self.published = 0
        self.quarantined = 0
        self._statements = {}  # the claim, per dialect
        ids = self.rows.id.in_(bindparam("ids", expanding=True))
        self._release_statement = (update(self.rows).where(ids).values(claimed_until=None)
                                   .execution_options(synchronize_session=False))
        self._publish_statement = (update(self.rows).where(ids).values(published_at=bindparam("now"))
                                   .execution_options(synchronize_session=False))

    def publish_pending(self) -> int:
        """Publish every committed, unclaimed row; return how many went out."""
        total = 0
        while True:
            batch = self._claim()
            if not batch:
                return total
            try:
                refused = self.publish_batch(batch)
            except Exception:
                self._release(batch)
                raise
            self._settle(batch, refused)
            self._count(batch, refused)
            total += len(batch) - len(refused)
            self.published += len(batch) - len(refused)
            if len(batch) < BATCH_SIZE:
                return total

    def _count(self, batch: list[PendingEvent], refused: list[tuple[PendingEvent, str]]) -> None:
        refused_ids = {event.id for event, _ in refused}
        counts: dict[str, int] = {}
        for event in batch:
            if event.id not in refused_ids:
                counts[event.event_type] = counts.get(event.event_type, 0) + 1
        for event_type, count in counts.items():
            metrics.EVENTS_PUBLISHED.labels(self.service, event_type).inc(count)
        if refused:
            metrics.EVENTS_QUARANTINED.labels(self.service).inc(len(refused))

    def _claim(self) -> list[PendingEvent]:
        now = utcnow()
        with self.sessions() as session:
            session.connection(execution_options=WRITE)
            claimed = session.execute(self._claim_statement(session.get_bind().dialect.name), {
                "now": now, "until": now + timedelta(seconds=CLAIM_SECONDS)}).all()
            session.commit()
        return sorted((PendingEvent(*row) for row in claimed), key=lambda event: event.id)

    def _claim_statement(self, dialect: str):
        """UPDATE ... RETURNING that claims the oldest unclaimed rows; built once per dialect."""
        if dialect not in self._statements:
            rows = self.rows
            pending = (
                select(rows.id)
                .where(rows.published_at.is_(None), rows.failed_at.is_(None),
                       or_(rows.claimed_until.is_(None), rows.claimed_until < bindparam("now")))
                .order_by(rows.id).limit(BATCH_SIZE)
            )
            if dialect == "postgresql":
                pending = pending.with_for_update(skip_locked=True)
            self._statements[dialect] = (
                update(rows).where(rows.id.in_(pending.scalar_subquery()))
                .values(claimed_until=bindparam("until"))
                .returning(rows.id, rows.event_type, rows.payload)
                .execution_options(synchronize_session=False)
            )
        return self._statements[dialect]

    def _release(self, batch: list[PendingEvent]) -> None:
        """Give a batch back at once when the broker is away, rather than waiting for the claim to expire."""
        try:
            with self.sessions() as session:
                session.connection(execution_options=WRITE)
                session.execute(self._release_statement, {"ids": [event.id for event in batch]})
                session.commit()
        except Exception:  # the claim then simply expires
            logger.warning("outbox %s: could not release a claim", self.service, exc_info=True)

    def _settle(self, batch: list[PendingEvent], refused: list[tuple[PendingEvent, str]]) -> None:
        now = utcnow()
        refused_ids = {event.id for event, _ in refused}
        with self.sessions() as session:
            session.connection(execution_options=WRITE)
            published = [event.id for event in batch if event.id not in refused_ids]
            if published:
                session.execute(self._publish_statement, {"ids": published, "now": now})
            for event, reason in refused:
                session.execute(update(self.rows).where(self.rows.id == event.id)
                                .values(failed_at=now, error=reason[:2000])
                                .execution_options(synchronize_session=False))
                logger.error("outbox %s: quarantined event %s (%s): %s",
                             self.service, event.id, event.event_type, reason)
            session.commit()
        self.quarantined += len(refused)

    def backlog(self) -> int:
        """Return how many committed rows wait to be published (quarantined ones excluded)."""
        from sqlalchemy import func

        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(self.rows).where(
                self.rows.published_at.is_(None), self.rows.failed_at.is_(None)))


def prune(sessions: sessionmaker, tables) -> None:
    """Delete published outbox rows, processed-event marks and idempotent answers past their retention."""
    now = utcnow()
    with sessions() as session:
        session.connection(execution_options=WRITE)
        session.execute(delete(tables.outbox).where(
            and_(tables.outbox.published_at.is_not(None), tables.outbox.published_at < now - OUTBOX_RETENTION)))
        session.execute(delete(tables.processed).where(tables.processed.processed_at < now - PROCESSED_RETENTION))
        session.execute(delete(tables.idempotent).where(tables.idempotent.created_at < now - IDEMPOTENCY_RETENTION))
        session.commit()
