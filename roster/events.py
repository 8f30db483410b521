"""Events as a public contract: the envelope, and the relay that moves the outbox onto the bus.

A service records each event in its `outbox` table in the transaction that makes the change
(`roster.uow`). The relay publishes committed rows in id order and marks them published. Several
processes of one service never publish the same rows at once: on PostgreSQL a relay marks and
locks the rows it publishes in one statement (`UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP
LOCKED) RETURNING`), publishes them, then commits (a failure rolls the mark back); on SQLite
one relay per database file works at a time (`RelayLock`), so reading the rows takes no write
lock. A crash between publishing and marking republishes the batch later (at least once;
consumers dedupe on `event_id`). A row the broker can never take (`publish_batch` says which:
larger than its message limit) is quarantined with the reason and never blocks the rows behind
it. Nothing here knows nameko: `publish_batch` is handed in.
"""
from __future__ import annotations

import fcntl
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import eventlet
import eventlet.semaphore
from sqlalchemy import and_, bindparam, delete, select, update
from sqlalchemy.orm import sessionmaker

from roster import metrics, tracing
from roster.database import WRITE
from roster.timestamps import render, utcnow

logger = logging.getLogger(__name__)

ENVELOPE_VERSION = 1
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


class RelayLock:
    """One relay at a time per SQLite database file and service, across processes (an exclusive
    `flock` on a file beside the database, released by the kernel if the holder dies); within
    one process only, for a database that is no file. The holder reads, publishes and marks
    rows without claiming them, so publishing costs no write transaction of its own."""

    def __init__(self, database: str | None, service: str):
        self._path = None
        if database and database != ":memory:" and not database.startswith("file:"):
            self._path = f"{database}.{service or 'outbox'}.relay-lock"
        self._local = _LOCAL_LOCKS.setdefault((database, service), eventlet.semaphore.Semaphore())
        self._fd = None

    def __enter__(self):
        self._local.acquire()
        if self._path is None:
            return self
        try:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            pause = 0.005
            while True:  # another process's relay is publishing (ours too, from the same file)
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return self
                except BlockingIOError:
                    eventlet.sleep(pause)
                    pause = min(pause * 2, 0.1)
        except BaseException:
            self._close()
            raise

    def __exit__(self, *exc_info):
        self._close()
        return False

    def _close(self):
        try:
            if self._fd is not None:
                os.close(self._fd)  # releases the flock
                self._fd = None
        finally:
            self._local.release()


_LOCAL_LOCKS: dict = {}


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
        self._exclusive = None  # SQLite: one relay at a time per database file (RelayLock)
        rows = row_class
        pending = (select(rows.id, rows.event_type, rows.payload)
                   .where(rows.published_at.is_(None), rows.failed_at.is_(None))
                   .order_by(rows.id).limit(BATCH_SIZE))
        self._pending_statement = pending
        # PostgreSQL: mark the rows published and lock them until the transaction ends, in one
        # statement; rows another relay holds are skipped; a failed publish rolls the mark back
        unlocked = select(rows.id).where(rows.published_at.is_(None), rows.failed_at.is_(None)) \
            .order_by(rows.id).limit(BATCH_SIZE).with_for_update(skip_locked=True)
        self._claim_statement = (update(rows).where(rows.id.in_(unlocked.scalar_subquery()))
                                 .values(published_at=bindparam("now"))
                                 .returning(rows.id, rows.event_type, rows.payload))
        ids = rows.id.in_(bindparam("ids", expanding=True))
        self._publish_statement = update(rows).where(ids).values(published_at=bindparam("now"))

    def publish_pending(self) -> int:
        """Publish every committed row no other relay is publishing; return how many went out."""
        total = 0
        while True:
            count, full = self._round()
            total += count
            if not full:
                return total

    def _round(self) -> tuple[int, bool]:
        """Publish one batch; return how many went out and whether the batch was full."""
        engine = self.sessions.kw["bind"]
        if engine.dialect.name == "postgresql":
            # the rows stay locked (and skipped by other relays) while they are published;
            # a crash rolls the transaction back and they are published again later
            with engine.connect() as connection:
                with connection.begin():
                    batch = sorted(self._read(connection, self._claim_statement, {"now": utcnow()}),
                                   key=lambda event: event.id)
                    if batch:
                        refused = self.publish_batch(batch)
                        self._settle(connection, [], refused)  # the rest are marked already
        else:
            with self._relay_lock(engine):
                with engine.connect() as connection:
                    batch = self._read(connection, self._pending_statement)
                    connection.rollback()
                if batch:
                    refused = self.publish_batch(batch)
                    with engine.connect().execution_options(**WRITE) as connection:
                        with connection.begin():
                            self._settle(connection, batch, refused)
        if not batch:
            return 0, False
        self._count(batch, refused)
        self.published += len(batch) - len(refused)
        return len(batch) - len(refused), len(batch) == BATCH_SIZE

    def _relay_lock(self, engine):
        if self._exclusive is None:
            self._exclusive = RelayLock(engine.url.database, self.service)
        return self._exclusive

    @staticmethod
    def _read(connection, statement, parameters: dict | None = None) -> list[PendingEvent]:
        return [PendingEvent(*row) for row in connection.execute(statement, parameters)]

    def _count(self, batch: list[PendingEvent], refused: list[tuple[PendingEvent, str]]) -> None:
        refused_ids = {event.id for event, _ in refused}
        counts: dict[str, int] = {}
        for event in batch:
            if event.id not in refused_ids:
                counts[event.event_type] = counts.get(event.event_type, 0) + 1
        for event_type, count in counts.items():
            metrics.EVENTS_PUBLISHED.labels(self.service, event_type).inc(count)
        metrics.OUTBOX_BATCHES.labels(self.service).inc()
        if refused:
            metrics.EVENTS_QUARANTINED.labels(self.service).inc(len(refused))

    def _settle(self, connection, batch: list[PendingEvent], refused: list[tuple[PendingEvent, str]]) -> None:
        now = utcnow()
        refused_ids = {event.id for event, _ in refused}
        published = [event.id for event in batch if event.id not in refused_ids]
        if published:
            connection.execute(self._publish_statement, {"ids": published, "now": now})
        for event, reason in refused:
            connection.execute(update(self.rows).where(self.rows.id == event.id)
                               .values(published_at=None, failed_at=now, error=reason[:2000]))
            logger.error("outbox %s: quarantined event %s (%s): %s",
                         self.service, event.id, event.event_type, reason)
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
