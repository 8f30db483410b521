"""The avatars service layer on a real database behind a real unit of work, with hand-written
fakes for the remote sources and the customers service; events are read back from the outbox.

SQLite by default; with DATABASE_URL on PostgreSQL the same tests run there, in a schema of
their own (the inserts, claims and locks differ between the two)."""
import base64
import hashlib
import logging
import os
from datetime import datetime, timedelta, timezone

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from roster.database import make_engine
from roster.errors import NotFound, ServiceUnavailable, UnprocessableEvent, ValidationFailed
from roster import tracing
from roster.breaker import CircuitOpen
from roster.events import envelope
from roster.handlers import EventBatch, _batch_runner
from roster.testing import as_handler, recorded, recorded_fields, unit_of_work
from roster.timestamps import utcnow
from roster.uow import UnitOfWork
from services.avatars import commands, domain
from services.avatars.dependencies import Sources
from services.avatars.domain import Image
from services.avatars.models import Base, CachedAvatar, GoneCustomer, bookkeeping
from services.avatars.service import AvatarsService
from tools.isolation import drop_schemas, is_postgres, schema_prefix

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 24
UUID = "cus_de305d54-75b4-431b-adb2-eb6b9e546012"
OTHER = "cus_9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
T0 = "2024-05-01T10:00:00Z"
T1 = "2024-05-02T10:00:00Z"
BOB_HASH = hashlib.sha256(b"bob@acme.com").hexdigest()


def customer(uuid=UUID, updated_at=T0, **fields):
    return {"uuid": uuid, "name": "Bob", "company": "Acme", "email": "bob@acme.com",
            "website_url": "https://www.acme.com", "city": "Paris", "updated_at": updated_at, **fields}


class FakeSource:
    """A remote source answering from a table keyed by what it is asked; records every question.

    `during_fetch` runs inside each fetch, so a test can check what holds while one is under way.
    """

    def __init__(self, answers=None):
        self.answers = dict(answers or {})
        self.asked = []
        self.during_fetch = None

    def __call__(self, key):
        self.asked.append(key)
        if self.during_fetch is not None:
            self.during_fetch()
        answer = self.answers.get(key)
        if isinstance(answer, BaseException):
            raise answer
        return answer


class FakeCustomers:
    """The customers service's `get_customer`, over a dict; `down` makes it unreachable."""

    def __init__(self):
        self.customers = {}
        self.down = False
        self.calls = 0

    def get_customer(self, uuid):
        self.calls += 1
        if self.down:
            raise ServiceUnavailable("The customers service is not running")
        if uuid not in self.customers:
            raise NotFound(f"Customer {uuid} not found", param="uuid")
        return self.customers[uuid]


@pytest.fixture
def uow(tmp_path):
    database_url = os.environ.get("DATABASE_URL")
    if not is_postgres(database_url):
        yield unit_of_work(Base, bookkeeping, tmp_path)
        return
    prefix = schema_prefix()
    engine = make_engine(database_url, prefix + "avatars")
    Base.metadata.create_all(engine)
    yield UnitOfWork(sessionmaker(engine, expire_on_commit=False), bookkeeping)
    engine.dispose()
    drop_schemas(database_url, prefix)


@pytest.fixture
def clearbit():
    return FakeSource({"acme.com": Image("image/png", PNG)})


@pytest.fixture
def gravatar():
    return FakeSource({BOB_HASH: Image("image/jpeg", JPEG)})


@pytest.fixture
def fetchers(clearbit, gravatar):
    return {"clearbit": clearbit, "gravatar": gravatar}


@pytest.fixture
def customers():
    return FakeCustomers()


def created(uow, fetchers, record=None):
    payload = envelope(customer=record or customer())
    commands.on_customer_created(as_handler(uow, "handle_customer_created", payload), payload, fetchers=fetchers)
    return payload


def updated(uow, fetchers, customers, changes, uuid=UUID):
    payload = envelope(uuid=uuid, changes=changes)
    commands.on_customer_updated(as_handler(uow, "handle_customer_updated", payload), payload,
                                 fetchers=fetchers, customers=customers)
    return payload


