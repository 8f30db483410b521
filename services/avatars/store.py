"""Reading and writing cached avatars in this service's database (one session, no commits here)."""
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from sqlalchemy import and_, bindparam, delete, literal, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from roster.database import dialect_insert, inserted_keys
from services.avatars import domain
from services.avatars.models import CachedAvatar, GoneCustomer, bookkeeping

# What an event handler reads of a cached avatar to decide what to do (not the image itself).
KNOWN_COLUMNS = ("customer_uuid", "source", "etag", "customer_updated_at") + domain.REFRESH_FIELDS


@dataclass(frozen=True)
class Status:
    """What one read tells an event handler: whether its event was handled, whether the customer
    is gone, and its cached avatar's KNOWN_COLUMNS (None if it has none)."""

    handled: bool
    gone: bool
    known: Row | None


def status(session: Session, customer_uuid: str, handled_key: str | None) -> Status:
    """Return the Status of a customer for the event `handled_key` (None: not an event), in one statement."""
    row = session.execute(_status_query(), {"key": handled_key or "", "uuid": customer_uuid}).one()
    return Status(handled=bool(row.handled), gone=bool(row.gone),
                  known=row if row.customer_uuid is not None else None)


def known_many(session: Session, customer_uuids: list[str]) -> tuple[set[str], dict[str, Row]]:
    """Return which of these customers are gone, and the KNOWN_COLUMNS of those with a cached avatar."""
    if not customer_uuids:
        return set(), {}
    wanted = set(customer_uuids)
    gone = set(session.scalars(select(GoneCustomer.uuid).where(GoneCustomer.uuid.in_(wanted))))
    avatars = CachedAvatar.__table__
    rows = session.execute(select(*(avatars.c[name] for name in KNOWN_COLUMNS))
                           .where(avatars.c.customer_uuid.in_(wanted)))
    return gone, {row.customer_uuid: row for row in rows}


@lru_cache(maxsize=None)
def _status_query():
    """Both flags and the avatar's columns from a one-row anchor (so a missing avatar still gives a row)."""
    processed = bookkeeping.processed
    handled = select(processed.key).where(processed.key == bindparam("key")).exists()
    gone = select(GoneCustomer.uuid).where(GoneCustomer.uuid == bindparam("uuid")).exists()
    anchor = select(literal(1).label("one")).subquery("anchor")
    avatars = CachedAvatar.__table__
    return (select(handled.label("handled"), gone.label("gone"), *(avatars.c[name] for name in KNOWN_COLUMNS))
            .select_from(anchor.outerjoin(avatars, avatars.c.customer_uuid == bindparam("uuid"))))


def cached(session: Session, customer_uuid: str, *, lock: bool = False) -> CachedAvatar | None:
    """Return the customer's cached avatar (locked for the transaction when `lock`), or None."""
    query = select(CachedAvatar).where(CachedAvatar.customer_uuid == customer_uuid)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.scalars(query).first()


def insert_unless_gone(session: Session, values: dict) -> bool:
    """Insert the customer's first cached avatar unless the customer is gone, in one statement;
    False (and nothing written) if it is gone or has an avatar already.

    RETURNING says whether the row went in: with SQLAlchemy 2.1 on psycopg an INSERT's rowcount
    is -1 (roster.database.insert_ignore relies on it).
    """
    statement = _inserting_unless_gone(session.get_bind().dialect.name, tuple(values))
    return session.execute(statement, values).first() is not None


def insert_many_unless_gone(session: Session, rows: list[dict]) -> set[str]:
    """Insert the first cached avatars of these customers, skipping those with one already and
    those gone; return the customer uuids whose avatar went in. Two statements for them all:
    the insert, then the removal of what it put in for customers marked gone (by the time of
    that removal, later than insert_unless_gone's check)."""
    inserted = set(inserted_keys(session, CachedAvatar.__table__, rows, ["customer_uuid"]))
    if not inserted:
        return inserted
    avatars = CachedAvatar.__table__
    removed = session.scalars(
        delete(avatars).where(avatars.c.customer_uuid.in_(inserted),
                              avatars.c.customer_uuid.in_(select(GoneCustomer.uuid)))
        .returning(avatars.c.customer_uuid))
    return inserted.difference(removed)


@lru_cache(maxsize=None)
def _inserting_unless_gone(dialect: str, columns: tuple[str, ...]):
    """The statement insert_unless_gone runs for these columns, built once per dialect."""
    insert = dialect_insert(dialect)
    avatars = CachedAvatar.__table__
    still_here = ~select(GoneCustomer.uuid).where(GoneCustomer.uuid == bindparam("customer_uuid")).exists()
    row = select(*(bindparam(name, type_=avatars.c[name].type) for name in columns)).where(still_here)
    return (insert(avatars).from_select(columns, row).on_conflict_do_nothing(index_elements=["customer_uuid"])
            .returning(avatars.c.customer_uuid))


def remember(session: Session, customer_uuid: str, fields: dict, version: datetime | None) -> None:
    """Store newer values of some avatar inputs with the cached avatar, as of the customer's `version`;
    nothing if there is no avatar or it was resolved from a newer version (domain.supersedes)."""
    avatars = CachedAvatar.__table__
    stored = avatars.c.customer_updated_at
    newer_or_same = stored.is_(None) if version is None else or_(stored.is_(None), stored <= version)
    session.execute(update(avatars).where(avatars.c.customer_uuid == customer_uuid, newer_or_same)
                    .values(**fields, customer_updated_at=version))


def remove(session: Session, customer_uuid: str) -> None:
    """Delete the customer's cached avatar, if there is one."""
    session.execute(delete(CachedAvatar).where(CachedAvatar.customer_uuid == customer_uuid))


def mark_gone(session: Session, customer_uuid: str) -> None:
    """Remember that a customer was deleted or merged away."""
    if session.get(GoneCustomer, customer_uuid) is None:
        session.add(GoneCustomer(uuid=customer_uuid))


def is_gone(session: Session, customer_uuid: str) -> bool:
    return session.get(GoneCustomer, customer_uuid) is not None


def claim_stale(session: Session, *, complete_before: datetime, incomplete_before: datetime, now: datetime,
                claim_until: datetime, limit: int) -> list[CachedAvatar]:
    """Claim up to `limit` avatars due for a refresh, oldest first, and return them.

    Due: fetched before `complete_before`, or incomplete and fetched before `incomplete_before`;
    not claimed by another process. On PostgreSQL rows another transaction is claiming are
    skipped; on SQLite the write transaction holds the file's lock.
    """
    query = (
        select(CachedAvatar)
        .where(or_(CachedAvatar.fetched_at < complete_before,
                   and_(CachedAvatar.incomplete.is_(True), CachedAvatar.fetched_at < incomplete_before)))
        .where(or_(CachedAvatar.claimed_until.is_(None), CachedAvatar.claimed_until < now))
        .order_by(CachedAvatar.fetched_at, CachedAvatar.customer_uuid)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = list(session.scalars(query))
    for row in rows:
        row.claimed_until = claim_until
    return rows
