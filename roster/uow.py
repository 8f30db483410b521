"""The unit of work every service layer takes: transactions, events, dedupe and idempotency.

A command runs `with uow.write() as tx:` and inside it changes rows through `tx.session`
and records facts with `tx.record("customer_created", customer=...)`. On leaving the block
the transaction commits: the changes and their events together, or neither. Around that:

* Event payloads are encoded while they are recorded, so a value the bus cannot carry is a
  422 naming the field, before anything is stored.
* A write transaction takes the write lock up front on SQLite (BEGIN IMMEDIATE).
* An event handler's first write transaction also records the event id as handled; if it
  already was, the block does not run (`AlreadyHandled`), so a redelivery changes nothing,
  even for effects that are not idempotent by nature.
* A command carrying an idempotency key stores its answer (`tx.result(value)`) with its
  changes; a retry with the same key gets that answer back (`Replay`) instead of running
  again, even when the first attempt's caller had already given up.
* A unique constraint broken by a concurrent writer becomes a 422 naming the field
  (`UniqueRule`), not a 500.
* Inside `with uow.batch():` (a worker handling several events, roster.handlers) each event is
  a savepoint of one transaction (`batch_item`) that its `write()`s and `read()`s run in: one
  commit for many events, while each event's changes still stand or fall on their own.
  `batch_memo(session)` lets one event reuse what an earlier one of the batch looked up.

Nothing here knows nameko: `roster.dependencies` builds one UnitOfWork per worker, and unit
tests build one on an in-memory database.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from sqlalchemy import Index, Integer, String, Text, delete, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column, sessionmaker

from roster.database import WRITE, UtcDateTime, insert_ignore, inserted_keys, read_options
from roster.errors import ValidationFailed, invalid
from roster.events import envelope
from roster.serialization import UnencodableValue, encode_event
from roster.timestamps import utcnow


class AlreadyHandled(Exception):
    """This event was handled before; the handler's work is already committed."""


class Replay(Exception):
    """This command ran before with the same idempotency key; `result` is its answer."""

    def __init__(self, result):
        super().__init__("replayed")
        self.result = result


# ---- the bookkeeping tables every service has -------------------------------------------------

OUTBOX_PENDING = "published_at IS NULL AND failed_at IS NULL"


class OutboxRowMixin:
    """Events waiting to be published, written in the transaction of the change they describe."""

    __tablename__ = "outbox"
    # The relay reads the oldest pending rows. Published rows stay for OUTBOX_RETENTION, and on
    # PostgreSQL every publish leaves a dead entry behind in ix_outbox_published_at until a
    # vacuum: without this index each claim visited every row published since the last one.
    @declared_attr.directive
    def __table_args__(cls):  # one Index object per service's table
        return (Index("ix_outbox_pending", "id", postgresql_where=text(OUTBOX_PENDING),
                      sqlite_where=text(OUTBOX_PENDING)),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[str] = mapped_column(Text)  # encoded JSON, exactly what goes on the bus
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)  # a relay is publishing it
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    failed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # quarantined: cannot be published
    error: Mapped[str | None] = mapped_column(Text)


class ProcessedEventMixin:
    """Events a handler has applied (`<handler>:<event_id>`), so a redelivery is skipped."""

    __tablename__ = "processed_events"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)


class IdempotentResultMixin:
    """Answers of commands sent with an idempotency key, kept for IDEMPOTENCY_RETENTION."""

    __tablename__ = "idempotent_results"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)


@dataclass(frozen=True)
class Bookkeeping:
    """A service's outbox, processed-events and idempotency tables."""

    outbox: type
    processed: type
    idempotent: type


def bookkeeping_tables(base) -> Bookkeeping:
    """Declare the bookkeeping tables on a service's declarative `base` and return them."""
    outbox = type("OutboxRow", (OutboxRowMixin, base), {"__module__": base.__module__})
    processed = type("ProcessedEvent", (ProcessedEventMixin, base), {"__module__": base.__module__})
    idempotent = type("IdempotentResult", (IdempotentResultMixin, base), {"__module__": base.__module__})
    return Bookkeeping(outbox, processed, idempotent)


