"""Reading and writing cached avatars in this service's database (one session, no commits here)."""
from datetime import datetime

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from services.avatars.models import CachedAvatar, GoneCustomer


def cached(session: Session, customer_uuid: str, *, lock: bool = False) -> CachedAvatar | None:
    """Return the customer's cached avatar (locked for the transaction when `lock`), or None."""
    query = select(CachedAvatar).where(CachedAvatar.customer_uuid == customer_uuid)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.scalars(query).first()


def insert_if_absent(session: Session, values: dict) -> bool:
    """Insert the customer's first cached avatar; False (and nothing written) if it has one already.

    RETURNING says whether the row went in: with SQLAlchemy 2.1 on psycopg an INSERT's rowcount
    is -1 (roster.database.insert_ignore relies on it).
    """
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (insert(CachedAvatar).values(**values).on_conflict_do_nothing(index_elements=["customer_uuid"])
                 .returning(CachedAvatar.customer_uuid))
    return session.execute(statement).first() is not None


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
