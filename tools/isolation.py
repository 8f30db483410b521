"""Throwaway RabbitMQ vhosts and PostgreSQL schemas, so tests and benchmarks never share
queues or tables with a `make run` or with each other.

Vhosts are managed through RabbitMQ's management HTTP API, so a broker on another host (or in a
container) works as well as a local one: the API is found at the AMQP_URI's host on port 15672
with the URI's credentials, unless RABBITMQ_MANAGEMENT_URL says otherwise.

`python -m tools.isolation prune [--older-than SECONDS]` deletes test vhosts left behind by
killed runs.
"""
from __future__ import annotations

import os
import re
import secrets
import sys
import time
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import requests

from tools.stack import DEFAULT_AMQP_URI, StackError

MANAGEMENT_PORT = 15672
HTTP_TIMEOUT = 10
# Prefixes of the vhosts this project's tests and benchmarks create.
THROWAWAY_PREFIXES = ("roster_test", "roster_it", "roster_bench")
# A leftover is a throwaway vhost older than the longest run (the suite, a benchmark) takes.
STALE_AFTER_SECONDS = 3 * 3600
_STAMPED_NAME = re.compile(r"^(?P<prefix>[a-z_]+?)_(?P<created>\d{10})_[0-9a-f]+$")


# --- the management API ---------------------------------------------------------------------

def management_endpoint(amqp_uri: str, override: str | None = None) -> tuple[str, tuple[str, str]]:
    """Return (base URL of the management API, without credentials or trailing slash, (user, password)).

    `override` (RABBITMQ_MANAGEMENT_URL) wins, with its own credentials if it has some; otherwise
    the API is at http://<AMQP host>:15672 (https for amqps). Credentials default to the AMQP URI's.
    """
    amqp = urlsplit(amqp_uri)
    user = unquote(amqp.username or "guest")
    password = unquote(amqp.password) if amqp.password is not None else "guest"
    if override:
        parts = urlsplit(override)
        if parts.username is not None:
            user, password = unquote(parts.username), unquote(parts.password or "")
        host, port, scheme, path = parts.hostname or "localhost", parts.port, parts.scheme, parts.path
    else:
        host, port, path = amqp.hostname or "localhost", MANAGEMENT_PORT, ""
        scheme = "https" if amqp.scheme == "amqps" else "http"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return f"{scheme}://{netloc}{path.rstrip('/')}", (user, password)


class ManagementApi:
    """The few calls of RabbitMQ's management HTTP API that vhost isolation needs."""

    def __init__(self, amqp_uri: str, override: str | None = None):
        base, self.auth = management_endpoint(amqp_uri, override)
        self.base = f"{base}/api"
        self.user = unquote(urlsplit(amqp_uri).username or "guest")  # who gets permissions on new vhosts

    @classmethod
    def from_environment(cls, amqp_uri: str | None = None) -> "ManagementApi":
        """Return the API of the broker named by `amqp_uri` (default AMQP_URI), honouring RABBITMQ_MANAGEMENT_URL."""
        return cls(amqp_uri or os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI,
                   os.environ.get("RABBITMQ_MANAGEMENT_URL") or None)

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        """Return the API's answer to one request; raise StackError saying what to do when it fails."""
        url = f"{self.base}/{path}"
        try:
            response = requests.request(method, url, auth=self.auth, timeout=HTTP_TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise StackError(
                f"RabbitMQ's management API does not answer at {self.base}/ ({type(exc).__name__}). "
                "Enable it on the broker with `rabbitmq-plugins enable rabbitmq_management`, "
                "or set RABBITMQ_MANAGEMENT_URL to where it listens."
            ) from None
        if response.status_code == 401:
            raise StackError(
                f"RabbitMQ's management API at {self.base}/ refused user {self.auth[0]!r}: it needs "
                "a user with the management (or administrator) tag; set the credentials in AMQP_URI "
                "or RABBITMQ_MANAGEMENT_URL."
            )
        if response.status_code >= 400 and not (method == "DELETE" and response.status_code == 404):
            raise StackError(f"{method} {url} answered {response.status_code}: {response.text.strip()[:200]}")
        return response

    def backlog(self, vhost: str) -> int:
        """Return the messages waiting or unacknowledged in every queue of `vhost`."""
        from urllib.parse import quote

        queues = self.call("GET", f"queues/{quote(vhost, safe='')}").json()
        return sum(queue.get("messages", 0) or 0 for queue in queues)

    def connections(self, vhost: str) -> list[dict]:
        """Return the client connections open on `vhost` (name, peer_port, client_properties ...).

        The broker refreshes this list every few seconds: a connection opened just now may be missing."""
        return self.call("GET", f"vhosts/{quote(vhost, safe='')}/connections").json()

    def close_connection(self, name: str, reason: str = "closed by a test") -> None:
        """Close one client connection, as a broker restart or a network cut would (gone already: nothing)."""
        self.call("DELETE", f"connections/{quote(name, safe='')}", headers={"X-Reason": reason})

    def vhosts(self) -> list[str]:
        """Return the names of every vhost on the broker."""
        return [entry["name"] for entry in self.call("GET", "vhosts").json()]

    def add_vhost(self, vhost: str) -> None:
        """Create `vhost` and give the AMQP user every permission on it."""
        self.call("PUT", f"vhosts/{quote(vhost, safe='')}", json={"description": "Roster throwaway vhost"})
        self.call("PUT", f"permissions/{quote(vhost, safe='')}/{quote(self.user, safe='')}",
                  json={"configure": ".*", "write": ".*", "read": ".*"})

    def delete_vhost(self, vhost: str) -> None:
        """Delete `vhost` with its queues and exchanges (nothing happens when it is gone already)."""
        self.call("DELETE", f"vhosts/{quote(vhost, safe='')}")


# --- throwaway vhosts -----------------------------------------------------------------------

def with_vhost(amqp_uri: str, vhost: str) -> str:
    """Return `amqp_uri` pointing at `vhost` instead."""
    parts = urlsplit(amqp_uri)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), parts.query, parts.fragment))


