"""The page's own routes and its live stream, over raw HTTP: /v1/me, the stream tokens, server-sent
events of a customer's changes, many open streams beside normal requests, and a dead client's
stream freed by the WSGI server itself."""
import json
import socket

import eventlet
import pytest
import requests
from eventlet import wsgi
from werkzeug.wrappers import Response

from gateway.routes.stream import EventStream, StreamHub
from tests.e2e.web_support import unique


@pytest.fixture(scope="module")
def customer(http):
    source = http.post("/v1/data_sources", json={"name": unique("Stream source")}).json()
    made = http.post("/v1/customers", json={"data_source_uuid": source["uuid"], "external_id": unique(),
                                            "name": unique("Streamed")})
    assert made.status_code == 201, made.text
    return made.json()


class SseReader:
    """Reads server-sent events from a streaming response, one frame at a time."""

    def __init__(self, response: requests.Response):
        self.response = response
        self.lines = response.iter_lines(chunk_size=1, decode_unicode=True)

    def next_frame(self) -> dict:
        """Return {event, id, data (parsed), comment} of the next frame."""
        frame = {"event": None, "id": None, "data": None, "comment": None}
        for line in self.lines:
            if line == "":
                if any(frame.values()):
                    return frame
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "":
                frame["comment"] = value
            elif field == "data":
                frame["data"] = json.loads(value)
            elif field in ("event", "id"):
                frame[field] = value
        raise AssertionError("the stream ended")

    def next_change(self) -> dict:
        while True:
            frame = self.next_frame()
            if frame["event"] == "change":
                return frame


def open_stream(http, customer_uuid, role="read_only") -> SseReader:
    granted = http.post(f"/v1/customers/{customer_uuid}/events/token", role=role)
    assert granted.status_code == 200, granted.text
    response = http.session.get(http.base_url + granted.json()["url"], stream=True, timeout=(5, 30))
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    reader = SseReader(response)
    assert reader.next_frame()["event"] == "ready"
    return reader


def test_me_tells_the_role_and_never_the_key(http, api_keys):
    for role in ("read_only", "staff", "admin", "owner"):
        answer = http.get("/v1/me", role=role)
        assert answer.status_code == 200
        assert answer.json()["role"] == role and api_keys[role] not in answer.text
    assert http.get("/v1/me", role="read_only").json()["can_write"] is False
    assert http.get("/v1/me", role="staff").json()["can_write"] is True
    assert http.get("/v1/me", role="staff").json()["can_admin"] is False
    assert http.get("/v1/me", role=None).status_code == 401


def test_the_openapi_document_lists_the_page_routes_and_not_the_page(http):
    paths = http.get("/v1/openapi.json", role=None).json()["paths"]
    for path in ("/v1/me", "/v1/customers/{uuid}/events/token", "/v1/customers/{uuid}/events",
                 "/v1/customers/{uuid}/metrics", "/v1/customers/find"):
        assert path in paths
    assert not [path for path in paths if path.startswith("/app")]


def test_the_page_and_its_files_are_served_with_a_strict_policy(http):
    page = http.get("/app/customers/cus_anything", role=None)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    script = http.get("/app/assets/js/main.js", role=None)
    assert script.status_code == 200 and script.headers["Content-Type"].startswith("text/javascript")
    again = http.get("/app/assets/js/main.js", role=None, headers={"If-None-Match": script.headers["ETag"]})
    assert again.status_code == 304
    for path in ("/app/assets/nothing.js", "/app/assets/../routes/app.py", "/app/assets/%2e%2e/service.py"):
        assert http.get(path, role=None).status_code == 404


def test_metrics_and_find_answer_for_the_header_and_the_list(http, customer):
    metrics = http.get(f"/v1/customers/{customer['uuid']}/metrics", role="read_only").json()
    assert metrics == {**metrics, "mrr": 0, "arr": 0, "net_payments": 0, "customer_uuid": customer["uuid"]}
    found = http.get("/v1/customers/find", params={"q": customer["name"].upper()}, role="read_only").json()
    assert [c["uuid"] for c in found["entries"]] == [customer["uuid"]]
    refused = http.get("/v1/customers/find", params={"q": "  "}, role="read_only")
    assert refused.status_code == 422 and refused.json()["param"] == "q"


def test_a_token_needs_a_key_and_a_customer_that_exists(http, customer):
    assert http.post(f"/v1/customers/{customer['uuid']}/events/token", role=None).status_code == 401
    missing = http.post("/v1/customers/cus_00000000-0000-4000-8000-000000000000/events/token", role="read_only")
    assert missing.status_code == 404


