"""The avatars service layer: one function per query, event or timer tick, no nameko.

Each takes a `roster.uow.UnitOfWork`. Those that resolve avatars take `fetchers`
(`{source: fetch(key) -> Image | None}`, as `domain.resolve` wants them); the update handler
also takes `customers`, a port with `get_customer(uuid)`.

Remote fetches never run inside a transaction: read what to resolve, resolve (seconds, at
worst), then store in a short write transaction that first checks the customer is not gone
and that nothing resolved from a newer version of the customer was stored meanwhile.
"""
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping

import eventlet

from roster import tracing
from roster.breaker import CircuitOpen
from roster.errors import NotFound, RosterError, ServiceUnavailable, UnprocessableEvent, invalid
from roster.timestamps import parse, utcnow
from roster.uow import UnitOfWork
from services.avatars import domain, store
from services.avatars.domain import Fetcher
from services.avatars.models import CachedAvatar
from services.avatars.schemas import dump_avatar, resolved_event

log = logging.getLogger(__name__)

CLAIM = timedelta(minutes=5)  # another process may refresh a claimed avatar after this
REFRESH_BATCH = 10  # avatars claimed per transaction
REFRESH_PER_TICK = 500  # avatars refreshed per timer tick, at most
FETCH_CONCURRENCY = 10  # avatars of a batch resolved at once (as many as the handler's workers were)


@dataclass(frozen=True)
class Snapshot:
    """What to resolve an avatar from: the customer's avatar inputs as of one version of its record."""

    inputs: dict
    version: datetime | None

    @property
    def customer_uuid(self) -> str:
        return self.inputs["uuid"]


def get_avatar(uow: UnitOfWork, customer_uuid: str) -> dict:
    """Return the customer's cached avatar {content_type, body (base64), etag, source}; 404 if none."""
    if not isinstance(customer_uuid, str) or not customer_uuid:
        raise invalid("customer_uuid", "must be a customer uuid")
    with uow.read() as session:
        avatar = store.cached(session, customer_uuid)
        if avatar is None:
            raise NotFound(f"No avatar of customer {customer_uuid} has been resolved", param="customer_uuid")
        return dump_avatar(avatar)


def on_customer_created(uow: UnitOfWork, payload: dict, *, fetchers: Mapping[str, Fetcher]) -> None:
    """Resolve and cache the new customer's avatar (one event; a batch runs `resolve_created`, then
    `store_created` for each event)."""
    snapshot = _created_snapshot(payload)
    known = _known(uow, snapshot.customer_uuid)
    if known is SKIP or _overtaken(snapshot, known):
        return
    _store(uow, snapshot, _resolve(snapshot, fetchers), cached_before=known is not None)


@dataclass(frozen=True)
class Prepared:
    """A new customer's avatar, resolved before the batch's transaction began."""

    snapshot: Snapshot
    resolved: "Resolved"
    cached_before: bool


def resolve_created(uow: UnitOfWork, payloads: list[dict], *, fetchers: Mapping[str, Fetcher],
                    concurrency: int = FETCH_CONCURRENCY) -> list:
    """The prepare phase of a batch of customer_created events (roster.handlers, `prepare=`): read
    what is cached of their customers in one go, then resolve their avatars outside any
    transaction, up to `concurrency` at once. One value per event, for `store_created`: a
    Prepared, None (nothing to do) or the exception that fails the event."""
    snapshots: list = []
    for payload in payloads:
        try:
            snapshots.append(_created_snapshot(payload))
        except RosterError as error:
            snapshots.append(error)
    uuids = [snapshot.customer_uuid for snapshot in snapshots if isinstance(snapshot, Snapshot)]
    with uow.read() as session:
        gone, known = store.known_many(session, uuids)
    todo = []
    for payload, snapshot in zip(payloads, snapshots):
        if isinstance(snapshot, Snapshot) and (snapshot.customer_uuid in gone
                                               or _overtaken(snapshot, known.get(snapshot.customer_uuid))):
            snapshot = None
        todo.append((payload, snapshot))

    def prepare(item):
        payload, snapshot = item
        if not isinstance(snapshot, Snapshot):
            return snapshot  # None, or the event's error
        with tracing.event_bound(payload):  # what the sources' failures log is tied to the event's request
            return Prepared(snapshot, _resolve(snapshot, fetchers), snapshot.customer_uuid in known)

    remote = [s for _, s in todo if isinstance(s, Snapshot) and _asks_a_source(s, fetchers)]
    if len(remote) < 2 or concurrency < 2:
        return [prepare(item) for item in todo]
    return list(eventlet.GreenPool(concurrency).imap(prepare, todo))  # the sources' answers overlap


def store_created(uow: UnitOfWork, payload: dict, prepared: Prepared | None) -> None:
    """Cache one new customer's avatar, resolved by `resolve_created` (within a batch's transaction)."""
    if prepared is not None:
        _store(uow, prepared.snapshot, prepared.resolved, cached_before=prepared.cached_before)