def stored(uow, uuid=UUID):
    with uow.read() as session:
        return session.get(CachedAvatar, uuid)


def body_of(answer):
    return base64.b64decode(answer["body"])


# ---- the chain, cached ----------------------------------------------------------------------------

def test_a_new_customer_gets_the_clearbit_logo_cached_and_announced(uow, fetchers, clearbit, gravatar):
    created(uow, fetchers)
    answer = commands.get_avatar(uow, UUID)
    assert answer == {"content_type": "image/png", "body": base64.b64encode(PNG).decode(),
                      "etag": domain.etag_of(PNG), "source": "clearbit"}
    assert clearbit.asked == ["acme.com"] and gravatar.asked == []
    assert recorded_fields(uow, "avatar_resolved") == [
        {"customer_uuid": UUID, "source": "clearbit", "content_type": "image/png", "etag": domain.etag_of(PNG)}]
    row = stored(uow)
    assert (row.website_url, row.email, row.name, row.company) == ("https://www.acme.com", "bob@acme.com", "Bob", "Acme")
    assert row.customer_updated_at == datetime(2024, 5, 1, 10, tzinfo=timezone.utc)
    assert row.incomplete is False and utcnow() - row.fetched_at < timedelta(minutes=1)


def test_without_a_logo_gravatar_answers(uow, fetchers, clearbit, gravatar):
    clearbit.answers.clear()
    created(uow, fetchers)
    assert commands.get_avatar(uow, UUID)["source"] == "gravatar"
    assert body_of(commands.get_avatar(uow, UUID)) == JPEG
    assert clearbit.asked == ["acme.com"] and gravatar.asked == [BOB_HASH]


def test_without_logo_or_gravatar_the_generated_initial_is_cached(uow, fetchers, clearbit, gravatar):
    clearbit.answers.clear()
    gravatar.answers.clear()
    created(uow, fetchers)
    answer = commands.get_avatar(uow, UUID)
    expected = domain.generated_avatar(customer())
    assert (answer["source"], answer["content_type"], answer["etag"]) == ("initials", "image/svg+xml", expected.etag)
    assert body_of(answer) == expected.body
    assert stored(uow).incomplete is False  # both sources answered "none": nothing to retry soon


@pytest.mark.parametrize("company, name, letter", [
    ("", "Ωmega Ltd", "Ω"), (None, "ñandú", "Ñ"), ("東京商事", "Bob", "東"), ("3M", "Bob", "3"),
    ("🚀 Rocket", "Bob", "R"), ("", "", "?"),
])
def test_the_generated_initial_of_non_latin_digit_and_emoji_names(uow, company, name, letter):
    created(uow, {}, customer(company=company, name=name, website_url=None, email=None))
    svg = body_of(commands.get_avatar(uow, UUID)).decode("utf-8")
    assert f">{letter}</text>" in svg


def test_a_failing_source_counts_as_none_and_marks_the_avatar_incomplete(uow, fetchers, clearbit):
    clearbit.answers["acme.com"] = TimeoutError("timed out")
    created(uow, fetchers)
    assert commands.get_avatar(uow, UUID)["source"] == "gravatar"
    assert stored(uow).incomplete is True


def test_a_source_skipped_by_its_open_circuit_marks_the_avatar_incomplete_without_a_warning(
        uow, fetchers, clearbit, caplog):
    clearbit.answers["acme.com"] = CircuitOpen("avatar source clearbit", 12.0)
    with caplog.at_level(logging.DEBUG, logger="services.avatars.commands"):
        created(uow, fetchers)
    assert commands.get_avatar(uow, UUID)["source"] == "gravatar"
    assert stored(uow).incomplete is True  # asked again within OUTAGE_RETRY, like any outage
    assert [record.levelno for record in caplog.records if "clearbit" in record.getMessage()] == [logging.DEBUG]


def test_an_unknown_customer_has_no_avatar(uow):
    with pytest.raises(NotFound) as caught:
        commands.get_avatar(uow, UUID)
    assert caught.value.param == "customer_uuid"
    with pytest.raises(ValidationFailed):
        commands.get_avatar(uow, None)


