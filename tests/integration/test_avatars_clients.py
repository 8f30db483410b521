"""The avatar fetchers against real local HTTP servers standing in for Clearbit and Gravatar."""
import hashlib
import socket
import time
import zlib

import pytest

from roster.breaker import CircuitOpen
from services.avatars import clients, domain
from services.avatars.clients import FetchFailed, FetchSettings, ImageFetcher
from tests.avatar_stand_ins import (
    JPEG, PNG, WEBP, StandIn, answer, chunked, drip, huge, image, redirect, slow,
)

MAX_BYTES = 64 * 1024
TIMEOUT = (1.0, 0.5)


@pytest.fixture()
def stand_ins():
    started = []

    def start():
        server = StandIn()
        started.append(server)
        return server
    yield start
    for server in started:
        server.close()


@pytest.fixture()
def clearbit(stand_ins):
    return stand_ins()


@pytest.fixture()
def gravatar(stand_ins):
    return stand_ins()


@pytest.fixture()
def fetcher(clearbit):
    made = ImageFetcher(clearbit.url, timeout=TIMEOUT, max_bytes=MAX_BYTES)
    yield made
    made.close()


def fetchers_for(clearbit, gravatar, circuit=clients.DEFAULT_CIRCUIT):
    settings = FetchSettings(clearbit_logo_url=clearbit.url, gravatar_url=gravatar.url, timeout=TIMEOUT,
                             max_bytes=MAX_BYTES, circuit=circuit)
    return clients.avatar_fetchers(settings)


class Reports(list):
    def __call__(self, source, error):
        self.append((source, error))


CUSTOMER = {"uuid": "cus_de305d54-75b4-431b-adb2-eb6b9e546012", "company": "Acme", "name": "Bob",
            "email": "Bob@Acme.com", "website_url": "https://www.acme.com/"}
BOB_HASH = hashlib.sha256(b"bob@acme.com").hexdigest()


# --- one fetch, every kind of answer ------------------------------------------------------------

@pytest.mark.parametrize("content_type, body", [
    ("image/png", PNG), ("image/jpeg", JPEG), ("image/gif", b"GIF89a\x01\x00\x01\x00"), ("image/webp", WEBP),
    ("image/x-icon", b"\x00\x00\x01\x00\x01\x00"), ("IMAGE/PNG; charset=binary", PNG),
])
def test_an_image_is_returned_with_its_type(clearbit, fetcher, content_type, body):
    clearbit.routes["/acme.com"] = image(body, content_type)
    got = clients.clearbit_logo(fetcher, "acme.com")
    assert got == domain.Image(content_type.split(";")[0].lower(), body)
    assert clearbit.requests == ["/acme.com"]


def test_404_means_no_image(clearbit, fetcher):
    assert clients.clearbit_logo(fetcher, "acme.com") is None
    assert clearbit.requests == ["/acme.com"]


@pytest.mark.parametrize("status", [500, 502, 503, 429, 403])
def test_a_server_error_is_reported_as_a_failure(clearbit, fetcher, status):
    clearbit.routes["/acme.com"] = answer(status, "text/plain", b"oops")
    with pytest.raises(FetchFailed, match=f"HTTP {status}"):
        clients.clearbit_logo(fetcher, "acme.com")


def test_a_slow_answer_times_out_as_a_failure(clearbit, fetcher):
    clearbit.routes["/acme.com"] = slow
    with pytest.raises(FetchFailed, match="timed out"):
        clients.clearbit_logo(fetcher, "acme.com")


def test_a_body_dripping_past_the_total_deadline_is_a_failure(clearbit):
    clearbit.routes["/acme.com"] = drip
    patient = ImageFetcher(clearbit.url, timeout=(1.0, 2.0), total_timeout=0.3, max_bytes=MAX_BYTES)
    with pytest.raises(FetchFailed, match="longer than"):
        clients.clearbit_logo(patient, "acme.com")


def test_nothing_listening_is_a_connection_failure():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = ImageFetcher(f"http://127.0.0.1:{port}", timeout=TIMEOUT)
    with pytest.raises(FetchFailed, match="connection failed"):
        clients.clearbit_logo(closed, "acme.com")


