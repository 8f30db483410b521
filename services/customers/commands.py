"""The customers service layer: one function per command, query or event, no nameko.

Each takes a `roster.uow.UnitOfWork` and, where it needs another service, a port for it
(e.g. `billing`, anything with `get_data_source(uuid)`), so RPC entrypoints, event handlers
and tests run the same code. The rules come from `domain`; the small helpers at the end are
the only code that writes rows.

Concurrency: every write locks the customer rows it changes (`store.lock`, id order) before
it reads their tags, attributes or ids, so concurrent writes to one customer queue instead
of losing each other's changes, and a merge re-checks after its locks that both customers
are still the ones it was asked about. Tags and attributes are written with
insert-or-ignore / upsert on their unique keys, so a writer that does not lock can never
turn a duplicate into a 500.
"""
import uuid as uuid_lib
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, update

from roster.database import dialect_insert, insert_ignore
from roster.errors import Conflict, NotFound, UnprocessableEvent, ValidationFailed, invalid
from roster.pagination import decode_cursor, keyset_page, page_size, within_budget
from roster.timestamps import render, utcnow
from roster.uow import Transaction, UnitOfWork
from services.customers import domain, merges, store, syncing
from services.customers.domain import Attribute
from services.customers.models import CustomAttribute, Customer, ExternalId, MergedCustomer, Tag
from services.customers.schemas import columns_of, customer_dict


@dataclass
class Loaded:
    """A locked customer row with its children as plain values, kept in step with what is written."""

    row: Customer  # or a Row of its columns (a new customer)
    external_ids: list[tuple[str, str, str | None]]  # (data_source_uuid, external_id, merged_from)
    tags: list[str]
    custom: dict[str, Attribute]

    def as_dict(self) -> dict:
        """Return the customer as the service answers it."""
        return customer_dict(columns_of(self.row), [(source, external_id) for source, external_id, _ in
                                                    self.external_ids],
                             list(self.tags), {key: attribute.value for key, attribute in self.custom.items()})


# ---- queries ------------------------------------------------------------------------------

def get_customer(uow: UnitOfWork, uuid: str, with_overrides: bool = False, attributes_with_history=None) -> dict:
    """Return one customer (with its `overrides` if asked, and with `historical_values` of the
    custom attributes `attributes_with_history` names: "custom.key[,custom.other]"); 404 if
    there is none."""
    with uow.read() as session:
        customer = store.read_by_uuid(session, uuid) if domain.findable(uuid) else None
        if customer is not None and with_overrides:
            customer["overrides"] = store.overrides_of(session, customer["id"])
        if customer is not None and attributes_with_history is not None:
            keys = domain.history_keys(attributes_with_history)
            customer["historical_values"] = {"custom": store.attribute_history(session, customer["id"], keys,
                                                                               domain.HISTORY_VALUES_MAX)}
    if customer is None:
        raise NotFound(f"Customer {uuid} not found", param="uuid")
    return customer


def get_survivor(uow: UnitOfWork, uuid: str) -> dict:
    """Return the customer now holding the merged-away customer `uuid`; 404 if `uuid` was not merged away."""
    with uow.read() as session:
        found = store.id_by_merged_uuid(session, uuid) if domain.findable(uuid) else None
        customer = store.read_by_id(session, found) if found is not None else None
    if customer is None:
        raise NotFound(f"Customer {uuid} was not merged into another", param="uuid")
    return customer


def find_customer(uow: UnitOfWork, data_source_uuid: str, external_id: str) -> dict:
    """Return the customer known by this external id in this data source; 404 if none."""
    with uow.read() as session:
        found = None
        if domain.findable(data_source_uuid) and domain.findable(external_id, domain.EXTERNAL_ID_MAX):
            found = store.id_by_external_id(session, data_source_uuid, external_id)
        customer = store.read_by_id(session, found) if found is not None else None
    if customer is None:
        raise NotFound(f"No customer with external_id {external_id} in data source {data_source_uuid}",
                       param="external_id")
    return customer