def test_the_stream_refuses_a_missing_forged_or_foreign_token(http, customer):
    base = f"{http.base_url}/v1/customers/{customer['uuid']}/events"
    for url in (base, f"{base}?token=forged.token"):
        refused = requests.get(url, timeout=10)
        assert refused.status_code in (400, 401) and "token" in refused.text
    other = http.post("/v1/customers", json={"data_source_uuid": customer["data_source_uuid"],
                                             "external_id": unique(), "name": "Other"}).json()
    token = http.post(f"/v1/customers/{other['uuid']}/events/token", role="read_only").json()["token"]
    refused = requests.get(f"{base}?token={token}", timeout=10)
    assert refused.status_code == 401 and refused.json()["param"] == "token"
    assert "another customer" in refused.json()["message"]


def test_a_read_only_stream_hears_changes_of_its_customer_only(http, customer):
    reader = open_stream(http, customer["uuid"], role="read_only")
    try:
        other = http.post("/v1/customers", json={"data_source_uuid": customer["data_source_uuid"],
                                                 "external_id": unique(), "name": "Not mine"}).json()
        assert http.patch(f"/v1/customers/{other['uuid']}", json={"company": "Elsewhere"}).status_code == 200
        assert http.patch(f"/v1/customers/{customer['uuid']}", json={"company": "Streamed Co"}).status_code == 200
        change = reader.next_change()
        assert change["data"]["event"] == "customers.customer_updated"  # not the other customer's
        assert change["data"]["customer_uuid"] == customer["uuid"] and "customer" in change["data"]["refresh"]
        assert change["id"] == change["data"]["event_id"]

        made = http.post(f"/v1/customers/{customer['uuid']}/contacts",
                         json={"data_source_uuid": customer["data_source_uuid"], "first_name": "Streamed"})
        assert made.status_code == 201
        seen = set()
        while not {"contacts.contact_created", "activities.activity_recorded"} <= seen:
            seen.add(reader.next_change()["data"]["event"])
    finally:
        reader.response.close()


def test_an_idle_stream_gets_heartbeats(http, customer):
    reader = open_stream(http, customer["uuid"])
    try:
        assert reader.next_frame()["comment"] == "heartbeat"
    finally:
        reader.response.close()


def test_many_open_streams_leave_requests_answered(http, customer, api_keys):
    readers = [open_stream(http.__class__(http.base_url, api_keys), customer["uuid"]) for _ in range(30)]
    try:
        for _ in range(20):
            assert http.get("/v1/ping", role="read_only").status_code == 200
        assert http.patch(f"/v1/customers/{customer['uuid']}", json={"company": unique("Many")}).status_code == 200
        for reader in readers:
            assert reader.next_change()["data"]["event"] == "customers.customer_updated"
    finally:
        for reader in readers:
            reader.response.close()


# ---- a dead client, on eventlet's own WSGI server (what the gateway's nameko server runs) ------

@pytest.fixture
def stream_server():
    """A WSGI server answering every request with a live stream of one hub (heartbeat 50 ms)."""
    hub = StreamHub(max_streams=3)

    def app(environ, start_response):
        environ["eventlet.minimum_write_chunk_size"] = 0
        try:
            subscription = hub.subscribe("cus_1", "read_only")
        except Exception as refused:
            return Response(str(refused), status=503)(environ, start_response)
        return Response(EventStream(subscription, heartbeat=0.05), mimetype="text/event-stream")(environ, start_response)

    listener = eventlet.listen(("127.0.0.1", 0))
    server = eventlet.spawn(wsgi.server, listener, app, log_output=False)
    yield hub, listener.getsockname()[1]
    server.kill()
    listener.close()


def raw_stream(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
    received = b""
    while b"event: ready" not in received:
        received += client.recv(4096)
    return client


def wait_until(check, seconds=10.0):
    deadline = eventlet.hubs.get_hub().clock() + seconds
    while not check():
        assert eventlet.hubs.get_hub().clock() < deadline, "gave up waiting"
        eventlet.sleep(0.02)


def test_a_client_that_goes_away_frees_its_stream(stream_server):
    hub, port = stream_server
    clients = [raw_stream(port) for _ in range(3)]
    wait_until(lambda: hub.open_count == 3)
    refused = socket.create_connection(("127.0.0.1", port), timeout=5)
    refused.sendall(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert refused.recv(4096).startswith(b"HTTP/1.1 503")  # at the bound, one more is refused
    refused.close()

    clients[0].close()
    clients[1].close()
    wait_until(lambda: hub.open_count == 1)  # found dead at the next heartbeats, their slots freed
    clients.append(raw_stream(port))
    wait_until(lambda: hub.open_count == 2)
    for client in clients[2:]:
        client.close()
    wait_until(lambda: hub.open_count == 0)