# ---- unique constraints as field errors -------------------------------------------------------

@dataclass(frozen=True)
class UniqueRule:
    """What a unique constraint means to a client: the field to blame and why."""

    table: str
    columns: tuple[str, ...]
    param: str
    reason: str


def unique_rule_for(error: IntegrityError, rules: tuple[UniqueRule, ...]) -> UniqueRule | None:
    """Return the rule whose constraint `error` broke, on PostgreSQL or SQLite; None if none matches."""
    original = getattr(error, "orig", None)
    diag = getattr(original, "diag", None)
    if diag is not None and getattr(diag, "table_name", None):  # PostgreSQL (psycopg)
        detail = getattr(diag, "message_detail", "") or ""
        match = re.search(r"Key \(([^)]*)\)", detail)
        columns = tuple(name.strip() for name in match.group(1).split(",")) if match else ()
        return _matching(rules, diag.table_name, columns)
    match = re.search(r"UNIQUE constraint failed: (.*)$", str(original))  # SQLite
    if match:
        pairs = [name.strip().split(".", 1) for name in match.group(1).split(",")]
        if all(len(pair) == 2 for pair in pairs):
            return _matching(rules, pairs[0][0], tuple(column for _, column in pairs))
    return None


def _matching(rules, table: str, columns: tuple[str, ...]) -> UniqueRule | None:
    for rule in rules:
        if rule.table == table and set(rule.columns) == set(columns):
            return rule
    return None


# ---- the unit of work -------------------------------------------------------------------------

@dataclass
class Transaction:
    """What a command sees inside `uow.write()`: the session, and where events and answers go."""

    session: Session
    uow: UnitOfWork
    recorded: list[_Recorded] = field(default_factory=list)
    stored_result: bool = False

    def record(self, event_type: str, **fields) -> dict:
        """Record an event to publish once this transaction commits; return its payload.

        A field the bus cannot carry is a 422 naming it, and the transaction is abandoned.
        """
        payload = envelope(**fields)
        try:
            body = encode_event(payload)
        except UnencodableValue as bad:
            raise invalid(bad.path, bad.reason)
        # its outbox row goes in with the others when the transaction ends: one statement for all
        self.recorded.append(_Recorded(event_type, body, payload))
        return payload

    def forget_result(self, command: str) -> None:
        """Drop the stored answer of `command` sent with this request's idempotency key (a compensation
        undoing that command must let a retry with the same key run it again)."""
        if self.uow.client_key is None:
            return
        answers = self.uow.tables.idempotent
        self.session.execute(delete(answers).where(answers.key == answer_key(command, self.uow.client_key)))

    def result(self, value):
        """Return `value`, storing it as the command's answer if it carries an idempotency key."""
        if self.uow.idempotency is not None and not self.stored_result:
            key, fingerprint = self.uow.idempotency
            self.session.add(self.uow.tables.idempotent(
                key=key, fingerprint=fingerprint, result=orjson.dumps(value).decode()))
            self.stored_result = True
        return value


