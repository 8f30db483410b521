"""A platform of a test's own, for tests that break infrastructure (kill services, drop the broker's
connections, cut the database), so the session platform of tests/e2e/conftest.py is never touched.

`PrivatePlatform(tmp_path, services=(...), **env)` starts the named services on a fresh vhost, DATA_DIR
and (on PostgreSQL) schema prefix, and removes them all on exit. `EventTap` is an outside subscriber:
a durable queue bound to a service's events exchange the way a nameko @event_handler binds one.
"""
from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

import requests
from kombu import Connection, Exchange, Queue

from tools.isolation import create_vhost, delete_vhost, drop_schemas, is_postgres, schema_prefix
from tools.stack import DEFAULT_AMQP_URI, SERVICES, Stack, ensure_rabbitmq, free_port

ROOT = Path(__file__).resolve().parents[2]


class PrivatePlatform:
    def __init__(self, tmp_path: Path, services=tuple(SERVICES), after_stop=None, **env):
        self.tmp_path = Path(tmp_path)
        self.key = f"private-{secrets.token_hex(8)}"
        self.services = {name: SERVICES[name] for name in services}
        self.extra_env = env
        self.after_stop = after_stop  # called once the processes are gone, before the schemas are dropped
        self.vhost = self.prefix = self.stack = None
        self.session = requests.Session()
        self.session.auth = (self.key, "")

    def __enter__(self) -> "PrivatePlatform":
        base_uri = os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI
        ensure_rabbitmq(base_uri)
        self.vhost, amqp_uri = create_vhost(base_uri)
        env = {**os.environ, "AMQP_URI": amqp_uri, "DATA_DIR": str(self.tmp_path / "data"),
               "GATEWAY_PORT": str(free_port()), "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PROCESSES": "1",
               "API_KEYS": f"{self.key}:owner", **self.extra_env}
        # schemas are made and dropped on the suite's own database, even when the services reach it another way
        self.database_url = os.environ.get("DATABASE_URL", "") or env.get("DATABASE_URL", "")
        if is_postgres(env.get("DATABASE_URL", "")):
            self.prefix = env["DATABASE_SCHEMA_PREFIX"] = schema_prefix()
        self.stack = Stack(env, ROOT, self.tmp_path / "logs", services=self.services)
        try:
            self.stack.start()
            self.stack.wait_ready(timeout=90)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.stack is not None:
            self.stack.stop()
        if self.after_stop is not None:
            self.after_stop()
        self.session.close()
        if self.vhost:
            delete_vhost(self.vhost)
        if self.prefix:
            drop_schemas(self.database_url, self.prefix)

    @property
    def amqp_uri(self) -> str:
        return self.stack.amqp_uri

    def request(self, method: str, path: str, session: requests.Session | None = None, **kwargs) -> requests.Response:
        """One call to the gateway with the owner key (pass a session of your own from other threads)."""
        kwargs.setdefault("timeout", 30)
        if session is not None:
            kwargs.setdefault("auth", (self.key, ""))
        return (session or self.session).request(method, self.stack.gateway_url + path, **kwargs)

    def all_customers(self, data_source_uuid: str) -> dict[str, dict]:
        """{uuid: customer} of every customer of a data source, page by page."""
        found, cursor = {}, None
        while True:
            params = {"data_source_uuid": data_source_uuid, "per_page": 200, **({"cursor": cursor} if cursor else {})}
            page = self.request("GET", "/v1/customers", params=params)
            page.raise_for_status()
            body = page.json()
            found.update((entry["uuid"], entry) for entry in body["entries"])
            cursor = body.get("cursor")
            if not body.get("has_more"):
                return found


class EventTap:
    """Collects the events a service publishes, as an outside subscriber would: {event_id: (type, payload)}.

    Declared before the test writes, so no event can be published before its queue is bound.
    """

    def __init__(self, amqp_uri: str, service: str, event_types):
        self.connection = Connection(amqp_uri, connect_timeout=5)
        exchange = Exchange(f"{service}.events", type="topic", durable=True)
        name = f"evt-{service}-tap-{secrets.token_hex(4)}--outside.subscriber"
        self.queues = [Queue(name, exchange=exchange, routing_key=event_type, durable=True)
                       for event_type in event_types]
        self.events: dict[str, tuple[str, dict]] = {}
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self) -> "EventTap":
        with self.connection.channel() as channel:
            for queue in self.queues:  # one queue, one binding per event type
                queue(channel).declare()
        self._thread = threading.Thread(target=self._consume, daemon=True)
        self._thread.start()
        return self

    def _consume(self) -> None:
        def collect(body, message):
            if isinstance(body, (bytes, str)):
                import json

                body = json.loads(body)
            self.events[body["event_id"]] = (message.delivery_info["routing_key"], body)
            message.ack()

        while not self._stop.is_set():
            try:
                with self.connection.Consumer(self.queues[:1], callbacks=[collect], accept=["json"]):
                    while not self._stop.is_set():
                        try:
                            self.connection.drain_events(timeout=0.5)
                        except TimeoutError:
                            pass
                        except OSError as exc:
                            if "timed out" not in str(exc):
                                raise
            except Exception:  # the connection went: reconnect and go on (the queue is durable)
                if self._stop.is_set():
                    return
                self.connection = self.connection.clone()
                self._stop.wait(0.5)

    def local_port(self) -> int | None:
        """The client port of this tap's connection (to spare it when closing the platform's)."""
        try:
            return self.connection.connection.sock.getsockname()[1]
        except Exception:
            return None

    def of_type(self, event_type: str) -> list[dict]:
        return [payload for kind, payload in list(self.events.values()) if kind == event_type]

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.connection.release()
        except Exception:
            pass