def test_fetches_run_outside_any_transaction(uow, fetchers, clearbit, gravatar, customers):
    engine = uow.sessions.kw["bind"]
    seen = []
    clearbit.during_fetch = gravatar.during_fetch = lambda: seen.append(engine.pool.checkedout())
    clearbit.answers.clear()
    created(uow, fetchers)
    customers.customers[UUID] = customer(updated_at=T1, email="robert@acme.com")
    updated(uow, fetchers, customers, {"email": "robert@acme.com"})
    age(uow, UUID, timedelta(days=8))
    commands.refresh_stale(uow, fetchers=fetchers, max_age=timedelta(days=7))
    assert len(seen) == 6 and set(seen) == {0}  # no connection held while asking a source


def test_a_redelivered_created_event_changes_nothing_and_fetches_nothing(uow, fetchers, clearbit):
    payload = created(uow, fetchers)
    commands.on_customer_created(as_handler(uow, "handle_customer_created", payload), payload, fetchers=fetchers)
    assert clearbit.asked == ["acme.com"]
    assert len(recorded(uow, "avatar_resolved")) == 1


@pytest.mark.parametrize("payload", [{}, {"customer": None}, {"customer": {"name": "no uuid"}}])
def test_an_event_without_its_customer_is_unprocessable(uow, fetchers, payload):
    with pytest.raises(UnprocessableEvent):
        commands.on_customer_created(uow, envelope(**payload), fetchers=fetchers)


@pytest.fixture(params=["store_created_avatars", None], ids=["in-bulk", "one-by-one"])
def created_batch(request):
    """Run customer_created events as the service's batch worker does: resolve, then store in one
    transaction, all at once (`bulk=`) or event by event (what a batch falls back to)."""
    def run(uow, fetchers, payloads):
        service = worker_factory(AvatarsService, uow=uow, sources=Sources(fetchers, timedelta(days=7)))
        return _batch_runner("handle_customer_created", "resolve_created_avatars", request.param)(
            service, EventBatch(payloads))
    return run


def test_a_batch_of_new_customers_resolves_each_outside_the_transaction_and_stores_them(uow, fetchers, clearbit,
                                                                                       gravatar, created_batch):
    engine = uow.sessions.kw["bind"]
    seen = []
    clearbit.during_fetch = gravatar.during_fetch = lambda: seen.append(engine.pool.checkedout())
    with uow.write() as tx:
        tx.session.add(GoneCustomer(uuid=OTHER))
    third = "cus_00000000-0000-4000-8000-000000000003"
    payloads = [envelope(customer=customer(), request_id="req-1"), envelope(customer=customer(uuid=OTHER)),
                envelope(customer=customer(uuid=third, email=None, website_url=None, name="Zed")),
                envelope(customer={"name": "no uuid"})]
    outcomes = created_batch(uow, fetchers, payloads)
    assert outcomes[:3] == [None, None, None] and outcomes[3][0] is UnprocessableEvent
    assert tracing.current() is None  # the events' request ids were bound only while each ran
    assert seen and set(seen) == {0}  # no connection held while asking a source
    assert commands.get_avatar(uow, UUID)["source"] == "clearbit"
    assert commands.get_avatar(uow, third)["source"] == "initials"
    assert stored(uow, OTHER) is None  # gone before its creation was handled
    assert sorted(event["customer_uuid"] for event in recorded(uow, "avatar_resolved")) == sorted([UUID, third])
    assert {event["customer_uuid"]: event.get("request_id") for event in recorded(uow, "avatar_resolved")}[UUID] == "req-1"
    asked = len(clearbit.asked) + len(gravatar.asked)
    assert created_batch(uow, fetchers, payloads[:3]) == [None, None, None]  # redelivered
    assert len(clearbit.asked) + len(gravatar.asked) == asked  # nothing fetched again
    assert len(recorded(uow, "avatar_resolved")) == 2


