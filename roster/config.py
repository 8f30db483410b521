"""Settings from the environment, each with a working default."""
import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AMQP_URI = "amqp://guest:guest@localhost:5672/"


def amqp_uri() -> str:
    """Return the broker URI; a vhost in its path is honoured by kombu."""
    return os.environ.get("AMQP_URI", DEFAULT_AMQP_URI)


def data_dir() -> Path:
    """Return the folder that holds the per-service SQLite files."""
    return Path(os.environ.get("DATA_DIR") or PROJECT_ROOT / "var")


def database_url(service_name: str) -> str:
    """Return the database URL of one service.

    `<SERVICE>_DATABASE_URL` wins, then `DATABASE_URL`, then a SQLite file under DATA_DIR.
    A shared `DATABASE_URL` on PostgreSQL gives each service its own schema (see
    `roster.database`); a shared SQLite file `sqlite:///x/roster.db` gives each service a
    file of its own beside it (`x/roster.customers.db`), so no two services share tables.
    """
    specific = os.environ.get(f"{service_name.upper()}_DATABASE_URL")
    if specific:
        return specific
    shared = os.environ.get("DATABASE_URL")
    if shared:
        return per_service_sqlite(shared, service_name) if shared.startswith("sqlite") else shared
    return f"sqlite:///{data_dir() / service_name}.db"


def per_service_sqlite(url: str, service_name: str) -> str:
    """Return the SQLite URL of one service's own file derived from a shared one."""
    prefix, _, path = url.partition(":///")
    if not path or path.startswith(":memory:"):
        return url
    file = Path(path)
    suffix = file.suffix or ".db"
    return f"{prefix}:///{file.with_name(file.stem + '.' + service_name + suffix)}"


def database_schema(service_name: str) -> str:
    """Return the PostgreSQL schema that holds one service's tables."""
    return os.environ.get("DATABASE_SCHEMA_PREFIX", "") + service_name


def rpc_timeout() -> float:
    """Return how long a caller waits for an RPC reply before giving up."""
    return float(os.environ.get("RPC_TIMEOUT", "4"))
