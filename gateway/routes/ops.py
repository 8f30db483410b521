"""What operators and load balancers call: liveness, readiness and metrics (docs/operations.md).

No API key: a load balancer or Prometheus has none, and nothing here says anything about the data.
"""
from __future__ import annotations

import os

import eventlet
from kombu import Connection
from nameko.extensions import DependencyProvider
from werkzeug.wrappers import Response

from gateway.http import api, json_response
from gateway.schemas.ops import HealthOut, ReadyOut
from roster import config, metrics

# The services readiness asks, with the gateway's proxy attribute for each.
SERVICE_PROXIES = {
    "customers": "customers_rpc",
    "contacts": "contacts_rpc",
    "billing_sync": "billing_rpc",
    "activities": "activities_rpc",
    "avatars": "avatars_rpc",
}
READY_TIMEOUT = 2.0  # seconds each part may take to answer (load balancers probe with ~5 s timeouts)
DEFAULT_QUEUE_PREFIXES = "billing_sync.sync_jobs,dead_letters"


def broker_problem(amqp_uri: str, timeout: float = READY_TIMEOUT) -> str | None:
    """Return None when the broker accepts a connection, else why not (no URL: it holds credentials)."""
    try:
        with Connection(amqp_uri, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as error:
        return f"unreachable ({type(error).__name__})"
    return None


def service_problem(proxy) -> str | None:
    """Return None when a service answers `health` with status ok (its database answering), else why not."""
    try:
        with eventlet.Timeout(READY_TIMEOUT):
            report = proxy.health()
    except BaseException as error:  # eventlet.Timeout is a BaseException
        return f"no answer ({type(error).__name__})"
    if not isinstance(report, dict) or report.get("status") != "ok":
        database = report.get("database") if isinstance(report, dict) else None
        return f"database {database}" if database and database != "ok" else f"unhealthy ({report!r:.100})"
    return None


class GatewayMetrics(DependencyProvider):
    """Registers the gateway's scrape-time gauges: depth of the work and dead-letter queues."""

    def setup(self):
        prefixes = tuple(filter(None, (part.strip() for part in (
            os.environ.get("METRICS_QUEUE_PREFIXES") or DEFAULT_QUEUE_PREFIXES).split(","))))
        if prefixes:
            metrics.register_collector(metrics.queue_depth_collector(config.amqp_uri(), prefixes))

    def get_dependency(self, worker_ctx):
        return None


class OpsRoutes:
    gateway_metrics = GatewayMetrics()

    @api("GET", "/healthz", permission=None, response=HealthOut(),
         summary="Liveness of this gateway process (asks no other part)")
    def healthz(self, request):
        return {"status": "ok"}

    @api("GET", "/readyz", permission=None, response=ReadyOut(),
         summary="Readiness: every service answers over RPC with its database reachable, and the broker")
    def readyz(self, request):
        pool = eventlet.GreenPool()
        broker = pool.spawn(broker_problem, config.amqp_uri())
        asked = {name: pool.spawn(service_problem, getattr(self, attribute))
                 for name, attribute in SERVICE_PROXIES.items()}
        problems = {name: thread.wait() for name, thread in asked.items()}
        problems["broker"] = broker.wait()
        checks = {name: problem or "ok" for name, problem in problems.items()}
        failing = [f"{name}: {problem}" for name, problem in problems.items() if problem]
        if failing:
            return json_response(503, {"code": 503, "message": "Not ready: " + "; ".join(failing), "checks": checks})
        return {"status": "ok", "checks": checks}

    @api("GET", "/metrics", permission=None, summary="Prometheus metrics (text exposition format)")
    def metrics(self, request):
        return Response(metrics.exposition(), status=200, content_type=metrics.CONTENT_TYPE)