def list_customers(uow: UnitOfWork, filters: dict, cursor: str | None = None, per_page=None) -> dict:
    """Return `{entries, has_more, cursor}`: customers matching `filters`, oldest first.

    A page holds `per_page` customers (200 at most), fewer when they would exceed roster.pagination.PAGE_BYTES.
    """
    size = page_size(per_page)
    after_id = decode_cursor(cursor, after_id=int).get("after_id", 0)
    checked = domain.list_filters(filters or {})
    with uow.read() as session:
        rows = store.page(session, checked, after_id, size)
    rows, size = within_budget(rows, size)  # a record: at most domain.MAX_RECORD_BYTES
    customers, has_more, next_cursor = keyset_page(rows, size, lambda c: {"after_id": c["id"]})
    return {"entries": customers, "has_more": has_more, "cursor": next_cursor}


# ---- commands -----------------------------------------------------------------------------

# What a create runs, built once. Core applies the columns' Python defaults; `search_text`,
# which the model's ORM hook keeps, is set by create_customer.
INSERT_CUSTOMER = insert(Customer.__table__).returning(*Customer.__table__.c)
INSERT_EXTERNAL_ID = insert(ExternalId.__table__)


def create_customer(uow: UnitOfWork, data: dict, *, billing) -> dict:
    """Create a customer with its external id, tags and custom attributes; return it.

    With an idempotency key, a retry gets this answer back instead of a second customer.
    """
    new = domain.new_customer(data)
    overrides = syncing.overrides_after({}, data.get("overrides"))
    source = _data_source(billing, new.data_source_uuid)
    values = {**new.profile, "uuid": f"cus_{uuid_lib.uuid4()}", "overrides": overrides,
              "billing_system_type": new.billing_system_type or source.get("system") or "Import API"}
    values["search_text"] = domain.search_text(values.get("name"), values.get("company"), values.get("email"))
    with uow.write() as tx:
        # Core statements, not an ORM flush (a fifth of a create's CPU): the row comes back whole
        row = tx.session.execute(INSERT_CUSTOMER, values).one()
        tx.session.execute(INSERT_EXTERNAL_ID, {"customer_id": row.id, "data_source_uuid": new.data_source_uuid,
                                                "external_id": new.external_id})
        customer = Loaded(row, [(new.data_source_uuid, new.external_id, None)], [], {})
        _add_tags(tx, customer, new.tags)
        _write_attributes(tx, customer, new.custom)
        created = customer.as_dict()
        _cue_duplicate_check(tx, tx.record("customer_created", customer=created, reason="created"))
        return tx.result(created)


def update_customer(uow: UnitOfWork, uuid: str, changes: dict) -> dict:
    """Set the profile fields, tags (replaced) and custom values given; return the customer."""
    if not isinstance(changes, dict):
        raise ValidationFailed("the changes must be an object")
    attributes = changes.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise invalid("attributes", "must be an object with tags and custom")

    def change(tx: Transaction, customer: Loaded) -> None:
        _set_profile(customer, domain.profile(changes, current_status=customer.row.status))
        if "overrides" in changes:
            _set_overrides(customer, changes["overrides"])
        if "tags" in attributes:
            _replace_tags(tx, customer, attributes["tags"] or [])
        if "custom" in attributes:
            _write_attributes(tx, customer, domain.set_values(customer.custom, attributes["custom"] or {}))

    return _change(uow, {"uuid": uuid}, change)[0]


def add_tags(uow: UnitOfWork, who: dict, tags) -> list[dict]:
    """Add tags to the customer `{"uuid": ...}` or every customer `{"email": ...}`; return them."""
    return _change(uow, who, lambda tx, customer: _add_tags(tx, customer, domain.tags_to_add(customer.tags, tags)))


