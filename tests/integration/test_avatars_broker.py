"""The avatars service in a real container on the real broker and database, its sources real
local HTTP servers: customers' events in, `avatar_resolved` out, `get_avatar` over RPC, the
refresh after AVATAR_MAX_AGE, and an update handled while the customers service is away."""
import base64
import hashlib
import time

import eventlet
import pytest
from nameko.containers import ServiceContainer
from nameko.events import event_handler
from nameko.standalone.events import event_dispatcher
from nameko.standalone.rpc import ClusterRpcProxy

from roster.errors import NotFound
from roster.events import envelope
from services.avatars import domain
from services.avatars.commands import FETCH_CONCURRENCY
from services.avatars.service import AvatarsService
from tests.avatar_stand_ins import JPEG, PNG, StandIn, image, slow

UUID = "cus_de305d54-75b4-431b-adb2-eb6b9e546012"
BOB_HASH = hashlib.sha256(b"bob@acme.com").hexdigest()
NEW_HASH = hashlib.sha256(b"new@acme.com").hexdigest()


class AvatarWatcher:
    """An outside subscriber to `avatars.avatar_resolved`."""

    name = "avatar_watcher"
    heard: list = []

    @event_handler("avatars", "avatar_resolved")
    def on_resolved(self, payload):
        AvatarWatcher.heard.append(payload)


@pytest.fixture()
def sources():
    clearbit, gravatar = StandIn(), StandIn()
    yield clearbit, gravatar
    clearbit.close()
    gravatar.close()


@pytest.fixture()
def platform(amqp_uri, own_database, sources, monkeypatch):
    """The avatars service and a watcher, running; the customers service is not."""
    clearbit, gravatar = sources
    monkeypatch.setenv("CLEARBIT_LOGO_URL", clearbit.url)
    monkeypatch.setenv("GRAVATAR_URL", gravatar.url)
    monkeypatch.setenv("AVATAR_FETCH_TIMEOUT", "1,1")
    monkeypatch.setenv("AVATAR_MAX_AGE", "2")  # stale after 2 s, looked for every 0.5 s
    monkeypatch.setenv("AVATAR_SOURCE_CIRCUIT", "3,60")
    AvatarWatcher.heard = []
    running = [ServiceContainer(cls, {"AMQP_URI": amqp_uri}) for cls in (AvatarWatcher, AvatarsService)]
    for container in running:
        container.start()
    yield
    for container in running:
        container.stop()


def publish(amqp_uri, event_type, **fields):
    event_dispatcher({"AMQP_URI": amqp_uri})("customers", event_type, envelope(**fields))


def resolved(etag, timeout=15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        found = [event for event in AvatarWatcher.heard if event["etag"] == etag]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no avatar_resolved with {etag}; heard {AvatarWatcher.heard}"
        eventlet.sleep(0.05)


def get_avatar(amqp_uri, uuid=UUID) -> dict:
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=10) as cluster:
        return cluster.avatars.get_avatar(uuid)


def test_events_in_avatars_out_refreshed_after_the_max_age(platform, sources, amqp_uri):
    clearbit, gravatar = sources
    clearbit.routes["/acme.com"] = image(PNG)
    publish(amqp_uri, "customer_created", customer={
        "uuid": UUID, "name": "Bob", "company": "Acme", "email": "bob@acme.com",
        "website_url": "https://www.acme.com", "updated_at": "2024-05-01T10:00:00Z"})

    event = resolved(domain.etag_of(PNG))
    assert {key: event[key] for key in ("customer_uuid", "source", "content_type")} == {
        "customer_uuid": UUID, "source": "clearbit", "content_type": "image/png"}
    assert event["version"] == 1 and event["event_id"] and event["occurred_at"].endswith("Z")
    answer = get_avatar(amqp_uri)
    assert base64.b64decode(answer["body"]) == PNG and answer["etag"] == domain.etag_of(PNG)

    # The logo changes upstream: the timer picks it up once the avatar is older than the max age.
    logo = PNG + b"v2"
    clearbit.routes["/acme.com"] = image(logo)
    resolved(domain.etag_of(logo))
    assert base64.b64decode(get_avatar(amqp_uri)["body"]) == logo
    assert gravatar.requests == []


def test_an_update_while_customers_is_away_uses_the_fields_held_here(platform, sources, amqp_uri):
    clearbit, gravatar = sources
    gravatar.routes[f"/{BOB_HASH}"] = image(PNG)
    gravatar.routes[f"/{NEW_HASH}"] = image(JPEG, "image/jpeg")
    publish(amqp_uri, "customer_created", customer={
        "uuid": UUID, "name": "Bob", "email": "bob@acme.com", "updated_at": "2024-05-01T10:00:00Z"})
    resolved(domain.etag_of(PNG))

    publish(amqp_uri, "customer_updated", uuid=UUID, changes={"email": "new@acme.com"})
    event = resolved(domain.etag_of(JPEG))
    assert event["source"] == "gravatar" and event["content_type"] == "image/jpeg"
    assert f"/{NEW_HASH}?d=404&s=200" in gravatar.requests
    assert clearbit.requests == []


def test_a_deleted_customer_has_no_avatar(platform, sources, amqp_uri):
    publish(amqp_uri, "customer_created", customer={"uuid": UUID, "name": "Bob"})
    resolved(domain.generated_avatar({"uuid": UUID, "name": "Bob"}).etag)
    publish(amqp_uri, "customer_deleted", uuid=UUID, external_ids=[], data_source_uuids=[])
    deadline = time.monotonic() + 10
    while True:
        try:
            get_avatar(amqp_uri)
        except NotFound:
            break
        assert time.monotonic() < deadline, "the avatar outlived its customer"
        eventlet.sleep(0.1)


def test_a_black_holed_source_holds_up_only_the_first_fetches(platform, sources, amqp_uri):
    """Gravatar accepts connections and never answers: after three read timeouts it is not asked
    any more, and the rest of a burst of new customers get their initials at once."""
    _, gravatar = sources
    emails = [f"user{index}@example.com" for index in range(40)]
    for email in emails:
        gravatar.routes[f"/{hashlib.sha256(email.encode()).hexdigest()}"] = slow
    uuids = [f"cus_00000000-0000-4000-8000-{index:012d}" for index in range(len(emails))]
    for uuid, email in zip(uuids, emails):
        publish(amqp_uri, "customer_created", customer={
            "uuid": uuid, "name": "Zed", "email": email, "updated_at": "2024-05-01T10:00:00Z"})

    deadline = time.monotonic() + 30
    while {event["customer_uuid"] for event in AvatarWatcher.heard} != set(uuids):
        assert time.monotonic() < deadline, f"{len(AvatarWatcher.heard)} of {len(uuids)} avatars resolved"
        eventlet.sleep(0.05)
    assert {event["source"] for event in AvatarWatcher.heard} == {"initials"}
    # only fetches started before the third timeout reached the source (a batch runs
    # FETCH_CONCURRENCY at once); without the circuit every customer would wait out its own
    assert len(gravatar.requests) <= FETCH_CONCURRENCY + 2