def store_created_many(uow: UnitOfWork, payloads: list[dict], prepared: list) -> None:
    """Cache a batch's new customers' avatars, resolved by `resolve_created`, as `store_created`
    would one by one: the usual new customers in one insert, each announced under its own event's
    request id; the rest (an avatar cached meanwhile, a customer gone) through `_store`."""
    first, rest, seen = [], [], set()
    for payload, value in zip(payloads, prepared):
        if value is None:
            continue
        uuid = value.snapshot.customer_uuid
        (rest if value.cached_before or uuid in seen else first).append((payload, value))
        seen.add(uuid)
    with uow.write() as tx:
        rows = [_avatar_values(value.snapshot, value.resolved) for _, value in first]
        inserted = store.insert_many_unless_gone(tx.session, rows)
        for (payload, value), values in zip(first, rows):
            if values["customer_uuid"] in inserted:
                with tracing.event_bound(payload):
                    tx.record("avatar_resolved", **resolved_event(CachedAvatar(**values)))
            else:
                rest.append((payload, value))
        for payload, value in rest:
            with tracing.event_bound(payload):
                _store(uow, value.snapshot, value.resolved, cached_before=value.cached_before)


def _created_snapshot(payload: dict) -> Snapshot:
    customer = _field(payload, "customer", dict)
    _field(customer, "uuid", str)
    return Snapshot(domain.avatar_inputs(customer), _version(customer.get("updated_at"), payload))


def _overtaken(snapshot: Snapshot, known) -> bool:
    """Whether an update overtook this creation and was resolved already."""
    return known is not None and not domain.supersedes(snapshot.version, known.customer_updated_at)


def _asks_a_source(snapshot: Snapshot, fetchers: Mapping[str, Fetcher]) -> bool:
    return any(lookup.source in fetchers for lookup in domain.resolution_order(snapshot.inputs))


def on_customer_updated(uow: UnitOfWork, payload: dict, *, fetchers: Mapping[str, Fetcher], customers) -> None:
    """Resolve the avatar again when the change touches what it depends on (domain.refresh_kind).

    A lookup reads the customer back from the customers service, so updates delivered out of
    order still end with the avatar of the current record; while that service is away, the
    change is applied to the fields this service holds. A new initial needs no lookup.
    """
    customer_uuid = _field(payload, "uuid", str)
    changes = payload.get("changes") or {}
    known = _known(uow, customer_uuid)
    if known is SKIP:
        return
    old, source, etag = (_inputs_of(known), known.source, known.etag) if known is not None else (None, None, None)
    kind = domain.refresh_kind(old, changes, source, etag)
    if kind in ("initial", "remember"):  # no lookup: the event's own values, ordered by its time
        snapshot = Snapshot(domain.with_changes(old, changes), _version(payload.get("occurred_at")))
        if kind == "initial":
            _resolve_and_store(uow, snapshot, {}, cached_before=True)
        else:
            _remember(uow, snapshot)
    elif kind == "fetch":
        snapshot = _current(customers, customer_uuid, old, changes, payload)
        if snapshot is not None:
            _resolve_and_store(uow, snapshot, fetchers, cached_before=known is not None)


def on_customer_deleted(uow: UnitOfWork, payload: dict) -> None:
    """Forget the deleted customer's avatar, for good."""
    _forget(uow, _field(payload, "uuid", str))


def on_customer_merged(uow: UnitOfWork, payload: dict) -> None:
    """Forget the merged-away customer's avatar (the survivor's changes arrive as customer_updated)."""
    _forget(uow, _field(payload, "from_uuid", str))


def refresh_stale(uow: UnitOfWork, *, fetchers: Mapping[str, Fetcher], max_age: timedelta,
                  limit: int = REFRESH_PER_TICK) -> int:
    """Resolve again the avatars older than `max_age` (incomplete ones sooner); return how many.

    An avatar refreshed now is fetched after `now`, so one tick never takes it twice.
    """
    now = utcnow()
    complete_before, incomplete_before = domain.stale_before(now, max_age)
    refreshed = 0
    while refreshed < limit:
        with uow.write() as tx:
            claimed = store.claim_stale(tx.session, complete_before=complete_before,
                                        incomplete_before=incomplete_before, now=now, claim_until=now + CLAIM,
                                        limit=min(REFRESH_BATCH, limit - refreshed))
            snapshots = [Snapshot(_inputs_of(row), row.customer_updated_at) for row in claimed]
        if not snapshots:
            break
        for snapshot in snapshots:
            _resolve_and_store(uow, snapshot, fetchers, cached_before=True)
            refreshed += 1
    return refreshed


# ---- resolving and storing -----------------------------------------------------------------------

@dataclass(frozen=True)
class Resolved:
    """An avatar as resolved for a snapshot, and whether a source failed on the way."""

    avatar: domain.Avatar
    incomplete: bool


def _resolve(snapshot: Snapshot, fetchers: Mapping[str, Fetcher]) -> Resolved:
    """Resolve the snapshot's avatar (remote sources first); run it outside any transaction."""
    failed = []

    def report(source: str, error: Exception) -> None:
        # an open circuit was logged once when it opened; each lookup it skips is not news
        level = logging.DEBUG if isinstance(error, CircuitOpen) else logging.WARNING
        log.log(level, "avatar of %s: source %s failed: %s: %s", snapshot.customer_uuid, source,
                type(error).__name__, error)
        failed.append(source)

    return Resolved(domain.resolve(snapshot.inputs, fetchers, report=report), bool(failed))