def test_a_batch_resolves_its_remote_avatars_concurrently(uow, fetchers, clearbit, created_batch):
    import eventlet

    running, most, traced = [0], [0], {}

    def slow(key):
        traced[key] = tracing.current()  # a source's failure is logged with the event's request id
        running[0] += 1
        most[0] = max(most[0], running[0])
        eventlet.sleep(0.05)
        running[0] -= 1
        return Image("image/png", PNG)

    fetchers["clearbit"] = slow
    uuids = [f"cus_00000000-0000-4000-8000-{n:012d}" for n in range(12)]
    outcomes = created_batch(uow, fetchers, [envelope(customer=customer(uuid=uuid, website_url=f"https://c{n}.com"),
                                                      request_id=f"req-{n}") for n, uuid in enumerate(uuids)])
    assert outcomes == [None] * 12
    assert traced == {f"c{n}.com": f"req-{n}" for n in range(12)}
    assert tracing.current() is None
    assert most[0] == commands.FETCH_CONCURRENCY  # at once, up to the limit
    assert {commands.get_avatar(uow, uuid)["source"] for uuid in uuids} == {"clearbit"}


def test_a_deletion_during_a_batchs_fetches_wins(uow, fetchers, clearbit, created_batch):
    clearbit.during_fetch = lambda: commands.on_customer_deleted(uow, envelope(uuid=UUID))
    assert created_batch(uow, fetchers, [envelope(customer=customer())]) == [None]
    assert stored(uow) is None and recorded(uow, "avatar_resolved") == []


def test_a_batch_naming_a_customer_twice_or_one_cached_meanwhile_stores_one_avatar_each(uow, fetchers, clearbit,
                                                                                       created_batch):
    other_payload = envelope(customer=customer(uuid=OTHER, website_url="https://other.com"))
    clearbit.answers["other.com"] = Image("image/png", PNG + b"other")
    meanwhile = []  # while the batch fetches, OTHER's avatar is cached by another worker
    clearbit.during_fetch = lambda: meanwhile or meanwhile.append(created(uow, {}, customer(uuid=OTHER)))
    twice = [envelope(customer=customer()), envelope(customer=customer()), other_payload]
    assert created_batch(uow, fetchers, twice) == [None, None, None]
    assert stored(uow).source == "clearbit"
    assert stored(uow, OTHER).source == "clearbit"  # resolved from the same version of the customer, later
    announced = [event["customer_uuid"] for event in recorded(uow, "avatar_resolved")]
    assert announced.count(UUID) == 1 and announced.count(OTHER) == 2  # the initial, then the logo


def test_a_batched_creation_overtaken_by_an_update_does_not_bring_back_old_fields(uow, fetchers, clearbit,
                                                                                  customers, created_batch):
    customers.customers[UUID] = customer(updated_at=T1, website_url="https://acme.org")
    clearbit.answers["acme.org"] = Image("image/png", PNG + b"org")
    updated(uow, fetchers, customers, {"website_url": "https://acme.org"})
    assert created_batch(uow, fetchers, [envelope(customer=customer())]) == [None]
    assert stored(uow).website_url == "https://acme.org"
    assert clearbit.asked == ["acme.org"]  # the older creation fetched nothing


# ---- refresh on change ------------------------------------------------------------------------------

def test_a_change_of_website_resolves_the_current_customer_again(uow, fetchers, clearbit, customers):
    created(uow, fetchers)
    clearbit.answers["acme.org"] = Image("image/png", PNG + b"org")
    customers.customers[UUID] = customer(updated_at=T1, website_url="https://acme.org")
    updated(uow, fetchers, customers, {"website_url": "https://acme.org"})
    answer = commands.get_avatar(uow, UUID)
    assert body_of(answer) == PNG + b"org"
    assert clearbit.asked == ["acme.com", "acme.org"]
    assert [event["etag"] for event in recorded(uow, "avatar_resolved")] == [domain.etag_of(PNG),
                                                                             domain.etag_of(PNG + b"org")]
    assert stored(uow).website_url == "https://acme.org"