def throwaway_vhost_name(prefix: str, now: float | None = None) -> str:
    """Return a fresh vhost name that records when it was made: `<prefix>_<unix time>_<random>`."""
    return f"{prefix}_{int(time.time() if now is None else now):010d}_{secrets.token_hex(4)}"


def created_at(vhost: str) -> float | None:
    """Return the creation time recorded in a throwaway vhost's name, or None for any other name."""
    match = _STAMPED_NAME.match(vhost)
    if not match or match["prefix"] not in THROWAWAY_PREFIXES:
        return None
    return float(match["created"])


def stale_vhosts(names: list[str], *, now: float, older_than: float = STALE_AFTER_SECONDS) -> list[str]:
    """Return the throwaway vhosts among `names` created more than `older_than` seconds before `now`."""
    return [name for name in names
            if (made := created_at(name)) is not None and now - made > older_than]


def create_vhost(base_uri: str, prefix: str = "roster_test") -> tuple[str, str]:
    """Create a fresh vhost the URI's user may use; return (vhost, URI pointing at it)."""
    vhost = throwaway_vhost_name(prefix)
    ManagementApi.from_environment(base_uri).add_vhost(vhost)
    return vhost, with_vhost(base_uri, vhost)


def delete_vhost(vhost: str, base_uri: str | None = None) -> None:
    """Delete a throwaway vhost on the broker of `base_uri` (default AMQP_URI); never raises."""
    try:
        ManagementApi.from_environment(base_uri).delete_vhost(vhost)
    except StackError as exc:
        print(f"warning: could not delete vhost {vhost}: {exc}", file=sys.stderr)


def prune_vhosts(base_uri: str | None = None, *, older_than: float = STALE_AFTER_SECONDS) -> list[str]:
    """Delete the throwaway vhosts older than `older_than` seconds; return their names."""
    api = ManagementApi.from_environment(base_uri)
    stale = stale_vhosts(api.vhosts(), now=time.time(), older_than=older_than)
    for vhost in stale:
        api.delete_vhost(vhost)
    return stale


# --- PostgreSQL schemas ---------------------------------------------------------------------

def is_postgres(database_url: str | None) -> bool:
    return bool(database_url) and database_url.startswith(("postgresql", "postgres:"))


def schema_prefix() -> str:
    """Return a fresh DATABASE_SCHEMA_PREFIX (each service's schema becomes `<prefix><service>`)."""
    return f"t{secrets.token_hex(4)}_"


def drop_schemas(database_url: str, prefix: str) -> None:
    """Drop every schema whose name starts with `prefix` (what one test run created)."""
    import psycopg

    _, _, rest = database_url.partition("://")
    with psycopg.connect("postgresql://" + rest, autocommit=True) as connection:
        names = [row[0] for row in connection.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (prefix,))]
        for name in names:
            connection.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def main(argv: list[str]) -> int:
    """`python -m tools.isolation prune [--older-than SECONDS]`: delete leftover test vhosts."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tools.isolation")
    commands = parser.add_subparsers(dest="command", required=True)
    prune = commands.add_parser("prune", help=f"delete {'/'.join(p + '_*' for p in THROWAWAY_PREFIXES)} "
                                              "vhosts older than a run")
    prune.add_argument("--older-than", type=float, default=STALE_AFTER_SECONDS, metavar="SECONDS",
                       help=f"age in seconds (default {STALE_AFTER_SECONDS})")
    args = parser.parse_args(argv)
    try:
        deleted = prune_vhosts(older_than=args.older_than)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"deleted {len(deleted)} leftover vhost(s)" + "".join(f"\n  {name}" for name in deleted))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