def remove_tags(uow: UnitOfWork, who: dict, tags) -> list[dict]:
    """Remove tags from the customer(s) named by `who`; return them."""
    return _change(uow, who, lambda tx, customer: _remove_tags(tx, customer,
                                                               domain.tags_to_remove(customer.tags, tags)))


def add_custom_attributes(uow: UnitOfWork, who: dict, entries, overrides=None) -> list[dict]:
    """Add typed custom attributes (`[{type, key, value, source}]`) to the customer(s) named by `who`;
    `overrides` marks or un-marks fields as overridden."""
    def change(tx: Transaction, customer: Loaded) -> None:
        _write_attributes(tx, customer, domain.added_attributes(customer.custom, entries))
        _set_overrides(customer, overrides)
    return _change(uow, who, change)


def update_custom_attributes(uow: UnitOfWork, who: dict, values, overrides=None) -> list[dict]:
    """Set custom values by key (`{key: value}`) on the customer(s) named by `who`."""
    def change(tx: Transaction, customer: Loaded) -> None:
        _write_attributes(tx, customer, domain.set_values(customer.custom, values))
        _set_overrides(customer, overrides)
    return _change(uow, who, change)


def remove_custom_attributes(uow: UnitOfWork, who: dict, keys, overrides=None) -> list[dict]:
    """Remove custom attributes by key from the customer(s) named by `who`.

    An attribute marked as overridden is kept (ChartMogul 4.11; the gateway's answer names it
    in `message`), unless the same request un-marks it with `overrides`.
    """
    def change(tx: Transaction, customer: Loaded) -> None:
        _set_overrides(customer, overrides)
        kept = syncing.overridden_custom(customer.row.overrides)
        _remove_attributes(tx, customer, [key for key in domain.keys_to_remove(customer.custom, keys)
                                          if key not in kept])
    return _change(uow, who, change)


def sync_customer(uow: UnitOfWork, data: dict, *, billing) -> dict:
    """Create or update the customer a billing system's connector has (contract: docs/notes on
    `sync_customer`); return it with `sync_outcome`: created, updated or unchanged.

    Found by (data_source_uuid, external_id), also when a merge took that id to another
    customer (that customer answers). None: created, as by `create_customer` (a customer
    deleted in Roster comes back). Found: every field given is set except those its
    overrides protect; `attributes.stripe` is replaced; nothing changed writes nothing.
    Two syncs of one new customer at once make one: the external id goes in with
    insert-or-ignore, and the loser drops its row and updates the winner's.
    """
    synced = syncing.synced_customer(data)
    system = synced.billing_system_type
    if system is None:
        system = _data_source(billing, synced.data_source_uuid).get("system") or "Import API"
    with uow.write() as tx:
        customer = _synced_customer(tx, synced)
        if customer is None:
            created = _create_synced(tx, synced, system)
            if created is not None:
                return tx.result({**created, "sync_outcome": "created"})
            customer = _synced_customer(tx, synced)  # a concurrent sync created it first
            if customer is None:
                raise Conflict("external_id: a concurrent change took this customer; sync it again",
                               param="external_id")
        before = customer.as_dict()
        if syncing.follows_source(customer.external_ids, synced.data_source_uuid, synced.external_id):
            _set_profile(customer, syncing.synced_values(synced, customer.row.overrides))
        after = _record_update(tx, customer, before)
        return tx.result({**after, "sync_outcome": "unchanged" if after == before else "updated"})


def _synced_customer(tx: Transaction, synced) -> Loaded | None:
    """Return the locked customer holding the synced external id, or None when no customer does."""
    session = tx.session
    for _ in range(5):  # a merge may move the id between the look-up and the lock: look again
        found = store.id_by_external_id(session, synced.data_source_uuid, synced.external_id)
        if found is None:
            return None
        rows = store.lock(session, [found])
        if rows and store.id_by_external_id(session, synced.data_source_uuid, synced.external_id) == found:
            return _load(session, rows)[0]
    raise Conflict("external_id: the customer keeps changing; sync it again", param="external_id")