def test_a_change_the_avatar_does_not_use_fetches_nothing(uow, fetchers, clearbit, customers):
    created(uow, fetchers)
    updated(uow, fetchers, customers, {"city": "Lyon", "attributes": {"tags": ["vip"]}})
    updated(uow, fetchers, customers, {"name": "Bob"})  # the same name again
    assert clearbit.asked == ["acme.com"] and customers.calls == 0
    assert len(recorded(uow, "avatar_resolved")) == 1


def test_a_refresh_that_finds_the_same_image_is_not_announced_again(uow, fetchers, clearbit, customers):
    created(uow, fetchers)
    customers.customers[UUID] = customer(updated_at=T1, email="robert@acme.com")
    updated(uow, fetchers, customers, {"email": "robert@acme.com"})
    assert clearbit.asked == ["acme.com", "acme.com"]
    assert len(recorded(uow, "avatar_resolved")) == 1
    assert stored(uow).email == "robert@acme.com"


def test_a_new_name_looks_nothing_up_and_is_kept_for_a_later_initial(uow, fetchers, clearbit, customers):
    created(uow, fetchers)  # a Clearbit logo is shown
    updated(uow, fetchers, customers, {"name": "Robert", "company": "Robert & Co"})
    assert clearbit.asked == ["acme.com"] and customers.calls == 0
    assert len(recorded(uow, "avatar_resolved")) == 1
    assert (stored(uow).name, stored(uow).company) == ("Robert", "Robert & Co")


def initial_shown(uow, fetchers, **fields):
    """Cache the generated initial of the customer (no logo, no Gravatar) as of T0; return the stored row."""
    created(uow, fetchers, customer(website_url=None, email=None, **fields))
    return stored(uow)


def renamed(uow, fetchers, customers, changes, occurred_at=T1):
    payload = envelope(uuid=UUID, changes=changes, occurred_at=occurred_at)
    commands.on_customer_updated(as_handler(uow, "handle_customer_updated", payload), payload,
                                 fetchers=fetchers, customers=customers)


def test_a_new_name_drawing_the_same_initial_is_kept_without_a_redraw(uow, fetchers, customers):
    before = initial_shown(uow, fetchers, company="", name="n1")
    renamed(uow, fetchers, customers, {"name": "n2"})
    after = stored(uow)
    assert (after.name, after.customer_updated_at) == ("n2", datetime(2024, 5, 2, 10, tzinfo=timezone.utc))
    assert (after.body, after.etag, after.fetched_at) == (before.body, before.etag, before.fetched_at)
    assert len(recorded(uow, "avatar_resolved")) == 1 and customers.calls == 0


def test_a_new_name_drawing_another_initial_is_redrawn_and_announced(uow, fetchers, customers):
    before = initial_shown(uow, fetchers, company="", name="n1")
    renamed(uow, fetchers, customers, {"name": "m1"})
    after = stored(uow)
    assert after.name == "m1" and ">M</text>" in after.body.decode()
    assert after.etag == domain.generated_avatar({"uuid": UUID, "name": "m1"}).etag != before.etag
    assert [event["etag"] for event in recorded(uow, "avatar_resolved")] == [before.etag, after.etag]


def test_a_new_name_from_an_older_record_than_the_cached_one_is_not_kept(uow, fetchers, customers):
    initial_shown(uow, fetchers, company="", name="n1", updated_at=T1)
    renamed(uow, fetchers, customers, {"name": "n0"}, occurred_at=T0)  # delivered late
    renamed(uow, fetchers, customers, {"company": "Nexus"}, occurred_at=T1)  # same version: kept
    assert (stored(uow).name, stored(uow).company) == ("n1", "Nexus")
    assert len(recorded(uow, "avatar_resolved")) == 1


def test_while_customers_is_away_the_change_applies_to_the_fields_held_here(uow, fetchers, clearbit, gravatar,
                                                                              customers):
    created(uow, fetchers)
    customers.down = True
    gravatar.answers[hashlib.sha256(b"new@acme.com").hexdigest()] = Image("image/png", PNG + b"new")
    updated(uow, fetchers, customers, {"website_url": None, "email": "New@acme.com"})
    assert body_of(commands.get_avatar(uow, UUID)) == PNG + b"new"
    assert (stored(uow).website_url, stored(uow).email, stored(uow).name) == (None, "New@acme.com", "Bob")


