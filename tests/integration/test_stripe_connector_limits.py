"""The Stripe client against a hostile local server: trickled, huge and stalled bodies, looping cursors."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from services.billing_sync.connectors import stripe
from services.billing_sync.connectors.errors import MalformedObject, UpstreamUnavailable
from services.billing_sync.connectors.stripe import StripeClient


class Hostile:
    """A local HTTP server answering every GET with `behaviour(handler)`; counts the requests."""

    def __init__(self, behaviour):
        hostile = self
        self.requests = []
        self.stop = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):
                pass

            def do_GET(self):
                hostile.requests.append(self.path)
                try:
                    behaviour(self, hostile)
                except OSError:
                    pass  # the client gave up: expected

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def client_of(server, **options):
    settings = {"timeout": (2, 5), "backoff": 0.01, "max_retries": 2, **options}
    return StripeClient(server.url, "sk_test", **settings)


def trickle(handler, hostile, *, chunked: bool):
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    if chunked:
        handler.send_header("Transfer-Encoding", "chunked")
    else:
        handler.send_header("Content-Length", "1000")
    handler.end_headers()
    while not hostile.stop.is_set():
        handler.wfile.write(b"1\r\n \r\n" if chunked else b" ")
        handler.wfile.flush()
        hostile.stop.wait(0.1)


# -- 1: a trickled body meets the total deadline, and is retried like a timeout ------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("chunked", [False, True])
def test_a_trickled_body_passes_the_deadline_and_is_retried_then_unavailable(monkeypatch, chunked):
    monkeypatch.setattr(stripe, "REQUEST_DEADLINE", 0.5)
    with Hostile(lambda handler, hostile: trickle(handler, hostile, chunked=chunked)) as server:
        with pytest.raises(UpstreamUnavailable) as exc_info:
            client_of(server).get("/v1/customers/cus_1")
        assert "took longer than 0.5 s" in str(exc_info.value)
        assert "after 2 retries" in str(exc_info.value)
        assert len(server.requests) == 3


# -- 2: a huge body is cut at the cap, refused as malformed and not retried ----------------------
def huge(handler, hostile, *, with_length: bool):
    body = json.dumps({"id": "cus_1", "padding": "x" * 5000}).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    if with_length:
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        return
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    while not hostile.stop.is_set():  # endless: only the cap ends it
        handler.wfile.write(b"400\r\n" + b"x" * 1024 + b"\r\n")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("with_length", [True, False])
def test_a_body_over_the_cap_is_a_malformed_object_naming_the_size_and_not_retried(monkeypatch, with_length):
    monkeypatch.setattr(stripe, "MAX_BODY_BYTES", 1000)
    with Hostile(lambda handler, hostile: huge(handler, hostile, with_length=with_length)) as server:
        with pytest.raises(MalformedObject) as exc_info:
            client_of(server).get("/v1/customers/cus_1")
        assert exc_info.value.field == "body"
        assert "larger than 1000 bytes" in str(exc_info.value)
        assert len(server.requests) == 1


# -- 3: a stalled body is a read timeout: retried with backoff ----------------------------------
def stall(handler, hostile):
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "100")
    handler.end_headers()
    handler.wfile.write(b'{"id": ')
    handler.wfile.flush()
    hostile.stop.wait(5)


@pytest.mark.timeout(30)
def test_a_stalled_body_is_retried_then_upstream_unavailable():
    with Hostile(stall) as server:
        with pytest.raises(UpstreamUnavailable) as exc_info:
            client_of(server, timeout=(2, 0.3)).get("/v1/customers/cus_1")
        assert "body interrupted" in str(exc_info.value)
        assert len(server.requests) == 3


def stall_once_then_answer(handler, hostile):
    if len(hostile.requests) == 1:
        stall(handler, hostile)
        return
    answer_json(handler, {"id": "cus_1"})


def answer_json(handler, payload) -> None:
    body = json.dumps(payload).encode()
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.mark.timeout(30)
def test_a_stalled_body_then_a_good_answer_succeeds():
    with Hostile(stall_once_then_answer) as server:
        assert client_of(server, timeout=(2, 0.3)).get("/v1/customers/cus_1") == {"id": "cus_1"}
        assert len(server.requests) == 2


# -- 4: paging between two cursors ends -----------------------------------------------------------
def alternating(handler, hostile):
    after = parse_qs(urlsplit(handler.path).query).get("starting_after", [None])[0]
    answer_json(handler, {"object": "list", "data": [{"id": "cus_B" if after == "cus_A" else "cus_A"}],
                          "has_more": True})


@pytest.mark.timeout(30)
def test_paging_that_alternates_between_two_cursors_fails_on_the_repeat():
    with Hostile(alternating) as server:
        with pytest.raises(MalformedObject) as exc_info:
            list(client_of(server).iter_list("/v1/customers"))
        assert exc_info.value.field == "data"
        assert "'cus_A' was already used" in str(exc_info.value)
        assert len(server.requests) == 3  # A, B, A again
