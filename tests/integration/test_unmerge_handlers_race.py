"""The consumers of `customer_unmerged` (contacts, activities) racing the merge handlers on the
configured database: an unmerge handled at the same moment as the merge it undoes (arriving out
of order) or as a merge of the customer it leaves ends with the same records in the same places.

Each handler call gets its own UnitOfWork, as each nameko worker does, and is retried when it
fails (a deadlock PostgreSQL broke, say), as the broker redelivers it. Run with
`DATABASE_URL=postgresql://...`; on SQLite write transactions never overlap and this holds by
construction.
"""
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from roster import config, migrations
from roster.database import make_engine
from roster.events import envelope
from roster.testing import as_handler
from roster.uow import AlreadyHandled, UnitOfWork
from services.activities import commands as activities
from services.activities.models import Base as ActivitiesBase, Note, bookkeeping as activities_books
from services.contacts import commands as contacts
from services.contacts.models import UNIQUE_RULES, Base as ContactsBase, Contact, bookkeeping as contacts_books

DS = "ds_11111111-1111-1111-1111-111111111111"
ROUNDS = 8
TRIES = 8


def sessions_of(service: str, base):
    engine = make_engine(config.database_url(service), config.database_schema(service))
    migrations.upgrade(engine, service, base.metadata)
    return engine, sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def contact_sessions(own_database):
    engine, sessions = sessions_of("contacts", ContactsBase)
    yield sessions
    engine.dispose()


@pytest.fixture
def activity_sessions(own_database):
    engine, sessions = sessions_of("activities", ActivitiesBase)
    yield sessions
    engine.dispose()


class Customers:
    """The customers service's `get_customer`, for any uuid."""

    def get_customer(self, uuid):
        return {"uuid": uuid, "external_id": f"ext-{uuid}", "data_source_uuid": DS, "data_source_uuids": [DS]}


def handled(handler, uow_of, payload, **ports):
    """Run a handler as its entrypoint does, again after a failure (the broker's redelivery)."""
    for attempt in range(TRIES):
        try:
            handler(uow_of(handler.__name__, payload), payload, **ports)
            return
        except AlreadyHandled:
            return
        except Exception:
            if attempt == TRIES - 1:
                raise


def at_once(*calls):
    start = threading.Barrier(len(calls))

    def run(call):
        start.wait()
        call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        list(pool.map(run, calls))


def names():
    tag = secrets.token_hex(4)
    return tuple(f"cus_{who}_{tag}" for who in ("gone", "kept", "new", "last"))


def merged(from_uuid, into_uuid):
    return envelope(from_uuid=from_uuid, into_uuid=into_uuid, into_external_id=f"ext-{into_uuid}",
                    moved_external_ids=[])


def unmerged(former, from_uuid, new_uuid):
    return envelope(from_uuid=from_uuid, new_uuid=new_uuid, former_uuid=former, data_source_uuid=DS,
                    external_id=f"ext-{former}", move_to_new_customer=["notes"],
                    new_customer={"uuid": new_uuid, "name": "Gone"})


# ---- contacts ------------------------------------------------------------------------------------

def contacts_uow(sessions):
    return lambda handler, payload: as_handler(UnitOfWork(sessions, contacts_books, unique_rules=UNIQUE_RULES),
                                               handler, payload)


def owners_of_contacts(sessions, *uuids):
    with sessions() as session:
        rows = session.execute(select(Contact.first_name, Contact.customer_uuid, Contact.position)
                               .where(Contact.first_name.in_(uuids))).all()
    return {first_name: (customer, position) for first_name, customer, position in rows}


def add_contact(sessions, customer_uuid, name):
    uow = UnitOfWork(sessions, contacts_books, unique_rules=UNIQUE_RULES)
    contacts.create_contact(uow, {"customer_uuid": customer_uuid, "data_source_uuid": DS, "first_name": name},
                            customers=Customers(), billing=None)


def test_contacts_an_unmerge_racing_the_merge_it_undoes_ends_the_same(contact_sessions):
    uow_of = contacts_uow(contact_sessions)
    for _ in range(ROUNDS):
        gone, kept, new, _last = names()
        add_contact(contact_sessions, gone, f"A-{gone}")
        add_contact(contact_sessions, kept, f"K-{gone}")

        at_once(lambda: handled(contacts.on_customer_merged, uow_of, merged(gone, kept), customers=Customers()),
                lambda: handled(contacts.on_customer_unmerged, uow_of, unmerged(gone, kept, new)))

        assert owners_of_contacts(contact_sessions, f"A-{gone}", f"K-{gone}") == {
            f"A-{gone}": (new, 1), f"K-{gone}": (kept, 1)}


def test_contacts_an_unmerge_racing_a_merge_of_the_customer_it_leaves(contact_sessions):
    uow_of = contacts_uow(contact_sessions)
    for _ in range(ROUNDS):
        gone, kept, new, last = names()
        add_contact(contact_sessions, gone, f"A-{gone}")
        add_contact(contact_sessions, kept, f"K-{gone}")
        handled(contacts.on_customer_merged, uow_of, merged(gone, kept), customers=Customers())

        at_once(lambda: handled(contacts.on_customer_merged, uow_of, merged(kept, last), customers=Customers()),
                lambda: handled(contacts.on_customer_unmerged, uow_of, unmerged(gone, kept, new)))

        owners = owners_of_contacts(contact_sessions, f"A-{gone}", f"K-{gone}")
        assert (owners[f"A-{gone}"], owners[f"K-{gone}"][0]) == ((new, 1), last)


# ---- activities ----------------------------------------------------------------------------------

def activities_uow(sessions):
    return lambda handler, payload: as_handler(UnitOfWork(sessions, activities_books), handler, payload)


def add_note(sessions, customer_uuid, text):
    activities.create_note(UnitOfWork(sessions, activities_books),
                           {"customer_uuid": customer_uuid, "type": "note", "text": text},
                           customers=Customers(), contacts=None)


def owners_of_notes(sessions, *texts):
    with sessions() as session:
        return dict(session.execute(select(Note.text, Note.customer_uuid).where(Note.text.in_(texts))).all())


def test_activities_an_unmerge_racing_the_merge_it_undoes_ends_the_same(activity_sessions):
    uow_of = activities_uow(activity_sessions)
    for _ in range(ROUNDS):
        gone, kept, new, _last = names()
        add_note(activity_sessions, gone, f"A-{gone}")
        add_note(activity_sessions, kept, f"K-{gone}")

        at_once(lambda: handled(activities.on_customer_merged, uow_of, merged(gone, kept)),
                lambda: handled(activities.on_customer_unmerged, uow_of, unmerged(gone, kept, new)))

        assert owners_of_notes(activity_sessions, f"A-{gone}", f"K-{gone}") == {f"A-{gone}": new, f"K-{gone}": kept}


def test_activities_an_unmerge_racing_a_merge_of_the_customer_it_leaves(activity_sessions):
    uow_of = activities_uow(activity_sessions)
    for _ in range(ROUNDS):
        gone, kept, new, last = names()
        add_note(activity_sessions, gone, f"A-{gone}")
        add_note(activity_sessions, kept, f"K-{gone}")
        handled(activities.on_customer_merged, uow_of, merged(gone, kept))

        at_once(lambda: handled(activities.on_customer_merged, uow_of, merged(kept, last)),
                lambda: handled(activities.on_customer_unmerged, uow_of, unmerged(gone, kept, new)))

        assert owners_of_notes(activity_sessions, f"A-{gone}", f"K-{gone}") == {f"A-{gone}": new, f"K-{gone}": last}
