"""Vhost isolation through the management HTTP API, against a local stand-in of that API."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tools.isolation import (
    ManagementApi, created_at, create_vhost, delete_vhost, management_endpoint, prune_vhosts, stale_vhosts,
    throwaway_vhost_name, with_vhost,
)
from tools.stack import StackError, free_port


# --- where the API is -------------------------------------------------------------------------

def test_the_api_is_on_the_amqp_host_at_15672_with_the_uri_credentials():
    assert management_endpoint("amqp://roster:s%40cret@broker.internal:5672/prod") == (
        "http://broker.internal:15672", ("roster", "s@cret"))


def test_without_credentials_in_the_uri_the_api_is_asked_as_guest():
    assert management_endpoint("amqp://localhost") == ("http://localhost:15672", ("guest", "guest"))


def test_rabbitmq_management_url_wins_and_keeps_the_uri_credentials_unless_it_has_its_own():
    uri = "amqp://roster:pw@broker:5672/"

    assert management_endpoint(uri, "https://mq.example.com/rabbit/") == (
        "https://mq.example.com/rabbit", ("roster", "pw"))
    assert management_endpoint(uri, "http://admin:root@127.0.0.1:25672") == (
        "http://127.0.0.1:25672", ("admin", "root"))


def test_with_vhost_replaces_the_path():
    assert with_vhost("amqp://guest:guest@localhost:5672/", "roster_it_x") == "amqp://guest:guest@localhost:5672/roster_it_x"
    assert with_vhost("amqp://guest:guest@localhost:5672/old", "new") == "amqp://guest:guest@localhost:5672/new"


# --- which vhosts are leftovers -----------------------------------------------------------------

def test_a_throwaway_name_records_when_it_was_made():
    name = throwaway_vhost_name("roster_it", now=1_764_190_000)

    assert name.startswith("roster_it_1764190000_")
    assert created_at(name) == 1_764_190_000


@pytest.mark.parametrize("name", ["/", "roster_test_ab12cd34", "other_test_1764190000_ab12", "nameko_test_x"])
def test_names_without_our_prefix_and_stamp_are_never_leftovers(name):
    assert created_at(name) is None


def test_stale_vhosts_are_the_stamped_throwaways_older_than_the_limit():
    now = 1_764_200_000
    names = ["/", "roster_test_1764190000_aa", "roster_bench_1764199000_bb", "roster_it_1764100000_cc",
             "roster_test_ab12cd34"]

    assert stale_vhosts(names, now=now, older_than=3600) == ["roster_test_1764190000_aa", "roster_it_1764100000_cc"]


# --- the calls, on a stand-in of the management API ----------------------------------------------

class FakeManagementApi(BaseHTTPRequestHandler):
    """Keeps vhosts in memory and records each request (method, path, auth header, body)."""

    vhosts: dict
    requests: list

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.requests.append((self.command, self.path, self.headers.get("Authorization"), body))
        if self.headers.get("Authorization") != "Basic cm9zdGVyOnB3":  # roster:pw
            return self._answer(401, {"error": "not_authorised"})
        parts = self.path.split("/")  # ['', 'api', 'vhosts', name] or ['', 'api', 'permissions', vhost, user]
        if self.command == "GET" and parts[2] == "vhosts":
            return self._answer(200, [{"name": name} for name in self.vhosts])
        if self.command == "PUT" and parts[2] == "vhosts":
            self.vhosts[parts[3]] = body
            return self._answer(201, None)
        if self.command == "PUT" and parts[2] == "permissions":
            return self._answer(201 if parts[3] in self.vhosts else 404, None)
        if self.command == "DELETE" and parts[2] == "vhosts":
            return self._answer(204 if self.vhosts.pop(parts[3], None) is not None else 404, None)
        return self._answer(405, None)

    do_GET = do_PUT = do_DELETE = _handle

    def _answer(self, status, payload):
        data = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def fake_api(monkeypatch):
    handler = type("Handler", (FakeManagementApi,), {"vhosts": {"/": {}}, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("RABBITMQ_MANAGEMENT_URL", f"http://127.0.0.1:{server.server_port}")
    yield handler
    server.shutdown()
    server.server_close()


def test_create_vhost_makes_it_and_grants_the_amqp_user_everything(fake_api):
    vhost, uri = create_vhost("amqp://roster:pw@broker:5672/", prefix="roster_it")

    assert uri == f"amqp://roster:pw@broker:5672/{vhost}"
    assert vhost in fake_api.vhosts
    assert [(method, path, body) for method, path, _, body in fake_api.requests] == [
        ("PUT", f"/api/vhosts/{vhost}", {"description": "Roster throwaway vhost"}),
        ("PUT", f"/api/permissions/{vhost}/roster", {"configure": ".*", "write": ".*", "read": ".*"}),
    ]


def test_delete_vhost_removes_it_and_a_vhost_already_gone_is_no_error(fake_api):
    fake_api.vhosts["roster_test_1764190000_aa"] = {}

    delete_vhost("roster_test_1764190000_aa", "amqp://roster:pw@broker:5672/")
    delete_vhost("roster_test_1764190000_aa", "amqp://roster:pw@broker:5672/")

    assert "roster_test_1764190000_aa" not in fake_api.vhosts
    assert [method for method, *_ in fake_api.requests] == ["DELETE", "DELETE"]


def test_prune_deletes_only_old_throwaway_vhosts(fake_api):
    fresh = throwaway_vhost_name("roster_test")
    fake_api.vhosts.update({"roster_it_1000000000_aa": {}, fresh: {}, "keep": {}})

    deleted = prune_vhosts("amqp://roster:pw@broker:5672/", older_than=3600)

    assert deleted == ["roster_it_1000000000_aa"]
    assert sorted(fake_api.vhosts) == sorted(["/", fresh, "keep"])


def test_refused_credentials_are_a_clear_error(fake_api):
    with pytest.raises(StackError, match="refused user 'guest'"):
        ManagementApi.from_environment("amqp://guest:guest@broker:5672/").vhosts()


def test_an_api_that_does_not_answer_says_how_to_enable_it(monkeypatch):
    monkeypatch.setenv("RABBITMQ_MANAGEMENT_URL", f"http://127.0.0.1:{free_port()}")

    with pytest.raises(StackError, match="rabbitmq-plugins enable rabbitmq_management"):
        create_vhost("amqp://guest:guest@localhost:5672/")