def test_an_update_before_any_avatar_asks_customers_and_retries_while_it_is_away(uow, fetchers, customers):
    customers.down = True
    with pytest.raises(ServiceUnavailable):
        updated(uow, fetchers, customers, {"name": "Robert"})
    assert stored(uow) is None
    customers.down = False
    customers.customers[UUID] = customer(name="Robert")
    updated(uow, fetchers, customers, {"name": "Robert"})
    assert commands.get_avatar(uow, UUID)["source"] == "clearbit"


def test_an_update_for_a_customer_deleted_since_stores_nothing(uow, fetchers, clearbit, customers):
    updated(uow, fetchers, customers, {"email": "x@acme.com"})
    assert stored(uow) is None and clearbit.asked == []


def test_a_created_event_overtaken_by_an_update_does_not_bring_back_old_fields(uow, fetchers, clearbit, customers):
    clearbit.answers["acme.org"] = Image("image/png", PNG + b"org")
    customers.customers[UUID] = customer(updated_at=T1, website_url="https://acme.org")
    updated(uow, fetchers, customers, {"website_url": "https://acme.org"})
    created(uow, fetchers, customer(updated_at=T0))  # delivered late
    assert body_of(commands.get_avatar(uow, UUID)) == PNG + b"org"
    assert clearbit.asked == ["acme.org"]


def test_a_resolution_from_an_older_record_finishing_last_is_dropped(uow, fetchers, clearbit, customers):
    clearbit.answers["acme.org"] = Image("image/png", PNG + b"org")
    customers.customers[UUID] = customer(updated_at=T1, website_url="https://acme.org")
    # While the late created event's fetch is under way, the update is resolved and stored.
    clearbit.during_fetch = lambda: (setattr(clearbit, "during_fetch", None),
                                     updated(uow, fetchers, customers, {"website_url": "https://acme.org"}))
    created(uow, fetchers, customer(updated_at=T0))
    assert body_of(commands.get_avatar(uow, UUID)) == PNG + b"org"
    assert stored(uow).customer_updated_at == datetime(2024, 5, 2, 10, tzinfo=timezone.utc)


# ---- deletions and merges ---------------------------------------------------------------------------

def test_a_deleted_customer_loses_its_avatar_for_good(uow, fetchers, clearbit):
    created(uow, fetchers)
    commands.on_customer_deleted(uow, envelope(uuid=UUID, external_ids=["x"], data_source_uuids=["ds_1"]))
    with pytest.raises(NotFound):
        commands.get_avatar(uow, UUID)
    created(uow, fetchers)  # a created event delivered after the deletion
    assert stored(uow) is None and clearbit.asked == ["acme.com"]


def test_a_merged_away_customer_loses_its_avatar_and_the_survivor_keeps_its_own(uow, fetchers):
    created(uow, fetchers)
    created(uow, fetchers, customer(uuid=OTHER))
    commands.on_customer_merged(uow, envelope(from_uuid=OTHER, into_uuid=UUID, into_external_id="x",
                                              moved_external_ids=[]))
    assert commands.get_avatar(uow, UUID)["source"] == "clearbit"
    with pytest.raises(NotFound):
        commands.get_avatar(uow, OTHER)
    with uow.read() as session:
        assert session.get(GoneCustomer, OTHER) is not None


def test_a_deletion_during_a_fetch_wins(uow, fetchers, clearbit):
    clearbit.during_fetch = lambda: commands.on_customer_deleted(uow, envelope(uuid=UUID))
    created(uow, fetchers)
    assert stored(uow) is None and recorded(uow, "avatar_resolved") == []


# ---- refresh after the max age ----------------------------------------------------------------------

def age(uow, uuid, by, incomplete=None):
    values = {"fetched_at": utcnow() - by}
    if incomplete is not None:
        values["incomplete"] = incomplete
    with uow.write() as tx:
        tx.session.execute(update(CachedAvatar).where(CachedAvatar.customer_uuid == uuid).values(**values))


