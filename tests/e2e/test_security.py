"""Security and logs on a platform of its own (gateway + customers, own vhost, own SQLite files):
keys in a hashed file, the per-key rate limit (raw and through the official client), JSON logs,
no trace or SQL in an answer when the service fails unexpectedly, /readyz naming what is missing.

Its own platform because it needs settings the shared one must not have (a rate limit, JSON logs)
and breaks the customers database on purpose."""
import base64
import json
import os
import sqlite3
import time
from pathlib import Path

import chartmogul
import pytest
import requests
from chartmogul import retry_request

from gateway.auth import keys_file_line
from tests.e2e.support import eventually
from tools import keys as keys_tool
from tools.isolation import create_vhost, delete_vhost
from tools.stack import DEFAULT_AMQP_URI, SERVICES, Stack, StackError, ensure_rabbitmq, free_port

ROOT = Path(__file__).resolve().parents[2]
OWNER = "sec-owner-key-0123456789"
FILED = "sec-filed-key-0123456789"  # only in the keys file, hashed
RATE, BURST = 1, 3  # a refill every second: the burst goes out well within one


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    base_uri = os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI
    ensure_rabbitmq(base_uri)
    vhost, amqp_uri = create_vhost(base_uri)
    data_dir = tmp_path_factory.mktemp("security-data")
    keys_file = data_dir / "api_keys"
    keys_file.write_text(keys_file_line(FILED, "staff") + "\n")
    env = {name: value for name, value in os.environ.items()
           if not name.endswith("DATABASE_URL") and name not in ("METRICS_PORT", "DATABASE_SCHEMA_PREFIX")}
    env.update({
        "AMQP_URI": amqp_uri, "DATA_DIR": str(data_dir), "GATEWAY_PORT": str(free_port()),
        "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PROCESSES": "1",
        "API_KEYS": f"{OWNER}:owner", "API_KEYS_FILE": str(keys_file),
        "RATE_LIMIT_PER_SECOND": str(RATE), "RATE_LIMIT_BURST": str(BURST), "LOG_FORMAT": "json",
    })
    stack = Stack(env, ROOT, tmp_path_factory.mktemp("security-logs"),
                  services={name: SERVICES[name] for name in ("customers", "gateway")})
    try:
        stack.start()
        stack.wait_ready(timeout=90)
    except StackError as error:
        stack.stop()
        delete_vhost(vhost)
        pytest.fail(f"The security platform did not start:\n{error}", pytrace=False)
    stack.keys_file = keys_file
    yield stack
    stack.stop()
    delete_vhost(vhost)


def get(platform, path, key=OWNER, **kwargs):
    return requests.get(platform.gateway_url + path, auth=(key, "") if key else None, timeout=10, **kwargs)


def wait_for_a_full_bucket():
    time.sleep(BURST / RATE)  # tokens refill at RATE per second: then BURST requests pass again


def test_a_key_from_the_hashed_file_works_and_keys_added_or_removed_take_effect(platform):
    assert get(platform, "/v1/ping", FILED).status_code == 200
    added = keys_tool.add(platform.keys_file, "read_only")
    eventually(lambda: get(platform, "/v1/ping", added).status_code == 200)
    keys_tool.remove(platform.keys_file, keys_file_line(added, "read_only").split(":")[1][:16])
    eventually(lambda: get(platform, "/v1/ping", added).status_code == 401)
    assert added not in platform.keys_file.read_text()


def test_over_the_rate_a_key_gets_429_with_retry_after_and_other_keys_do_not(platform):
    wait_for_a_full_bucket()
    answers = [get(platform, "/v1/ping", FILED) for _ in range(BURST + 1)]

    assert [answer.status_code for answer in answers[:BURST]] == [200] * BURST
    refused = answers[-1]
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["code"] == 429
    assert get(platform, "/v1/ping", OWNER).status_code == 200  # its own bucket


def test_the_official_client_waits_out_a_429_and_succeeds(platform, monkeypatch):
    def session_retrying_on_http_too(retries, backoff_factor):
        # the client mounts its retry policy on https:// only; the platform here speaks http
        session = retry_request.requests_retry_session(retries, backoff_factor)
        session.mount("http://", retry_request._retry_adapter(retries, backoff_factor))
        return session

    monkeypatch.setattr(chartmogul.resource, "requests_retry_session", session_retrying_on_http_too)
    config = chartmogul.Config(FILED, request_timeout=10, max_retries=5, backoff_factor=0)
    config.uri = platform.gateway_url + "/v1"
    wait_for_a_full_bucket()
    before = refused_pings(platform)

    for _ in range(BURST + 3):
        assert chartmogul.Ping.ping(config).get().data == "pong!"
    assert refused_pings(platform) > before  # it was refused, and retried after Retry-After


def refused_pings(platform) -> float:
    for line in get(platform, "/metrics", None).text.splitlines():
        if line.startswith('roster_http_requests_total{method="GET",route="/v1/ping",status="429"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_logs_are_json_lines_carrying_the_request_id_and_no_key(platform):
    request_id = "sec-json-log-check"
    get(platform, "/v1/ping", f"not-a-key-{request_id}", headers={"X-Request-Id": request_id})
    log = platform.log_paths("gateway")[0]

    lines = eventually(lambda: [line for line in log.read_text().splitlines() if request_id in line])
    entries = [json.loads(line) for line in lines]
    assert all(entry["request_id"] == request_id for entry in entries)
    text = log.read_text()
    for secret in (OWNER, FILED, f"not-a-key-{request_id}"):
        assert secret not in text and base64.b64encode(f"{secret}:".encode()).decode() not in text


def test_readyz_names_the_services_that_do_not_answer(platform):
    response = get(platform, "/readyz", None)

    assert response.status_code == 503
    body = response.json()
    assert body["code"] == 503 and "contacts: no answer" in body["message"]
    assert body["checks"]["customers"] == "ok" and body["checks"]["broker"] == "ok"


def test_an_unexpected_failure_answers_500_without_trace_or_sql(platform):
    database = Path(platform.env["DATA_DIR"]) / "customers.db"
    with sqlite3.connect(database) as connection:
        connection.execute("ALTER TABLE customers RENAME TO customers_gone")
    try:
        response = get(platform, "/v1/customers")
    finally:
        with sqlite3.connect(database) as connection:
            connection.execute("ALTER TABLE customers_gone RENAME TO customers")

    assert response.status_code == 500, response.text
    assert response.json() == {"code": 500, "message": "Internal error", "param": None}
    for leak in ("Traceback", "SELECT", "sqlite", "customers_gone", "File ", "Error"):
        assert leak not in response.text
