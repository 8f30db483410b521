"""Avatars through the running platform: a customer created over HTTP gets the Clearbit logo,
else its Gravatar, else a generated initial, served at its `avatar_url`; the sources are local
stand-in servers (tests/e2e/conftest.py `avatar_sources`), and a customer's own website is never
contacted. Each test uses its own domains and email addresses, so tests never share a route."""
import hashlib
import time
import uuid

import chartmogul
import eventlet
import pytest
from eventlet.queue import Queue
from nameko.containers import ServiceContainer
from nameko.events import event_handler
from nameko.standalone.events import event_dispatcher

from roster.events import envelope
from services.avatars import domain
from tests.avatar_stand_ins import JPEG, PNG, StandIn, answer, huge, image, slow
from tests.e2e.support import eventually

resolutions: Queue = Queue()


class AvatarWatcher:
    """An outside subscriber to `avatars.avatar_resolved`, as docs/events.md describes it."""

    name = "e2e_avatar_watcher"

    @event_handler("avatars", "avatar_resolved")
    def on_resolved(self, payload):
        resolutions.put(payload)


class Resolutions:
    """The avatar_resolved events heard so far, and a wait for the next one of a customer."""

    def __init__(self):
        self.heard = []

    def of(self, customer_uuid: str) -> list[dict]:
        self._drain()
        return [event for event in self.heard if event["customer_uuid"] == customer_uuid]

    def wait(self, customer_uuid: str, etag: str | None = None, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = [event for event in self.of(customer_uuid) if etag is None or event["etag"] == etag]
            if found:
                return found[-1]
            assert time.monotonic() < deadline, f"no avatar_resolved for {customer_uuid} ({etag}): {self.heard}"
            eventlet.sleep(0.05)

    def _drain(self):
        while not resolutions.empty():
            self.heard.append(resolutions.get_nowait())


@pytest.fixture(scope="module")
def resolved(amqp_uri):
    container = ServiceContainer(AvatarWatcher, {"AMQP_URI": amqp_uri})
    container.start()
    yield Resolutions()
    container.stop()


@pytest.fixture(scope="module")
def data_source(http):
    return http.post("/v1/data_sources", json={"name": "Avatars"}).json()["uuid"]


@pytest.fixture()
def unique():
    return uuid.uuid4().hex[:12]


@pytest.fixture()
def new_customer(http, data_source):
    def post(fields):
        return http.post("/v1/customers", json={
            "data_source_uuid": data_source, "external_id": uuid.uuid4().hex, "name": "Bob", **fields})

    def create(**fields) -> dict:
        response = post(fields)
        assert response.status_code == 201, response.text
        return response.json()

    def refused(**fields) -> str:
        """Return the field a 422 blames."""
        response = post(fields)
        assert response.status_code == 422, response.text
        return response.json()["param"]

    create.refused = refused
    return create


@pytest.fixture()
def clearbit(avatar_sources):
    return avatar_sources.clearbit


@pytest.fixture()
def gravatar(avatar_sources):
    return avatar_sources.gravatar


def email_hash(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def avatar_path(customer: dict) -> str:
    return f"/v1/customers/{customer['uuid']}/avatar"


# ---- the chain ----------------------------------------------------------------------------------

def test_a_company_with_a_website_gets_its_clearbit_logo(http, new_customer, clearbit, resolved, unique,
                                                          cm_config):
    clearbit.routes[f"/acme-{unique}.com"] = image(PNG)
    customer = new_customer(company="Acme", website_url=f"https://www.acme-{unique}.com/about")
    assert customer["avatar_url"].endswith(avatar_path(customer))

    event = resolved.wait(customer["uuid"])
    assert (event["source"], event["content_type"], event["etag"]) == ("clearbit", "image/png", domain.etag_of(PNG))
    response = http.get(avatar_path(customer))
    assert response.status_code == 200 and response.content == PNG
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["ETag"] == domain.etag_of(PNG)
    assert response.headers["Cache-Control"] == "private, max-age=300"
    assert response.headers["X-Content-Type-Options"] == "nosniff"

    again = http.get(avatar_path(customer), headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == response.headers["ETag"]

    assert http.get(f"/v1/customers/{customer['uuid']}").json()["avatar_url"] == customer["avatar_url"]
    listed = http.get("/v1/customers", params={"external_id": customer["external_id"]}).json()["entries"]
    assert [entry["avatar_url"] for entry in listed] == [customer["avatar_url"]]
    # The official client takes the new field in its stride.
    assert chartmogul.Customer.retrieve(cm_config(), uuid=customer["uuid"]).get().uuid == customer["uuid"]


def test_without_a_logo_the_gravatar_of_the_email_is_served(http, new_customer, clearbit, gravatar, resolved,
                                                           unique):
    email = f"Bob.{unique}@Example.com"
    gravatar.routes[f"/{email_hash(email)}"] = image(JPEG, "image/jpeg")
    customer = new_customer(website_url=f"https://nologo-{unique}.com", email=email)

    assert resolved.wait(customer["uuid"])["source"] == "gravatar"
    response = http.get(avatar_path(customer))
    assert response.content == JPEG and response.headers["Content-Type"] == "image/jpeg"
    assert f"/nologo-{unique}.com" in clearbit.requests  # asked first, answered 404
    assert f"/{email_hash(email)}?d=404&s=200" in gravatar.requests


def test_without_logo_or_gravatar_a_generated_initial_is_served(http, new_customer, clearbit, gravatar,
                                                                 resolved, unique):
    email = f"zoe.{unique}@example.com"
    clearbit.routes[f"/html-{unique}.com"] = answer(200, "text/html", b"<html><script>alert(1)</script></html>")
    gravatar.routes[f"/{email_hash(email)}"] = answer(500, "text/plain", b"oops")
    customer = new_customer(name="zoë", website_url=f"https://html-{unique}.com", email=email)

    event = resolved.wait(customer["uuid"])
    assert event["source"] == "initials" and event["content_type"] == "image/svg+xml"
    response = http.get(avatar_path(customer))
    assert response.headers["Content-Type"] == "image/svg+xml"
    assert response.headers["ETag"] == event["etag"]
    assert ">Z</text>" in response.content.decode("utf-8")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "sandbox" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_slow_or_huge_source_is_given_up_and_the_next_one_asked(http, new_customer, clearbit, gravatar,
                                                                   resolved, unique):
    slow_email, huge_email = f"slow.{unique}@example.com", f"huge.{unique}@example.com"
    clearbit.routes[f"/slow-{unique}.com"] = slow
    clearbit.routes[f"/huge-{unique}.com"] = huge(declare_length=False)
    gravatar.routes[f"/{email_hash(slow_email)}"] = image(PNG)
    gravatar.routes[f"/{email_hash(huge_email)}"] = image(JPEG, "image/jpeg")
    behind_slow = new_customer(website_url=f"https://slow-{unique}.com", email=slow_email)
    behind_huge = new_customer(website_url=f"https://huge-{unique}.com", email=huge_email)

    assert resolved.wait(behind_slow["uuid"])["source"] == "gravatar"
    assert resolved.wait(behind_huge["uuid"])["source"] == "gravatar"
    assert http.get(avatar_path(behind_slow)).content == PNG
    assert http.get(avatar_path(behind_huge)).content == JPEG
    assert clearbit.bytes_sent[f"/huge-{unique}.com"] < 8 * 1024 * 1024  # the download was cut short


# ---- caching and refreshing -------------------------------------------------------------------------

def test_a_change_of_website_refreshes_the_avatar_and_other_changes_do_not(http, new_customer, clearbit,
                                                                           resolved, unique):
    first, second, third = (f"/{name}-{unique}.com" for name in ("first", "second", "third"))
    logos = {first: PNG + b"1", second: PNG + b"2", third: PNG + b"3"}
    for path, logo in logos.items():
        clearbit.routes[path] = image(logo)
    customer = new_customer(website_url=f"https://first-{unique}.com")
    resolved.wait(customer["uuid"], domain.etag_of(logos[first]))

    http.patch(f"/v1/customers/{customer['uuid']}", json={"website_url": f"https://second-{unique}.com"})
    resolved.wait(customer["uuid"], domain.etag_of(logos[second]))
    assert http.get(avatar_path(customer)).content == logos[second]

    http.patch(f"/v1/customers/{customer['uuid']}", json={"city": "Lyon"})  # not an avatar input
    http.post(f"/v1/customers/{customer['uuid']}/attributes/tags", json={"tags": ["vip"]})
    http.patch(f"/v1/customers/{customer['uuid']}", json={"website_url": f"https://third-{unique}.com"})
    resolved.wait(customer["uuid"], domain.etag_of(logos[third]))
    # Had the city or the tags triggered a refresh, second or third would have been asked twice.
    assert [clearbit.requests.count(path) for path in (first, second, third)] == [1, 1, 1]
    assert len(resolved.of(customer["uuid"])) == 3


# ---- what is never fetched ---------------------------------------------------------------------------

@pytest.fixture()
def customer_site():
    """A server standing in for a customer's own website: nothing may ever connect to it."""
    site = StandIn()
    yield site
    site.close()


def test_a_website_on_a_private_address_is_never_contacted(http, new_customer, clearbit, gravatar, resolved,
                                                           unique, customer_site, amqp_uri):
    port = customer_site.port
    # The customers service refuses an address that is not a host name (the first gate) ...
    for website in (f"http://127.0.0.1:{port}/", f"http://localhost:{port}/", f"http://[::1]:{port}/"):
        assert new_customer.refused(website_url=website) == "website_url"
    # ... accepts names that still lead nowhere public ...
    accepted = [f"http://intranet.local:{port}/", f"http://acme-{unique}.internal:{port}/",
                f"http://127.0.0.1.nip.io:{port}/"]
    # ... and customer records that predate it, or come from elsewhere, reach avatars as events.
    on_the_bus = [f"http://127.0.0.1:{port}/", f"http://localhost:{port}/logo.png", f"http://[::1]:{port}/",
                  f"http://2130706433:{port}/", f"https://acme.com@127.0.0.1:{port}/", f"127.0.0.1:{port}"]
    customers = []
    for n, website in enumerate(accepted + on_the_bus):
        email = f"ssrf{n}.{unique}@example.com"
        gravatar.routes[f"/{email_hash(email)}"] = image(PNG)
        if website in accepted:
            customers.append(new_customer(website_url=website, email=email)["uuid"])
        else:
            customers.append(f"cus_{uuid.uuid4()}")
            event_dispatcher({"AMQP_URI": amqp_uri})("customers", "customer_created", envelope(customer={
                "uuid": customers[-1], "name": "Bob", "email": email, "website_url": website,
                "updated_at": "2024-05-01T10:00:00Z"}))

    for customer_uuid in customers:
        assert resolved.wait(customer_uuid)["source"] == "gravatar"
    assert customer_site.connections == 0
    # Only the public-looking name went to Clearbit, as a name (nip.io would resolve to 127.0.0.1).
    asked = [path for path in clearbit.requests if f":{port}" in path or "127.0.0.1" in path
             or "localhost" in path or ".local" in path or ".internal" in path or "2130706433" in path]
    assert asked == ["/127.0.0.1.nip.io"]


# ---- initials of every kind of name ------------------------------------------------------------------

@pytest.mark.parametrize("company, name, letter", [
    ("Ωmega Ltd", "Bob", "Ω"), ("", "ñandú", "Ñ"), ("東京商事", "Bob", "東"), ("Москва", "Bob", "М"),
    ("3M", "Bob", "3"), ("🚀 Rocket", "Bob", "R"), ("ⓐⓑⓒ", "Bob", "A"),
])
def test_the_initial_of_non_latin_digit_and_emoji_names(http, new_customer, resolved, company, name, letter):
    customer = new_customer(company=company, name=name)
    event = resolved.wait(customer["uuid"])
    response = http.get(avatar_path(customer))
    assert event["source"] == "initials" and response.headers["ETag"] == event["etag"]
    assert f">{letter}</text>" in response.content.decode("utf-8")


# ---- unknown customers, a stopped service ----------------------------------------------------------

def test_an_unknown_customer_has_no_avatar(http):
    response = http.get("/v1/customers/cus_00000000-0000-4000-8000-000000000000/avatar")
    assert response.status_code == 404 and response.json()["code"] == 404
    assert http.get("/v1/customers/cus_00000000-0000-4000-8000-000000000000/avatar", role=None).status_code == 401


def test_a_deleted_customers_avatar_goes_with_it(http, new_customer, resolved):
    customer = new_customer(company="Gone")
    resolved.wait(customer["uuid"])
    assert http.delete(f"/v1/customers/{customer['uuid']}").status_code == 204
    eventually(lambda: http.get(avatar_path(customer)).status_code == 404)


def test_with_the_avatars_service_down_the_initial_is_still_served(stack, http, new_customer, clearbit, resolved,
                                                                    unique):
    clearbit.routes[f"/down-{unique}.com"] = image(PNG)
    customer = new_customer(company="Down", website_url=f"https://down-{unique}.com")
    resolved.wait(customer["uuid"])
    initial = domain.generated_avatar({"uuid": customer["uuid"], "company": "Down"})

    stack.stop_service("avatars")
    try:
        response = http.get(avatar_path(customer))
        assert response.status_code == 200 and response.content == initial.body
        assert response.headers["Content-Type"] == "image/svg+xml"
        assert response.headers["ETag"] == initial.etag
        assert response.headers["Cache-Control"] == "private, no-cache"  # the logo replaces it once back
    finally:
        stack.start_service("avatars")
        stack.wait_ready(timeout=60)
    eventually(lambda: http.get(avatar_path(customer)).content == PNG)