def _create_synced(tx: Transaction, synced, system: str) -> dict | None:
    """Insert the synced customer; None (and nothing kept) if its external id was taken meanwhile."""
    session = tx.session
    row = Customer(uuid=f"cus_{uuid_lib.uuid4()}", billing_system_type=system,
                   stripe_attributes=synced.stripe or {}, **synced.profile)
    session.add(row)
    session.flush()
    taken = not insert_ignore(session, ExternalId.__table__, [{
        "customer_id": row.id, "data_source_uuid": synced.data_source_uuid, "external_id": synced.external_id}],
        ["data_source_uuid", "external_id"])
    if taken:
        session.delete(row)
        session.flush()
        return None
    created = Loaded(row, [(synced.data_source_uuid, synced.external_id, None)], [], {}).as_dict()
    _cue_duplicate_check(tx, tx.record("customer_created", customer=created, reason="synced"))
    return created


# This service's own cue, recorded beside a customer_created or customer_updated that may call
# for a duplicate merge (may_have_duplicate), to run merge_duplicates once it committed. Before,
# the service took every customer_created and customer_updated off the bus to drop nearly all.
DUPLICATE_CHECK = "customer_duplicate_check"


def _cue_duplicate_check(tx: Transaction, announced: dict) -> None:
    if may_have_duplicate(announced):
        tx.record(DUPLICATE_CHECK, uuid=_announced_customer(announced))


def merge_duplicates(uow: UnitOfWork, payload: dict) -> list[dict]:
    """Merge the custom-source duplicates of the customer a customer_duplicate_check (or a
    customer_created / customer_updated left by an earlier version) names into the connector's
    record (syncing.duplicate_merges); return the merges.

    Runs after the create or update committed. The customers of a pair are locked, and the
    pair is decided again once they are, so concurrent handlers make one merge per pair.
    """
    uuid = _announced_customer(payload)
    if uuid is None or not domain.findable(uuid):
        return []
    with uow.read() as session:  # most customers have no duplicate: decide that without a write
        found = store.id_by_uuid(session, uuid)
        if found is None or _duplicate_pair(session, found) is None:
            return []
    with uow.write() as tx:
        session = tx.session
        done = []
        for _ in range(10):  # each round merges one pair decided on locked rows
            pair = _duplicate_pair(session, found)
            if pair is None:
                break
            rows = store.lock(session, list(pair))
            if len(rows) != 2 or _duplicate_pair(session, found) != pair:
                continue
            loaded = {customer.row.id: customer for customer in _load(session, rows)}
            done.append(_merge(tx, loaded[pair[0]], loaded[pair[1]]))
            if pair[0] == found:
                break  # the announced customer is merged away
        return done


def may_have_duplicate(payload: dict) -> bool:
    """Whether a customer_created / customer_updated event can call for a duplicate merge at all: it
    names a customer (_announced_customer) and, for a creation, one with an email (duplicates are
    found by email; a later email arrives as a customer_updated)."""
    if _announced_customer(payload) is None:
        return False
    return "customer" not in payload or bool((payload.get("customer") or {}).get("email"))


def _announced_customer(payload: dict) -> str | None:
    """The uuid a customer_created (not by an unmerge), an email-changing customer_updated or a
    customer_duplicate_check names."""
    if not isinstance(payload, dict):
        return None
    if "customer" in payload:
        if payload.get("reason") == "unmerged":  # the user split them: do not merge them back
            return None
        return (payload.get("customer") or {}).get("uuid")
    if "changes" in payload:
        return payload.get("uuid") if "email" in (payload.get("changes") or {}) else None
    uuid = payload.get("uuid")
    return uuid if isinstance(uuid, str) else None


