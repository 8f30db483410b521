"""What every worker does for observability: bind its request id for the logs, time itself.

`roster.dependencies.UnitOfWorkProvider` calls these for every service's workers; the gateway,
which has no database, declares `WorkerObserver` instead.
"""
from __future__ import annotations

import time

from nameko.extensions import DependencyProvider

from roster import metrics, tracing

_STARTED = "_roster_started"


def kind_of(entrypoint) -> str:
    from roster.handlers import DurableEventHandler

    if isinstance(entrypoint, DurableEventHandler):
        return "event"
    name = type(entrypoint).__name__.lower()
    if "rpc" in name:
        return "rpc"
    if "endpoint" in name or "http" in name:
        return "http"
    return name


def worker_started(worker_ctx) -> None:
    request_id = tracing.from_worker(worker_ctx.context_data, worker_ctx.args)
    if request_id:
        # carried on by every RPC this worker makes (nameko sends context data as headers)
        worker_ctx.data[tracing.REQUEST_ID] = request_id
    tracing.bind(request_id)
    setattr(worker_ctx, _STARTED, time.monotonic())


def worker_finished(worker_ctx, exc_info) -> None:
    started = getattr(worker_ctx, _STARTED, None)
    if started is None:
        return
    entrypoint = worker_ctx.entrypoint
    outcome = "ok"
    if exc_info is not None:
        expected = getattr(entrypoint, "expected_exceptions", ())
        outcome = "refused" if expected and isinstance(exc_info[1], expected) else "error"
    metrics.WORKERS.labels(worker_ctx.service_name, entrypoint.method_name, kind_of(entrypoint), outcome).observe(
        time.monotonic() - started)


def worker_done() -> None:
    tracing.bind(None)


class WorkerObserver(DependencyProvider):
    """Request ids and worker timings for a service without a UnitOfWorkProvider (the gateway)."""

    def worker_setup(self, worker_ctx):
        worker_started(worker_ctx)

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        worker_finished(worker_ctx, exc_info)

    def worker_teardown(self, worker_ctx):
        worker_done()

    def get_dependency(self, worker_ctx):
        return None