@pytest.mark.parametrize("declare_length", [True, False])
def test_a_huge_body_is_no_image_and_is_not_downloaded(clearbit, fetcher, declare_length):
    clearbit.routes["/acme.com"] = huge(declare_length)
    assert clients.clearbit_logo(fetcher, "acme.com") is None
    clearbit.close()  # lets the server's write loop end on the closed connection
    assert clearbit.bytes_sent.get("/acme.com", 0) < 64 * 1024 * 1024


def test_a_declared_length_over_the_cap_is_refused_before_reading(clearbit, fetcher):
    def oversized(stand_in, handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Content-Length", str(MAX_BYTES + 1))
        handler.end_headers()
        handler.wfile.write(PNG)
        stand_in.release.wait(10)  # a reader waiting for the rest would time out instead
    clearbit.routes["/acme.com"] = oversized
    assert clients.clearbit_logo(fetcher, "acme.com") is None


def test_a_chunked_image_is_read_and_a_huge_chunked_one_refused(clearbit, fetcher):
    clearbit.routes["/acme.com"] = chunked(PNG)
    assert clients.clearbit_logo(fetcher, "acme.com") == domain.Image("image/png", PNG)
    clearbit.routes["/acme.com"] = chunked(PNG + b"\x00" * 4096, repeat=1000)
    assert clients.clearbit_logo(fetcher, "acme.com") is None


def test_a_body_cut_short_is_a_failure(clearbit, fetcher):
    def truncated(stand_in, handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Content-Length", str(len(PNG) + 1000))
        handler.end_headers()
        handler.wfile.write(PNG)
    clearbit.routes["/acme.com"] = truncated
    with pytest.raises(FetchFailed, match="interrupted"):
        clients.clearbit_logo(fetcher, "acme.com")


def test_a_body_just_at_the_limit_is_accepted(clearbit):
    body = PNG + b"\x00" * (1000 - len(PNG))
    clearbit.routes["/acme.com"] = image(body)
    assert clients.clearbit_logo(ImageFetcher(clearbit.url, max_bytes=1000), "acme.com").body == body
    assert clients.clearbit_logo(ImageFetcher(clearbit.url, max_bytes=999), "acme.com") is None


@pytest.mark.parametrize("content_type, body", [
    ("text/html; charset=utf-8", b"<html><body>Parked domain</body></html>"),
    ("image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'),
    ("image/png", b"<html>a page that claims to be a PNG</html>"),  # the signature is checked
    ("image/webp", b"RIFF\x00\x00\x00\x00WAVEfmt "),
    ("application/octet-stream", PNG),
    (None, PNG),
    ("image/png", b""),
])
def test_what_is_not_an_accepted_raster_image_is_no_image(clearbit, fetcher, content_type, body):
    clearbit.routes["/acme.com"] = answer(200, content_type, body)
    assert clients.clearbit_logo(fetcher, "acme.com") is None


def test_a_compressed_body_is_refused(clearbit, fetcher):
    deflated = answer(200, "image/png", zlib.compress(PNG), headers=[("Content-Encoding", "deflate")])
    clearbit.routes["/acme.com"] = deflated
    assert clients.clearbit_logo(fetcher, "acme.com") is None
    assert clearbit.request_headers[0]["Accept-Encoding"] == "identity"


# --- redirects and the one host -----------------------------------------------------------------

@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_a_redirect_to_another_host_is_not_followed(clearbit, stand_ins, fetcher, host):
    elsewhere = stand_ins()
    elsewhere.routes["/logo.png"] = image()
    clearbit.routes["/acme.com"] = redirect(f"http://{host}:{elsewhere.port}/logo.png")
    assert clients.clearbit_logo(fetcher, "acme.com") is None
    assert elsewhere.requests == []


def test_a_protocol_relative_redirect_is_not_followed(clearbit, stand_ins, fetcher):
    elsewhere = stand_ins()
    clearbit.routes["/acme.com"] = redirect(f"//localhost:{elsewhere.port}/logo.png")
    assert clients.clearbit_logo(fetcher, "acme.com") is None
    assert elsewhere.requests == []


def test_a_redirect_within_the_host_is_followed(clearbit, fetcher):
    clearbit.routes["/acme.com"] = redirect("/logos/acme.png?v=2")
    clearbit.routes["/logos/acme.png"] = image()
    assert clients.clearbit_logo(fetcher, "acme.com") == domain.Image("image/png", PNG)
    assert clearbit.requests == ["/acme.com", "/logos/acme.png?v=2"]


def test_a_redirect_loop_ends(clearbit, fetcher):
    clearbit.routes["/acme.com"] = redirect("/acme.com")
    assert clients.clearbit_logo(fetcher, "acme.com") is None
    assert len(clearbit.requests) == clients.MAX_REDIRECTS + 1


def test_environment_proxies_are_ignored(clearbit, stand_ins, monkeypatch):
    proxy = stand_ins()
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    clearbit.routes["/acme.com"] = image()
    assert clients.clearbit_logo(ImageFetcher(clearbit.url), "acme.com") == domain.Image("image/png", PNG)
    assert proxy.requests == []


@pytest.mark.parametrize("path", ["", "/acme.com", "a//b", "../admin", "./x", "acme.com/.."])
def test_a_path_that_could_escape_the_base_is_refused(clearbit, fetcher, path):
    with pytest.raises(ValueError, match="path"):
        fetcher.fetch(path)
    assert clearbit.requests == []


def test_a_path_segment_cannot_name_another_host(clearbit, stand_ins, fetcher):
    victim = stand_ins()
    assert fetcher.fetch(f"@127.0.0.1:{victim.port}") is None
    assert fetcher.fetch(f"http:%2F%2F127.0.0.1:{victim.port}") is None
    assert victim.requests == []
    assert clearbit.requests == [f"/%40127.0.0.1%3A{victim.port}", f"/http%3A%252F%252F127.0.0.1%3A{victim.port}"]


@pytest.mark.parametrize("bad", ["127.0.0.1", "localhost", "acme.com/../x", "acme.com?x=1", "", "ACME.com"])
def test_clearbit_logo_asks_only_for_public_host_names(clearbit, fetcher, bad):
    with pytest.raises(ValueError, match="domain"):
        clients.clearbit_logo(fetcher, bad)
    assert clearbit.requests == []


def test_gravatar_asks_for_the_hash_with_404_default_and_size(gravatar):
    gravatar.routes[f"/{BOB_HASH}"] = image(JPEG, "image/jpeg")
    got = clients.gravatar(ImageFetcher(gravatar.url + "/avatar/"), BOB_HASH)
    assert got is None  # the base path is part of the URL: /avatar/<hash>
    gravatar.routes[f"/avatar/{BOB_HASH}"] = image(JPEG, "image/jpeg")
    assert clients.gravatar(ImageFetcher(gravatar.url + "/avatar"), BOB_HASH) == domain.Image("image/jpeg", JPEG)
    assert gravatar.requests[-1] == f"/avatar/{BOB_HASH}?d=404&s=200"


@pytest.mark.parametrize("bad", ["", "bob@acme.com", BOB_HASH.upper(), BOB_HASH + "/x", "../" + BOB_HASH[3:]])
def test_gravatar_asks_only_for_a_hash(gravatar, bad):
    with pytest.raises(ValueError, match="email_hash"):
        clients.gravatar(ImageFetcher(gravatar.url), bad)
    assert gravatar.requests == []


# --- the whole chain over real HTTP -------------------------------------------------------------

def test_chain_clearbit_logo_first(clearbit, gravatar):
    clearbit.routes["/acme.com"] = image()
    gravatar.routes[f"/{BOB_HASH}"] = image(JPEG, "image/jpeg")
    avatar = domain.resolve(CUSTOMER, fetchers_for(clearbit, gravatar))
    assert (avatar.source, avatar.content_type, avatar.body) == ("clearbit", "image/png", PNG)
    assert avatar.etag == '"%s"' % hashlib.sha256(PNG).hexdigest()
    assert gravatar.requests == []


def test_chain_gravatar_when_clearbit_has_no_logo(clearbit, gravatar):
    clearbit.routes["/acme.com"] = answer(200, "text/html", b"<html>no logo</html>")
    gravatar.routes[f"/{BOB_HASH}"] = image(JPEG, "image/jpeg")
    avatar = domain.resolve(CUSTOMER, fetchers_for(clearbit, gravatar))
    assert (avatar.source, avatar.body) == ("gravatar", JPEG)
    assert clearbit.requests == ["/acme.com"]
    assert gravatar.requests == [f"/{BOB_HASH}?d=404&s=200"]


@pytest.mark.parametrize("clearbit_route", [answer(500, "text/plain", b"down"), slow])
def test_chain_reports_a_clearbit_outage_and_goes_on(clearbit, gravatar, clearbit_route):
    clearbit.routes["/acme.com"] = clearbit_route
    gravatar.routes[f"/{BOB_HASH}"] = image()
    reports = Reports()
    avatar = domain.resolve(CUSTOMER, fetchers_for(clearbit, gravatar), report=reports)
    assert avatar.source == "gravatar"
    assert [(source, type(error)) for source, error in reports] == [("clearbit", FetchFailed)]


def test_chain_generates_the_initial_when_neither_source_has_an_image(clearbit, gravatar):
    reports = Reports()
    avatar = domain.resolve({**CUSTOMER, "company": "東京電力"}, fetchers_for(clearbit, gravatar), report=reports)
    assert (avatar.source, avatar.content_type) == ("initials", "image/svg+xml")
    assert "東".encode() in avatar.body
    assert reports == []
    assert len(clearbit.requests) == len(gravatar.requests) == 1


def test_chain_generates_the_initial_when_both_sources_are_down(clearbit, gravatar):
    clearbit.close()
    gravatar.routes[f"/{BOB_HASH}"] = answer(503, "text/plain", b"maintenance")
    reports = Reports()
    avatar = domain.resolve({**CUSTOMER, "company": "🍕 pizza"}, fetchers_for(clearbit, gravatar), report=reports)
    assert avatar.source == "initials"
    assert b">P</text>" in avatar.body
    assert [source for source, _ in reports] == ["clearbit", "gravatar"]


@pytest.mark.parametrize("outage", [answer(503, "text/plain", b"maintenance"), answer(429), slow],
                         ids=["503", "429", "black-holed"])
def test_a_source_that_keeps_failing_is_paused_then_tried_again(clearbit, gravatar, outage):
    gravatar.routes[f"/{BOB_HASH}"] = outage
    fetchers = fetchers_for(clearbit, gravatar, circuit=(3, 0.5))
    outcomes = []
    for _ in range(8):
        reports = Reports()
        outcomes.append((domain.resolve(CUSTOMER, fetchers, report=reports).source,
                         [type(error) for _, error in reports]))
    # three fetches fail; the next five are refused without asking, and fall back the same way
    assert outcomes == [("initials", [FetchFailed])] * 3 + [("initials", [CircuitOpen])] * 5
    assert len(gravatar.requests) == 3
    assert len(clearbit.requests) == 8  # "no logo" is an answer, not an outage: Clearbit is still asked

    time.sleep(0.6)  # the pause is over: one trial fetch, and the source answers again
    gravatar.routes[f"/{BOB_HASH}"] = image()
    assert domain.resolve(CUSTOMER, fetchers).source == "gravatar"
    assert domain.resolve(CUSTOMER, fetchers).source == "gravatar"
    assert len(gravatar.requests) == 5


def test_a_failed_trial_pauses_the_source_again(clearbit, gravatar):
    gravatar.routes[f"/{BOB_HASH}"] = answer(500, "text/plain", b"down")
    fetchers = fetchers_for(clearbit, gravatar, circuit=(2, 0.3))
    for _ in range(2):
        domain.resolve(CUSTOMER, fetchers, report=Reports())
    time.sleep(0.4)
    reports = Reports()
    domain.resolve(CUSTOMER, fetchers, report=reports)  # the trial
    domain.resolve(CUSTOMER, fetchers, report=reports)  # paused again at once
    assert [type(error) for _, error in reports] == [FetchFailed, CircuitOpen]
    assert len(gravatar.requests) == 3


@pytest.mark.parametrize("website", [
    "http://127.0.0.1:{port}/", "https://evil@127.0.0.1:{port}", "http://localhost:{port}/",
    "http://2130706433:{port}/", "http://0x7f.0.0.1:{port}/", "http://[::1]:{port}/", "127.0.0.1:{port}",
])
def test_a_website_on_a_private_address_is_never_contacted(clearbit, gravatar, stand_ins, website):
    victim = stand_ins()  # listening on 127.0.0.1, where the website points
    victim.routes["/"] = image()
    customer = {**CUSTOMER, "website_url": website.format(port=victim.port), "email": ""}
    avatar = domain.resolve(customer, fetchers_for(clearbit, gravatar))
    assert avatar.source == "initials"
    assert victim.requests == []
    assert clearbit.requests == [] and gravatar.requests == []


# --- settings -----------------------------------------------------------------------------------

def test_settings_default_when_the_environment_is_silent():
    assert FetchSettings.from_environ({}) == FetchSettings(
        "https://logo.clearbit.com", "https://www.gravatar.com/avatar", (2.0, 3.0), 512 * 1024)
    assert FetchSettings.from_environ({"CLEARBIT_LOGO_URL": "", "AVATAR_MAX_BYTES": ""}) == FetchSettings()


def test_settings_come_from_the_environment():
    settings = FetchSettings.from_environ({
        "CLEARBIT_LOGO_URL": "http://127.0.0.1:9001", "GRAVATAR_URL": "http://127.0.0.1:9002/avatar",
        "AVATAR_FETCH_TIMEOUT": "1.5", "AVATAR_MAX_BYTES": "1000"})
    assert settings == FetchSettings("http://127.0.0.1:9001", "http://127.0.0.1:9002/avatar", (1.5, 1.5), 1000)
    assert FetchSettings.from_environ({"AVATAR_FETCH_TIMEOUT": "1,4"}).timeout == (1.0, 4.0)
    assert FetchSettings.from_environ({"AVATAR_SOURCE_CIRCUIT": "3,10"}).circuit == (3, 10.0)
    assert FetchSettings.from_environ({}).circuit == (5, 30.0)


@pytest.mark.parametrize("name, value", [
    ("AVATAR_FETCH_TIMEOUT", "soon"), ("AVATAR_FETCH_TIMEOUT", "0"), ("AVATAR_FETCH_TIMEOUT", "1,2,3"),
    ("AVATAR_MAX_BYTES", "-5"), ("AVATAR_MAX_BYTES", "1e6"), ("AVATAR_MAX_BYTES", "0"),
    ("AVATAR_SOURCE_CIRCUIT", "5"), ("AVATAR_SOURCE_CIRCUIT", "0,30"), ("AVATAR_SOURCE_CIRCUIT", "5,0"),
    ("AVATAR_SOURCE_CIRCUIT", "5,nan"), ("AVATAR_SOURCE_CIRCUIT", "five,30"), ("AVATAR_SOURCE_CIRCUIT", "5,inf"),
])
def test_bad_settings_name_the_variable(name, value):
    with pytest.raises(ValueError, match=name):
        FetchSettings.from_environ({name: value})


@pytest.mark.parametrize("kwargs, field", [
    ({"base_url": "ftp://logo.example.com"}, "base_url"),
    ({"base_url": "https://user:pw@logo.clearbit.com"}, "base_url"),
    ({"base_url": "https://logo.clearbit.com?key=1"}, "base_url"),
    ({"base_url": "logo.clearbit.com"}, "base_url"),
    ({"base_url": "https://logo.clearbit.com", "allowed_types": {"image/png", "image/svg+xml"}}, "allowed_types"),
    ({"base_url": "https://logo.clearbit.com", "timeout": (0, 1)}, "timeout"),
    ({"base_url": "https://logo.clearbit.com", "max_bytes": 0}, "max_bytes"),
])
def test_image_fetcher_refuses_a_bad_configuration(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ImageFetcher(**kwargs)