def _duplicate_pair(session, customer_id: int) -> tuple[int, int] | None:
    """The first (from id, into id) merge the customer's duplicates call for, or None."""
    me = store.duplicate_key(session, customer_id)
    if me is None or not me["email_lower"]:
        return None
    merges_wanted = syncing.duplicate_merges(me, store.same_email(session, me["email_lower"]))
    return merges_wanted[0] if merges_wanted else None


def delete_customer(uow: UnitOfWork, uuid: str) -> None:
    """Delete a customer; `customer_deleted` tells the services holding its records."""
    with uow.write() as tx:
        for customer in _locked(tx, {"uuid": uuid}):
            _delete(tx, customer, reason="deleted")


def discard_customer(uow: UnitOfWork, uuid: str) -> None:
    """Undo a create whose primary contact could not be created: delete the customer, and
    forget the create's stored answer, so a retry with the same Idempotency-Key creates anew."""
    with uow.write() as tx:
        for customer in _locked(tx, {"uuid": uuid}):
            _delete(tx, customer, reason="create_abandoned")
        tx.forget_result("create_customer")


def merge_customers(uow: UnitOfWork, from_ref: dict, into_ref: dict) -> dict:
    """Merge one customer into another; return `{from_uuid, into}`.

    Both rows are locked in id order; a customer merged or deleted while this merge waited is
    a 422 (it no longer exists) or a 409 (its external id now names another customer).
    """
    with uow.write() as tx:
        session = tx.session
        from_id, into_id = _resolve(session, from_ref, "from"), _resolve(session, into_ref, "into")
        if from_id == into_id:
            raise invalid("from", "a customer cannot be merged into itself")
        rows = store.lock(session, [from_id, into_id])
        if (_resolve(session, from_ref, "from"), _resolve(session, into_ref, "into")) != (from_id, into_id) \
                or len(rows) != 2:
            raise Conflict("from: a concurrent merge changed these customers; look them up again", param="from")
        loaded = {customer.row.id: customer for customer in _load(session, rows)}
        return _merge(tx, loaded[from_id], loaded[into_id])


def _merge(tx: Transaction, merged: Loaded, into: Loaded) -> dict:
    """Merge one locked customer into another locked one; record customer_merged; return `{from_uuid, into}`."""
    session = tx.session
    from_id, into_id = merged.row.id, into.row.id
    before = into.as_dict()
    gained_tags = domain.merged_tags(into.tags, merged.tags)[len(into.tags):]
    gained_custom = domain.merged_custom(into.custom, merged.custom)
    domain.check_merge(external_ids=len(into.external_ids) + len(merged.external_ids),
                       tags=len(into.tags) + len(gained_tags), custom=len(into.custom) + len(gained_custom))
    session.execute(update(ExternalId).where(ExternalId.customer_id == from_id).values(
        customer_id=into_id, merged_from=func.coalesce(ExternalId.merged_from, merged.row.uuid)))
    _add_tags(tx, into, gained_tags)
    _write_attributes(tx, into, gained_custom)
    _remember_merged(tx, merged, into_id)
    session.delete(merged.row)
    session.flush()
    into = _load(session, {into_id: into.row})[0]  # the ids in their stored order
    tx.record("customer_merged", from_uuid=merged.row.uuid, into_uuid=into.row.uuid,
              into_external_id=into.external_ids[0][1],
              moved_external_ids=[{"data_source_uuid": source, "external_id": external_id}
                                  for source, external_id, _ in merged.external_ids])
    return {"from_uuid": merged.row.uuid, "into": _record_update(tx, into, before)}