def _resolve_and_store(uow: UnitOfWork, snapshot: Snapshot, fetchers: Mapping[str, Fetcher], *,
                       cached_before: bool = False) -> None:
    _store(uow, snapshot, _resolve(snapshot, fetchers), cached_before=cached_before)


def _store(uow: UnitOfWork, snapshot: Snapshot, resolved: Resolved, *, cached_before: bool = False) -> None:
    """Store a resolved avatar unless the customer is gone or a newer version of it is stored.

    `cached_before`: an avatar was cached when the event was read, so it is most likely still
    there: lock it first rather than try to insert one.
    """
    avatar = resolved.avatar
    values = _avatar_values(snapshot, resolved)
    with uow.write() as tx:
        row = None
        if cached_before:
            if store.is_gone(tx.session, snapshot.customer_uuid):
                return
            row = store.cached(tx.session, snapshot.customer_uuid, lock=True)
        if row is None:  # the usual case, a new customer: one statement
            if store.insert_unless_gone(tx.session, values):
                tx.record("avatar_resolved", **resolved_event(CachedAvatar(**values)))
                return
            if store.is_gone(tx.session, snapshot.customer_uuid):
                return
            row = store.cached(tx.session, snapshot.customer_uuid, lock=True)
        if not domain.supersedes(snapshot.version, row.customer_updated_at):
            return  # resolved from an older record than the one stored meanwhile
        changed = (row.etag, row.source) != (avatar.etag, avatar.source)
        for name, value in values.items():
            setattr(row, name, value)
        if changed:
            tx.record("avatar_resolved", **resolved_event(row))


def _avatar_values(snapshot: Snapshot, resolved: Resolved) -> dict:
    """The cached avatar row of a resolved avatar."""
    avatar = resolved.avatar
    return {
        **{field: snapshot.inputs.get(field) for field in domain.REFRESH_FIELDS},
        "customer_uuid": snapshot.customer_uuid, "source": avatar.source, "content_type": avatar.content_type,
        "body": avatar.body, "etag": avatar.etag, "fetched_at": utcnow(), "incomplete": resolved.incomplete,
        "claimed_until": None, "customer_updated_at": snapshot.version,
    }


def _remember(uow: UnitOfWork, snapshot: Snapshot) -> None:
    """Keep a newer name or company with the cached image (a later initial draws it), redrawing nothing."""
    with uow.write() as tx:
        store.remember(tx.session, snapshot.customer_uuid,
                       {field: snapshot.inputs.get(field) for field in domain.INITIAL_FIELDS}, snapshot.version)


def _current(customers, customer_uuid: str, old: dict | None, changes: dict, payload: dict) -> Snapshot | None:
    """Return the customer's current avatar inputs; None when it no longer exists."""
    try:
        customer = customers.get_customer(customer_uuid)
    except NotFound:
        return None  # deleted since: its customer_deleted event removes the avatar
    except ServiceUnavailable:
        if old is None:
            raise  # nothing to apply the changes to: the handler retries later
        log.warning("customers service away: avatar of %s resolved from the event's changes", customer_uuid)
        return Snapshot(domain.with_changes(old, changes), _version(payload.get("occurred_at")))
    return Snapshot(domain.avatar_inputs(customer), _version(customer.get("updated_at"), payload))


def _forget(uow: UnitOfWork, customer_uuid: str) -> None:
    with uow.write() as tx:
        store.mark_gone(tx.session, customer_uuid)
        store.remove(tx.session, customer_uuid)


def _inputs_of(avatar: CachedAvatar) -> dict:
    return {"uuid": avatar.customer_uuid, **{field: getattr(avatar, field) for field in domain.REFRESH_FIELDS}}


SKIP = object()  # _known's answer when there is nothing to do


def _known(uow: UnitOfWork, customer_uuid: str):
    """Return what is cached of the customer (store.KNOWN_COLUMNS, None if nothing), or SKIP when this
    event was handled before (skips the fetches; the write would skip anyway) or the customer is gone."""
    with uow.read() as session:
        found = store.status(session, customer_uuid, uow.handled_event)
    return SKIP if found.handled or found.gone else found.known


def _version(*candidates) -> datetime | None:
    """Return the first candidate that is a timestamp (a dict stands for an event: its occurred_at)."""
    for candidate in candidates:
        if isinstance(candidate, dict):
            candidate = candidate.get("occurred_at")
        try:
            parsed = parse(candidate, "updated_at")
        except RosterError:
            continue
        if parsed is not None:
            return parsed
    return None


def _field(payload: dict, name: str, kind: type):
    value = payload.get(name) if isinstance(payload, dict) else None
    if not isinstance(value, kind) or not value:
        raise UnprocessableEvent(f"{name}: missing from the event or not a {kind.__name__}", param=name)
    return value
