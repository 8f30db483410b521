"""Throwaway RabbitMQ vhosts and PostgreSQL schemas, so tests and benchmarks never share
queues or tables with a `make run` or with each other."""
import secrets
import shutil
import subprocess
from urllib.parse import urlsplit, urlunsplit

from tools.stack import StackError


def rabbitmqctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    try:
        result = subprocess.run([ctl, *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StackError(f"rabbitmqctl {' '.join(args)} failed: {exc}")
    if result.returncode != 0:
        raise StackError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")


def with_vhost(amqp_uri: str, vhost: str) -> str:
    """Return `amqp_uri` pointing at `vhost` instead."""
    parts = urlsplit(amqp_uri)
    return urlunsplit((parts.scheme, parts.netloc, "/" + vhost, parts.query, parts.fragment))


def create_vhost(base_uri: str, prefix: str = "roster_test") -> tuple[str, str]:
    """Create a fresh vhost the URI's user may use; return (vhost, URI pointing at it)."""
    vhost = f"{prefix}_{secrets.token_hex(4)}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, urlsplit(base_uri).username or "guest", ".*", ".*", ".*")
    return vhost, with_vhost(base_uri, vhost)


def delete_vhost(vhost: str) -> None:
    try:
        rabbitmqctl("delete_vhost", vhost)
    except StackError:
        pass


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