def unmerge_customer(uow: UnitOfWork, data: dict) -> dict:
    """Make the external id a merge brought a customer of its own again; return `{from, customer}`:
    the customer it leaves (after) and the new one.

    The new customer gets the profile, tags and custom attributes its external id's customer
    had when it was merged (`merges.restored`). The merged customer's row is locked, as merges
    lock theirs, so an unmerge and a merge or another unmerge of that customer run one after
    the other: one that finds the customer merged away or deleted meanwhile is a 409, one that
    finds the external id gone is a 422. `customer_created` (the new customer),
    `customer_updated` (the one it leaves) and `customer_unmerged` tell the other services.
    """
    asked = merges.unmerge_request(data)
    with uow.write() as tx:
        session = tx.session
        found = store.id_by_uuid(session, asked.customer_uuid) if domain.findable(asked.customer_uuid) else None
        if found is None:
            raise NotFound(f"Customer {asked.customer_uuid} not found", param="customer_uuid")
        rows = store.lock(session, [found])
        if not rows:
            raise Conflict("customer_uuid: the customer was merged or deleted meanwhile; look it up again",
                           param="customer_uuid")
        customer = _load(session, rows)[0]
        former = merges.former_customer(customer.external_ids, data_source_uuid=asked.data_source_uuid,
                                        external_id=asked.external_id, customer_uuid=asked.customer_uuid)
        new = merges.restored(store.merged_snapshot(session, former),
                              billing_system_type=customer.row.billing_system_type)
        row = Customer(uuid=f"cus_{uuid_lib.uuid4()}", **new.profile)
        session.add(row)
        session.flush()
        pair = (asked.data_source_uuid, asked.external_id)
        session.execute(update(ExternalId).where(
            ExternalId.customer_id == customer.row.id, ExternalId.data_source_uuid == pair[0],
            ExternalId.external_id == pair[1]).values(customer_id=row.id, merged_from=None))
        session.execute(delete(MergedCustomer).where(MergedCustomer.uuid == former))
        created = Loaded(row, [(*pair, None)], [], {})
        _add_tags(tx, created, new.tags)
        _write_attributes(tx, created, new.custom)
        new_customer = created.as_dict()
        tx.record("customer_created", customer=new_customer, reason="unmerged")
        before = customer.as_dict()
        customer.external_ids = [held for held in customer.external_ids if held[:2] != pair]
        left = _record_update(tx, customer, before)
        tx.record("customer_unmerged", from_uuid=customer.row.uuid, new_uuid=row.uuid, former_uuid=former,
                  data_source_uuid=pair[0], external_id=pair[1],
                  move_to_new_customer=asked.move_to_new_customer, new_customer=new_customer)
        return tx.result({"from": left, "customer": new_customer})


# ---- events from other services -----------------------------------------------------------

def on_data_source_deleted(uow: UnitOfWork, payload: dict) -> None:
    """Delete the customers whose only data source this was; others lose that source's external ids."""
    source = _event_text(payload, "uuid")
    with uow.write() as tx:
        rows = store.lock(tx.session, store.ids_in_data_source(tx.session, source))
        for customer in _load(tx.session, rows):
            if all(held == source for held, _, _ in customer.external_ids):
                _delete(tx, customer, reason="data_source_deleted")
                continue
            before = customer.as_dict()
            tx.session.execute(delete(ExternalId).where(
                ExternalId.customer_id == customer.row.id, ExternalId.data_source_uuid == source))
            customer.external_ids = [held for held in customer.external_ids if held[0] != source]
            _record_update(tx, customer, before)


def on_customer_metrics_changed(uow: UnitOfWork, payload: dict) -> None:
    """Apply billing's MRR, ARR, status, customer-since and net payments, if newer than the last applied."""
    uuid = _event_text(payload, "customer_uuid")
    with uow.write() as tx:
        row = store.lock_by_uuid(tx.session, uuid) if domain.findable(uuid) else None
        if row is None:  # the customer is gone: nothing to project
            return
        # without its ids, tags and attributes (three reads): metrics change none of them, and
        # customer_updated carries only what changed
        customer = Loaded(row, [], [], {})
        values = domain.projected_metrics(payload, last_sequence=row.metrics_sequence, lead_status=row.lead_status)
        if values is None:
            return
        before = customer.as_dict()
        _set_profile(customer, values)
        _record_update(tx, customer, before)


