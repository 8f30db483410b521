"""The whole platform, started once per test session with tools.stack.

Isolation from a `make run` on the same machine: a fresh RabbitMQ vhost, a fresh DATA_DIR,
a free gateway port and, on PostgreSQL, a unique schema prefix; all removed at the end.
"""
import os
import secrets
from pathlib import Path
from types import SimpleNamespace

import chartmogul
import pytest
import requests

from tests.avatar_stand_ins import StandIn
from tools.isolation import create_vhost, delete_vhost, drop_schemas, is_postgres, schema_prefix
from tools.stack import DEFAULT_AMQP_URI, Stack, StackError, ensure_rabbitmq, free_port

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("owner", "admin", "staff", "read_only")


@pytest.fixture(scope="session")
def api_keys():
    """{role: key}, one key per role."""
    return {role: f"test-{role}-{secrets.token_hex(8)}" for role in ROLES}


@pytest.fixture(scope="session")
def fuzz_key():
    """An owner key for the schemathesis fuzz alone: it also sends the key it was given as data
    (an external id, a name), which services may rightly echo in their logs; the test that no key
    is ever logged checks the other keys."""
    return f"test-fuzz-{secrets.token_hex(8)}"


@pytest.fixture(scope="session")
def avatar_sources():
    """Local stand-ins for Clearbit and Gravatar (`.clearbit`, `.gravatar`), started before the
    platform so its avatars service asks them, never the internet. Unknown paths answer 404;
    tests add routes for their own domains and email hashes (tests/avatar_stand_ins.py)."""
    clearbit, gravatar = StandIn(), StandIn()
    yield SimpleNamespace(clearbit=clearbit, gravatar=gravatar)
    clearbit.close()
    gravatar.close()


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory, api_keys, fuzz_key, avatar_sources):
    """The environment of the platform under test; cleans up its vhost and schemas."""
    base_uri = os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI
    try:
        ensure_rabbitmq(base_uri)
    except StackError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        vhost, amqp_uri = create_vhost(base_uri)
    except StackError as exc:
        pytest.fail(f"Could not create a test vhost: {exc}", pytrace=False)

    port = free_port()
    env = dict(os.environ)
    env.update({
        "AMQP_URI": amqp_uri,
        "DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "GATEWAY_PORT": str(port),
        "GATEWAY_HOST": "127.0.0.1",
        # Two gateway processes share the port, as in production: the suite proves what users
        # see holds whichever process answers (read-your-writes, cache eviction).
        "GATEWAY_PROCESSES": "2",
        "API_KEYS": ",".join([*(f"{key}:{role}" for role, key in api_keys.items()), f"{fuzz_key}:owner"]),
        # The avatars service's sources: the stand-ins above, with a short fetch timeout (the
        # slow stand-in waits 10 s; 1 s was too short for a quick answer on a busy CI machine).
        "CLEARBIT_LOGO_URL": avatar_sources.clearbit.url,
        "GRAVATAR_URL": avatar_sources.gravatar.url,
        "AVATAR_FETCH_TIMEOUT": "3",
        # Each service's Prometheus metrics at METRICS_PORT + 1 ... + 5 (tools/stack.py)
        "METRICS_PORT": str(free_port()),
    })
    database_url = env.get("DATABASE_URL", "")
    prefix = None
    if is_postgres(database_url):
        prefix = schema_prefix()
        env["DATABASE_SCHEMA_PREFIX"] = prefix
    try:
        yield env
    finally:
        delete_vhost(vhost)
        if prefix:
            drop_schemas(database_url, prefix)


@pytest.fixture(scope="session")
def stack(stack_env, tmp_path_factory):
    """The running platform (tools.stack.Stack); tests may stop_service/start_service on it."""
    log_dir = tmp_path_factory.mktemp("logs")
    platform = Stack(stack_env, ROOT, log_dir)
    failure = None
    try:
        platform.start()
        platform.wait_ready(timeout=90)
    except StackError as exc:
        failure = f"The platform did not start (logs in {log_dir}):\n{exc}"
    if failure:
        platform.stop()
        pytest.fail(failure, pytrace=False)
    yield platform
    platform.stop()


@pytest.fixture(scope="session")
def gateway_url(stack):
    return stack.gateway_url


@pytest.fixture(scope="session")
def amqp_uri(stack):
    return stack.amqp_uri


@pytest.fixture(scope="session")
def cm_config(gateway_url, api_keys):
    """cm_config(role="owner") -> a chartmogul.Config aimed at the gateway with that role's key."""

    def make(role: str = "owner") -> chartmogul.Config:
        config = chartmogul.Config(api_keys[role], request_timeout=30)
        config.uri = gateway_url + "/v1"
        return config

    return make


class Http:
    """Raw HTTP calls to the gateway: `http.get("/v1/ping", role="staff")`; role=None sends no key."""

    def __init__(self, base_url: str, api_keys: dict):
        self.base_url = base_url
        self.api_keys = api_keys
        self.session = requests.Session()

    def request(self, method: str, path: str, role: str | None = "owner", **kwargs) -> requests.Response:
        if role is not None:
            kwargs.setdefault("auth", (self.api_keys[role], ""))
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.base_url + path, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def put(self, path, **kwargs):
        return self.request("PUT", path, **kwargs)

    def patch(self, path, **kwargs):
        return self.request("PATCH", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)


@pytest.fixture(scope="session")
def owner(cm_config):
    """A chartmogul.Config with the owner key."""
    return cm_config("owner")


@pytest.fixture(scope="session")
def http(gateway_url, api_keys):
    client = Http(gateway_url, api_keys)
    yield client
    client.session.close()