def test_avatars_older_than_the_max_age_are_resolved_again(uow, fetchers, clearbit):
    created(uow, fetchers)
    created(uow, fetchers, customer(uuid=OTHER))
    age(uow, UUID, timedelta(days=8))
    age(uow, OTHER, timedelta(days=6))
    clearbit.answers["acme.com"] = Image("image/png", PNG + b"new")
    assert commands.refresh_stale(uow, fetchers=fetchers, max_age=timedelta(days=7)) == 1
    assert body_of(commands.get_avatar(uow, UUID)) == PNG + b"new"
    assert body_of(commands.get_avatar(uow, OTHER)) == PNG
    assert utcnow() - stored(uow).fetched_at < timedelta(minutes=1)
    assert [event["customer_uuid"] for event in recorded(uow, "avatar_resolved")] == [UUID, OTHER, UUID]
    assert commands.refresh_stale(uow, fetchers=fetchers, max_age=timedelta(days=7)) == 0


def test_an_incomplete_avatar_is_asked_again_sooner(uow, fetchers, clearbit):
    clearbit.answers["acme.com"] = ConnectionError("down")
    created(uow, fetchers)
    age(uow, UUID, domain.OUTAGE_RETRY + timedelta(minutes=1))
    clearbit.answers["acme.com"] = Image("image/png", PNG)
    assert commands.refresh_stale(uow, fetchers=fetchers, max_age=timedelta(days=7)) == 1
    assert commands.get_avatar(uow, UUID)["source"] == "clearbit"
    assert stored(uow).incomplete is False


def test_a_refresh_claims_its_rows_so_another_process_skips_them(uow, fetchers, clearbit):
    created(uow, fetchers)
    age(uow, UUID, timedelta(days=8))
    second_tick = []
    clearbit.during_fetch = lambda: second_tick.append(
        commands.refresh_stale(uow, fetchers=fetchers, max_age=timedelta(days=7)))
    assert commands.refresh_stale(uow, fetchers=fetchers, max_age=timedelta(days=7)) == 1
    assert second_tick == [0]
    assert stored(uow).claimed_until is None


def test_a_refresh_stops_at_its_limit_and_takes_the_oldest_first(uow, fetchers):
    uuids = [f"cus_{n:08d}-0000-4000-8000-000000000000" for n in range(5)]
    for n, uuid in enumerate(uuids):
        created(uow, fetchers, customer(uuid=uuid))
        age(uow, uuid, timedelta(days=20 - n))
    assert commands.refresh_stale(uow, fetchers=fetchers, max_age=timedelta(days=7), limit=3) == 3
    with uow.read() as session:
        old = session.scalars(select(CachedAvatar.customer_uuid)
                              .where(CachedAvatar.fetched_at < utcnow() - timedelta(days=7))).all()
    assert sorted(old) == uuids[3:]


# ---- the nameko service, wired ------------------------------------------------------------------

def test_the_service_wires_its_entrypoints_to_the_service_layer(uow, fetchers, customers, clearbit):
    service = worker_factory(AvatarsService, uow=uow, sources=Sources(fetchers, timedelta(days=7)),
                             customers_rpc=customers)
    assert service.health() == {"service": "avatars", "status": "ok", "database": "ok"}
    service.handle_customer_created(envelope(customer=customer()))
    assert service.get_avatar(UUID)["source"] == "clearbit"
    customers.customers[UUID] = customer(updated_at=T1, website_url=None)
    service.handle_customer_updated(envelope(uuid=UUID, changes={"website_url": None}))
    assert service.get_avatar(UUID)["source"] == "gravatar"
    age(uow, UUID, timedelta(days=8))
    service.refresh_stale_avatars()
    assert utcnow() - stored(uow).fetched_at < timedelta(minutes=1)
    service.handle_customer_merged(envelope(from_uuid=UUID, into_uuid=OTHER))
    with pytest.raises(NotFound):
        service.get_avatar(UUID)
    service.handle_customer_created(envelope(customer=customer(uuid=OTHER)))
    service.handle_customer_deleted(envelope(uuid=OTHER))
    with pytest.raises(NotFound):
        service.get_avatar(OTHER)
    assert stored(uow, UUID) is None