def _event_text(payload: dict, field: str) -> str:
    value = payload.get(field) if isinstance(payload, dict) else None
    if not isinstance(value, str) or not value:
        raise UnprocessableEvent(f"{field}: missing from the event", param=field)
    return value


# ---- the shared steps ---------------------------------------------------------------------

def _change(uow: UnitOfWork, who: dict, change) -> list[dict]:
    """Lock the customer(s) named by `who`, apply `change(tx, customer)` to each; return them after."""
    with uow.write() as tx:
        changed = []
        for customer in _locked(tx, who):
            before = customer.as_dict()
            change(tx, customer)
            changed.append(_record_update(tx, customer, before))
        return changed


def _locked(tx: Transaction, who: dict) -> list[Loaded]:
    """Return the customer `{"uuid": ...}` (404 if none) or every customer `{"email": ...}`
    (404 if none), their rows locked."""
    session = tx.session
    if "uuid" in who:
        uuid = who["uuid"]
        row = store.lock_by_uuid(session, uuid) if domain.findable(uuid) else None
        if row is None:
            raise NotFound(f"Customer {uuid} not found", param="uuid")
        return _load(session, {row.id: row})
    email = domain.email_address(who.get("email")).lower()
    ids = store.ids_by_email(session, email) if email else []
    rows = {customer_id: row for customer_id, row in store.lock(session, ids).items()
            if row.email_lower == email}  # the email may have changed while we waited for the lock
    if not rows:
        raise NotFound(f"No customer has the email {who.get('email')}", param="email")
    return _load(session, rows)


def _load(session, rows: dict[int, Customer]) -> list[Loaded]:
    """Return the locked rows with their children, in id order."""
    children = store.details(session, rows)
    return [Loaded(rows[customer_id], external_ids, tags,
                   {key: Attribute(*attribute) for key, attribute in custom.items()})
            for customer_id, (external_ids, tags, custom) in sorted(children.items())]


def _resolve(session, ref, side: str) -> int:
    """Return the id of the customer a merge names by uuid or by external id; 422 if there is none."""
    if not isinstance(ref, dict):
        raise invalid(side, "give customer_uuid, or data_source_uuid and external_id")
    if ref.get("customer_uuid"):
        uuid = ref["customer_uuid"]
        found = store.id_by_uuid(session, uuid) if domain.findable(uuid) else None
        if found is None:
            raise invalid(f"{side}.customer_uuid", f"no customer {str(uuid)[:100]!r}")
        return found
    if ref.get("data_source_uuid") and ref.get("external_id"):
        source, external_id = ref["data_source_uuid"], ref["external_id"]
        found = None
        if domain.findable(source) and domain.findable(external_id, domain.EXTERNAL_ID_MAX):
            found = store.id_by_external_id(session, source, external_id)
        if found is None:
            raise invalid(f"{side}.external_id", f"no customer with external_id {str(external_id)[:100]!r} "
                                                 f"in data source {str(source)[:100]!r}")
        return found
    raise invalid(side, "give customer_uuid, or data_source_uuid and external_id")


def _data_source(billing, data_source_uuid: str) -> dict:
    try:
        return billing.get_data_source(data_source_uuid)
    except NotFound:
        raise invalid("data_source_uuid", f"no data source {data_source_uuid} exists")


def _record_update(tx: Transaction, customer: Loaded, before: dict) -> dict:
    """Record `customer_updated` with the fields that changed (if any did); return the customer after."""
    after = customer.as_dict()
    changes = domain.changed_fields(before, after)
    changes.pop("updated_at", None)
    if not changes:
        return after
    customer.row.updated_at = utcnow()
    _cue_duplicate_check(tx, tx.record("customer_updated", uuid=customer.row.uuid, changes=changes,
                                       updated_at=render(customer.row.updated_at)))
    return customer.as_dict()


