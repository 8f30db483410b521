"""Prometheus metrics of every process (prometheus_client), and their exposition.

The gateway serves them at GET /metrics on its own port; every other service on its own small
HTTP server at METRICS_PORT (unset: none), bound to METRICS_HOST. A service with several
processes on one host (GATEWAY_PROCESSES / SYNC_WORKERS under `make run`) runs prometheus_client's
multiprocess mode: tools/stack.py gives each such service a PROMETHEUS_MULTIPROC_DIR of its own,
every process listens on the same port (SO_REUSEPORT), and whichever answers a scrape reports the
sum over all of them. In compose each container is one process and is scraped on its own.

Gauges that describe shared state (outbox backlog, broker queue depths) are read at scrape time
from the database / broker by collectors registered with `register_collector`, so they are right
whichever process answers.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter("roster_http_requests_total", "HTTP requests answered by the gateway",
                        ["method", "route", "status"])
HTTP_LATENCY = Histogram("roster_http_request_duration_seconds", "Time the gateway took to answer, by route",
                         ["method", "route"], buckets=LATENCY_BUCKETS)
RPC_CALLS = Histogram("roster_rpc_client_duration_seconds", "RPC calls made, by target service, method and outcome",
                      ["service", "method", "outcome"], buckets=LATENCY_BUCKETS)
WORKERS = Histogram("roster_worker_duration_seconds",
                    "Work done by this service: RPC methods and event handlers, by outcome",
                    ["service", "entrypoint", "kind", "outcome"], buckets=LATENCY_BUCKETS)
CACHE_READS = Counter("roster_gateway_cache_reads_total",
                      "Cacheable reads the gateway answered, by result (hit: from memory; miss: by RPC)",
                      ["result"])
EVENTS_PUBLISHED = Counter("roster_events_published_total", "Events published from the outbox",
                           ["service", "event_type"])
OUTBOX_BATCHES = Counter("roster_outbox_batches_total",
                         "Batches the outbox relay published (events published / batches: events per confirm)",
                         ["service"])
EVENTS_QUARANTINED = Counter("roster_events_quarantined_total", "Outbox rows the broker refused for good",
                             ["service"])
EVENTS_HANDLED = Counter("roster_events_handled_total", "Events a durable handler applied (or had applied)",
                         ["service", "handler"])
EVENTS_SKIPPED = Counter("roster_events_skipped_total",
                         "Events a durable handler acknowledged unhandled: its `when=` says they do not concern it",
                         ["service", "handler"])
EVENTS_FAILED = Counter("roster_events_failed_total", "Event handling attempts that raised (retried or dead-lettered)",
                        ["service", "handler"])
EVENTS_DEAD_LETTERED = Counter("roster_events_dead_lettered_total", "Events moved to a dead-letter queue",
                               ["service", "handler"])
CIRCUIT_OPENED = Counter("roster_circuit_opened_total",
                         "Times a remote source's circuit opened after failing repeatedly (roster.breaker)", ["circuit"])
CIRCUIT_REFUSED = Counter("roster_circuit_refused_total",
                          "Calls refused without asking the source while its circuit was open", ["circuit"])

Collect = Callable[[], Iterable]
_collectors: list[Collect] = []


def register_collector(collect: Collect) -> None:
    """Add a function returning metric families, called at every scrape (errors are logged, not raised)."""
    _collectors.append(collect)


class _Callbacks:
    def collect(self):
        for collect in list(_collectors):
            try:
                yield from collect()
            except Exception as error:  # one unreachable source must not hide the other metrics
                logger.warning("metrics: a collector failed: %s: %s", type(error).__name__, error)


def exposition() -> bytes:
    """The text exposition of this process's metrics (all processes' in multiprocess mode)."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    extra = CollectorRegistry()
    extra.register(_Callbacks())
    return generate_latest(registry) + generate_latest(extra)


def gauge(name: str, documentation: str, labels: list[str], values: Iterable[tuple[list[str], float]]):
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for label_values, value in values:
        family.add_metric(label_values, value)
    return family


# ---- a service's own metrics server --------------------------------------------------------

_server_started = False


def serve(service_name: str) -> int | None:
    """Start this process's metrics server on METRICS_PORT (once per process); return the port or None."""
    global _server_started
    port = int(os.environ.get("METRICS_PORT") or 0)
    if not port or _server_started:
        return None
    import eventlet
    from eventlet import wsgi

    host = os.environ.get("METRICS_HOST") or "0.0.0.0"
    try:
        sock = eventlet.listen((host, port), reuse_port=True)
    except OSError as error:
        logger.error("%s: cannot serve metrics on %s:%s: %s", service_name, host, port, error)
        return None
    _server_started = True
    eventlet.spawn(wsgi.server, sock, _metrics_app, log_output=False)
    logger.info("%s: metrics at http://%s:%s/metrics", service_name, host, port)
    return port


def _metrics_app(environ, start_response):
    from werkzeug.wrappers import Request

    if Request(environ).path not in ("/metrics", "/"):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics\n"]
    body = exposition()
    start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
    return [body]


# ---- broker queue depths ---------------------------------------------------------------------

def queue_depth_collector(amqp_uri: str, prefixes: tuple[str, ...], timeout: float = 2.0) -> Collect:
    """Return a collector of `roster_queue_messages{queue}` for the queues of the vhost whose names
    start with one of `prefixes` (RabbitMQ management API; none such: no samples)."""

    def collect():
        import requests

        from tools.isolation import management_endpoint

        base, auth = management_endpoint(amqp_uri, os.environ.get("RABBITMQ_MANAGEMENT_URL") or None)
        from urllib.parse import quote, unquote, urlsplit

        vhost = unquote(urlsplit(amqp_uri).path[1:]) or "/"
        response = requests.get(f"{base}/api/queues/{quote(vhost, safe='')}", auth=auth, timeout=timeout,
                                params={"columns": "name,messages"})
        response.raise_for_status()
        queues = [(queue["name"], queue.get("messages") or 0) for queue in response.json()
                  if queue["name"].startswith(prefixes)]
        yield gauge("roster_queue_messages", "Messages waiting in a broker queue (work and dead-letter queues)",
                    ["queue"], (([name], float(count)) for name, count in sorted(queues)))

    return collect