class UnitOfWork:
    """One service's database access for one command or event (see the module docstring)."""

    def __init__(self, sessions: sessionmaker, tables: Bookkeeping, *,
                 unique_rules: tuple[UniqueRule, ...] = (),
                 idempotency: tuple[str, str] | None = None,
                 client_key: str | None = None,
                 handled_event: str | None = None,
                 on_commit: Callable[[list[dict]], None] | None = None):
        self.sessions = sessions
        self.tables = tables
        self.unique_rules = unique_rules
        self.idempotency = idempotency  # (answer_key(command, client key), fingerprint of the request)
        self.client_key = client_key
        self.handled_event = handled_event  # "<handler>:<event_id>" while handling an event
        self.on_commit = on_commit
        self._checked = False
        self._batch: _Batch | None = None

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run the `write()`s of the block as savepoints of one transaction, committed at its end."""
        session = self.sessions()
        session.connection(execution_options=WRITE)
        self._batch = _Batch(session)
        session.info[BATCH_MEMO] = {}
        try:
            yield
            self._add_to_outbox(session, self._batch.recorded)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            recorded, self._batch = self._batch.recorded, None
            session.close()
        if recorded and self.on_commit is not None:
            self.on_commit([event.payload for event in recorded])

    def handling(self, handled_event: str) -> None:
        """Within a batch: the next writes are for this event (`<handler>:<event_id>`)."""
        self.handled_event = handled_event
        self._checked = False

    def mark_handled(self, handled_events: list[str]) -> set[str]:
        """Within a batch: record these events (`<handler>:<event_id>`) as handled, in one statement;
        return those that were not before. Handle each of them in `batch_item(..., marked=True)`."""
        now = utcnow()
        rows = [{"key": key, "processed_at": now} for key in dict.fromkeys(handled_events)]
        return set(inserted_keys(self._batch.session, self.tables.processed.__table__, rows, ["key"]))

    def handled(self, handled_events: list[str]) -> set[str]:
        """Return those of these events (`<handler>:<event_id>`) recorded as handled, in one read."""
        processed = self.tables.processed
        with self.read() as session:
            return set(session.scalars(select(processed.key).where(processed.key.in_(set(handled_events)))))

    @contextmanager
    def batch_item(self, handled_event: str, marked: bool = False, isolated: bool = True) -> Iterator[None]:
        """Within a batch: handle one event in a savepoint of its own, so that whatever it did, its
        reads included, is undone if it raises, and the batch goes on with the next event.
        `marked`: `mark_handled` recorded it already; the mark goes too if the event fails.
        `isolated=False`: no savepoint (two statements fewer); if the event raises, the caller
        must abandon the whole batch."""
        self.handling(handled_event)
        self._checked = marked
        batch = self._batch
        batch.item = _Item()
        if not isolated:
            try:
                yield
            finally:
                batch.item = None
            return
        session = batch.session
        savepoint = session.begin_nested()
        recorded_before = len(batch.recorded)
        try:
            yield
            savepoint.commit()
        except BaseException:
            _roll_back(savepoint, session)
            del batch.recorded[recorded_before:]
            # what earlier events remembered may rest on row locks this rollback released
            session.info[BATCH_MEMO] = {}
            if marked:  # so that a retry runs it
                processed = self.tables.processed
                session.execute(delete(processed).where(processed.key == handled_event))
            raise
        finally:
            batch.item = None

    @contextmanager
    def read(self) -> Iterator[Session]:
        """Yield a session for reading; nothing it does is committed."""
        if self._batch is not None:
            yield self._batch.session
            return
        with self.sessions() as session:
            options = read_options(session.get_bind())
            if options:
                session.connection(execution_options=options)
            yield session

    @contextmanager
    def write(self) -> Iterator[Transaction]:
        """Yield a Transaction; commit its changes and events together when the block ends. In a
        batch the batch commits: a write for an event (`batch_item`) has no savepoint of its own,
        so a failed write fails the whole event; any other write has a savepoint of its own."""
        item = self._batch.item if self._batch is not None else None
        if item is not None:
            # batch_item undoes a failed write with the rest of the event (its savepoint, or the batch)
            if item.failed:
                raise RuntimeError("a write of this event failed before: the event cannot go on")
            session = self._batch.session
            scope = None
        elif self._batch is not None:
            session = self._batch.session
            scope = session.begin_nested()
        else:
            session = scope = self.sessions()
            session.connection(execution_options=WRITE)
        tx = Transaction(session=session, uow=self)
        try:
            self._check_once(session)
            yield tx
            if self._batch is None:
                self._add_to_outbox(session, tx.recorded)  # in a batch: when the batch commits
            if scope is None:
                session.flush()  # so a broken rule shows here, as the commit of a savepoint would show it
            else:
                scope.commit()
        except IntegrityError as error:
            self._undo(scope, session, item)
            self._raise_for(error, session)
            raise
        except BaseException:
            self._undo(scope, session, item)
            raise
        finally:
            if self._batch is None:
                session.close()
        if self._batch is not None:
            self._batch.recorded.extend(tx.recorded)
        elif tx.recorded and self.on_commit is not None:
            self.on_commit([event.payload for event in tx.recorded])

    def _add_to_outbox(self, session: Session, recorded: list[_Recorded]) -> None:
        if recorded:
            now = utcnow()
            session.execute(insert(self.tables.outbox.__table__), [
                {"event_type": event.event_type, "payload": event.body, "created_at": now} for event in recorded])

    @staticmethod
    def _undo(scope, session: Session, item) -> None:
        if item is not None:
            item.failed = True  # batch_item rolls the whole event back
        elif scope is session:
            session.rollback()
        else:
            _roll_back(scope, session)

    def _check_once(self, session: Session) -> None:
        """On the first write: skip a handled event, replay an answered command."""
        if self._checked:
            return
        self._checked = True
        if self.handled_event is not None:
            inserted = insert_ignore(session, self.tables.processed.__table__,
                                     [{"key": self.handled_event, "processed_at": utcnow()}], ["key"])
            if not inserted:
                raise AlreadyHandled(self.handled_event)
        if self.idempotency is not None:
            self._replay_if_answered(session)

    def _replay_if_answered(self, session: Session) -> None:
        key, fingerprint = self.idempotency
        stored = session.get(self.tables.idempotent, key)
        if stored is None:
            return
        if stored.fingerprint != fingerprint:
            raise ValidationFailed(
                "Idempotency-Key: this key was used before with a different request", param="Idempotency-Key")
        raise Replay(orjson.loads(stored.result))

    def _raise_for(self, error: IntegrityError, session: Session) -> None:
        """Turn a broken unique constraint into its 422, or a lost idempotency race into a Replay."""
        if self.idempotency is not None:
            with self.sessions() as fresh:
                stored = fresh.get(self.tables.idempotent, self.idempotency[0])
                if stored is not None:
                    self._checked = False
                    self._replay_if_answered(fresh)
        rule = unique_rule_for(error, self.unique_rules)
        if rule is not None:
            raise ValidationFailed(f"{rule.param}: {rule.reason}", param=rule.param) from None


def _roll_back(savepoint, session: Session) -> None:
    """Roll a savepoint back, unless it is gone already; one whose flush failed is still the
    session's current one, inactive, and must be rolled back before the session goes on."""
    if savepoint.is_active or session.get_nested_transaction() is savepoint:
        savepoint.rollback()


@dataclass(frozen=True)
class _Recorded:
    event_type: str
    body: str  # the payload encoded, exactly what goes on the bus
    payload: dict


@dataclass
class _Item:
    failed: bool = False  # a write of this event raised


@dataclass
class _Batch:
    session: Session
    recorded: list[dict] = field(default_factory=list)
    item: _Item | None = None  # the event being handled (batch_item)


BATCH_MEMO = "roster_batch_memo"


def batch_memo(session: Session) -> dict | None:
    """A dict that lives as long as the batch this session runs, None outside a batch.

    For what handling one event may reuse from an earlier event of the same batch, such as a
    row it looked up and locked: the locks are held until the batch commits. It is emptied when
    an event of the batch fails (the rollback of its savepoint may release locks it took)."""
    return session.info.get(BATCH_MEMO)


def answer_key(command: str, client_key: str) -> str:
    """Return the key a command's answer is stored under for a client's idempotency key."""
    return f"{command}:{client_key}"


def fingerprint(method: str, args, kwargs) -> str:
    """Return a stable hash of a command and its arguments (to refuse a reused idempotency key)."""
    raw = orjson.dumps([method, args, kwargs], option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                       default=str)
    return hashlib.sha256(raw).hexdigest()