def _remember_merged(tx: Transaction, merged: Loaded, into_id: int) -> None:
    """Keep what the merged-away customer was (for an unmerge), with the snapshots it kept itself."""
    tx.session.execute(update(MergedCustomer).where(MergedCustomer.customer_id == merged.row.id)
                       .values(customer_id=into_id))
    columns = {field: getattr(merged.row, field) for field in merges.SNAPSHOT_FIELDS + merges.SNAPSHOT_TIMES}
    tx.session.execute(insert(MergedCustomer).values(
        customer_id=into_id, uuid=merged.row.uuid, snapshot=merges.snapshot(columns, merged.tags, merged.custom),
        merged_at=utcnow()))


def _delete(tx: Transaction, customer: Loaded, *, reason: str) -> None:
    gone = customer.as_dict()
    tx.session.delete(customer.row)  # its ids, tags and attributes go by ON DELETE CASCADE
    tx.session.flush()
    tx.record("customer_deleted", uuid=gone["uuid"], external_ids=gone["external_ids"],
              data_source_uuids=gone["data_source_uuids"], reason=reason)


# ---- the only code that writes a customer's rows ------------------------------------------

def _set_overrides(customer: Loaded, given) -> None:
    if given is not None:
        overrides = syncing.overrides_after(customer.row.overrides, given)
        if overrides != (customer.row.overrides or {}):
            customer.row.overrides = overrides


def _set_profile(customer: Loaded, values: dict) -> None:
    for name, value in values.items():
        if getattr(customer.row, name) != value:
            setattr(customer.row, name, value)


def _add_tags(tx: Transaction, customer: Loaded, tags: list[str]) -> None:
    insert_ignore(tx.session, Tag.__table__, [{"customer_id": customer.row.id, "tag": tag} for tag in tags],
                  ["customer_id", "tag"])
    customer.tags.extend(tag for tag in tags if tag not in customer.tags)


def _remove_tags(tx: Transaction, customer: Loaded, tags: list[str]) -> None:
    if tags:
        tx.session.execute(delete(Tag).where(Tag.customer_id == customer.row.id, Tag.tag.in_(tags)))
    customer.tags[:] = [tag for tag in customer.tags if tag not in tags]


def _replace_tags(tx: Transaction, customer: Loaded, tags) -> None:
    wanted = domain.clean_tags(tags)
    _remove_tags(tx, customer, [tag for tag in customer.tags if tag not in wanted])
    _add_tags(tx, customer, domain.tags_to_add(customer.tags, wanted))


def _write_attributes(tx: Transaction, customer: Loaded, attributes: dict[str, Attribute]) -> None:
    """Insert or update these attributes by key (an upsert: concurrent writers of one new key both succeed)."""
    if not attributes:
        return
    rows = [{"customer_id": customer.row.id, "key": key, "type": attribute.type, "value": attribute.value,
             "source": attribute.source} for key, attribute in attributes.items()]
    dialect = tx.session.get_bind().dialect.name
    statement = dialect_insert(dialect)(CustomAttribute.__table__).values(rows)
    tx.session.execute(statement.on_conflict_do_update(
        index_elements=["customer_id", "key"],
        set_={column: statement.excluded[column] for column in ("type", "value", "source")}))
    store.add_attribute_changes(tx.session, customer.row.id, [
        (key, attribute.value, attribute.source, key not in customer.custom) for key, attribute in attributes.items()
        if key not in customer.custom or customer.custom[key].value != attribute.value])
    customer.custom.update(attributes)


def _remove_attributes(tx: Transaction, customer: Loaded, keys: list[str]) -> None:
    if keys:
        tx.session.execute(delete(CustomAttribute).where(
            CustomAttribute.customer_id == customer.row.id, CustomAttribute.key.in_(keys)))
        store.add_attribute_changes(tx.session, customer.row.id, [
            (key, None, customer.custom[key].source, False) for key in keys if key in customer.custom])
    for key in keys:
        customer.custom.pop(key, None)
