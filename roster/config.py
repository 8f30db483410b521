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

    `<SERVICE>_DATABASE_URL` wins, then `DATABASE_URL` (on PostgreSQL each service
    then gets its own schema, see `roster.database`), then a SQLite file under DATA_DIR.
    """
    specific = os.environ.get(f"{service_name.upper()}_DATABASE_URL")
    if specific:
        return specific
    shared = os.environ.get("DATABASE_URL")
    if shared:
        return shared
    return f"sqlite:///{data_dir() / service_name}.db"


def database_schema(service_name: str) -> str:
    """Return the PostgreSQL schema that holds one service's tables."""
    return os.environ.get("DATABASE_SCHEMA_PREFIX", "") + service_name


def rpc_timeout() -> float:
    """Return how long a caller waits for an RPC reply before giving up."""
    return float(os.environ.get("RPC_TIMEOUT", "4"))
