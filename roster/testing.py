"""Test support: a real UnitOfWork on a scratch SQLite file, and the events it recorded.

Service-layer tests run the same commands the RPC entrypoints run, on a real database,
with no broker: `uow = unit_of_work(Base, bookkeeping, tmp_path)`, then
`recorded(uow, "customer_created")` lists the payloads committed to the outbox.
"""
import orjson
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from roster.database import make_engine
from roster.uow import UnitOfWork, answer_key


def unit_of_work(base, tables, folder, **options) -> UnitOfWork:
    """Return a UnitOfWork on a fresh SQLite file in `folder` holding `base`'s tables."""
    engine = make_engine(f"sqlite:///{folder / 'service.db'}")
    base.metadata.create_all(engine)
    return UnitOfWork(sessionmaker(engine, expire_on_commit=False), tables, **options)


def recorded(uow: UnitOfWork, event_type: str | None = None) -> list[dict]:
    """Return the committed event payloads (of one type, if given), oldest first."""
    rows = uow.tables.outbox
    query = select(rows.event_type, rows.payload).order_by(rows.id)
    with uow.read() as session:
        return [orjson.loads(payload) for name, payload in session.execute(query)
                if event_type is None or name == event_type]


def as_handler(uow: UnitOfWork, handler: str, payload: dict) -> UnitOfWork:
    """Return a UnitOfWork that dedupes like the one an event handler gets for `payload`."""
    return UnitOfWork(uow.sessions, uow.tables, unique_rules=uow.unique_rules,
                      handled_event=f"{handler}:{payload['event_id']}")


def with_idempotency_key(uow: UnitOfWork, key: str, fingerprint: str = "f", command: str = "command") -> UnitOfWork:
    """Return a UnitOfWork like the one an RPC carrying an idempotency key gets."""
    return UnitOfWork(uow.sessions, uow.tables, unique_rules=uow.unique_rules,
                      idempotency=(answer_key(command, key), fingerprint), client_key=key)


ENVELOPE_FIELDS = ("event_id", "occurred_at", "version")


def recorded_fields(uow: UnitOfWork, event_type: str | None = None) -> list[dict]:
    """Like `recorded`, without the envelope: just each event's own fields."""
    return [{key: value for key, value in payload.items() if key not in ENVELOPE_FIELDS}
            for payload in recorded(uow, event_type)]
