"""The billing_sync service's own settings, from the environment with working defaults."""
import os

DEFAULT_ACCOUNT_CURRENCY = "USD"


def account_currency() -> str:
    """Return the currency MRR, ARR and the metrics are kept in (`ACCOUNT_CURRENCY`, default USD)."""
    return (os.environ.get("ACCOUNT_CURRENCY") or DEFAULT_ACCOUNT_CURRENCY).strip().upper()


def review_interval() -> float:
    """Return how often (seconds) customers whose figures change with time are re-evaluated."""
    return float(os.environ.get("BILLING_REVIEW_SECONDS") or 60)


def review_batch() -> int:
    """Return how many customers one review round re-evaluates at most."""
    return int(os.environ.get("BILLING_REVIEW_BATCH") or 500)


SYNC_QUEUE = "billing_sync.sync_jobs"  # the durable work queue of sync jobs


def sync_rpc_timeout() -> float:
    """Return how long a sync worker waits for the customers or contacts service (SYNC_RPC_TIMEOUT)."""
    return float(os.environ.get("SYNC_RPC_TIMEOUT") or 30)


def sync_max_attempts() -> int:
    """Return how often a job whose run broke (a service or the database away) is tried (SYNC_MAX_ATTEMPTS)."""
    return max(1, int(os.environ.get("SYNC_MAX_ATTEMPTS") or 5))


DEFAULT_CONNECTOR_HOSTS = "api.stripe.com"


def connector_hosts() -> frozenset[str]:
    """Return the hosts a connector data source's base_url may name (CONNECTOR_ALLOWED_HOSTS,
    comma-separated, default api.stripe.com; `*` allows any). The owner of a key sets base_url,
    and the platform sends the billing system's API key there: without the list it would call
    whatever the network behind it holds."""
    raw = os.environ.get("CONNECTOR_ALLOWED_HOSTS")
    return frozenset(host.strip().lower() for host in (raw if raw is not None else DEFAULT_CONNECTOR_HOSTS).split(",")
                     if host.strip())
