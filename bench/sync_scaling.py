"""Sync worker scaling: a backlog of customer re-syncs drained by 1, 2 and 4 sync workers.

    .venv/bin/python bench/sync_scaling.py [--customers 400] [--latency 0.02] [--workers 1,2,4]
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python bench/sync_scaling.py

Starts the whole platform in a throwaway vhost and data folder and a local Stripe-compatible
billing server (tools/fake_billing.py) answering every request after `--latency` seconds
(default 20 ms), seeded with `--customers` customers (one subscription, 3 invoices each). For
each worker count it starts that many `sync_worker` processes, creates a new Stripe data source
and queues its full sync: one job lists the customers and queues a customer_resync job per
customer (the backlog), which the workers drain. Each re-sync makes ~4 upstream requests,
then asks the customers and contacts services and imports the invoices. The clock runs from
the sync request until the source sync job has finished. Prints jobs/s per worker count and
the ratio to one worker (target: 2 workers >= 1.7x, 4 workers >= 3x).
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.common import cpu_seconds  # noqa: E402
from tools.fake_billing import DEFAULT_API_KEY, BillingModel, FakeBilling  # noqa: E402
from tools.isolation import create_vhost, delete_vhost, drop_schemas, is_postgres, schema_prefix  # noqa: E402
from tools.stack import DEFAULT_AMQP_URI, Stack, ensure_rabbitmq, free_port  # noqa: E402

API_KEY = "bench-owner-key"


def drain(http: requests.Session, base: str, billing: FakeBilling, customers: int, timeout: float) -> tuple[float, dict]:
    """Sync a new source of `billing`; return (seconds until its job finished, the job)."""
    source = http.post(f"{base}/v1/data_sources", json={
        "name": f"Bench {time.time()}", "system": "Stripe",
        "connection": {"base_url": billing.url, "api_key": DEFAULT_API_KEY}}).json()["uuid"]
    started = time.perf_counter()
    job = http.post(f"{base}/v1/data_sources/{source}/sync").json()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        job = http.get(f"{base}/v1/sync_jobs/{job['id']}").json()
        if job["state"] in ("succeeded", "failed"):
            return time.perf_counter() - started, job
        time.sleep(0.25)
    raise SystemExit(f"the sync did not finish within {timeout:g}s: {job}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per upstream request")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]

    model = BillingModel()
    model.seed(customers=args.customers, invoices_each=3)
    billing = FakeBilling(model, latency=args.latency).start()
    workdir = Path(tempfile.mkdtemp(prefix="roster-bench-sync-"))
    base_uri = os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI
    ensure_rabbitmq(base_uri)
    vhost, amqp_uri = create_vhost(base_uri, prefix="roster_bench")
    prefix = schema_prefix()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AMQP_URI": amqp_uri, "DATA_DIR": str(workdir / "data"), "GATEWAY_PORT": str(port),
           "GATEWAY_HOST": "127.0.0.1", "API_KEYS": f"{API_KEY}:owner", "LOG_LEVEL": "WARNING",
           "DATABASE_SCHEMA_PREFIX": prefix, "SYNC_WORKERS": "0",
           # new customers make the avatars service look for logos: nowhere outside this machine
           "CLEARBIT_LOGO_URL": "http://127.0.0.1:9", "GRAVATAR_URL": "http://127.0.0.1:9", "AVATAR_FETCH_TIMEOUT": "1"}
    stack = Stack(env, ROOT, workdir / "logs")
    results = []
    try:
        stack.start()
        stack.wait_ready(timeout=90)
        http = requests.Session()
        http.auth = (API_KEY, "")
        print(f"{args.customers} customer re-syncs per round, {args.latency * 1000:.0f} ms per upstream request, "
              f"database {'PostgreSQL' if is_postgres(os.environ.get('DATABASE_URL')) else 'SQLite'}")
        for workers in counts:
            stack.env["SYNC_WORKERS"] = str(workers)
            stack.start_service("sync_worker")
            stack.wait_ready(timeout=90)
            billing.reset_counts()
            before = cpu_seconds(stack)
            elapsed, job = drain(http, base, billing, args.customers, args.timeout)
            rate = job["counts"]["processed"] / elapsed
            after = cpu_seconds(stack)
            used = {name: after[name] - before.get(name, 0.0) for name in after}
            results.append((workers, rate))
            print(f"{workers} worker(s): {job['counts']['processed']} jobs ({job['counts']['failed']} failed) in "
                  f"{elapsed:.1f} s = {rate:.1f} jobs/s; {billing.count()} upstream requests; "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
            per_job = {name: 1000 * seconds / max(1, job["counts"]["processed"]) for name, seconds in used.items()}
            print("  CPU ms per job: " + ", ".join(f"{name} {ms:.1f}" for name, ms in
                                                  sorted(per_job.items(), key=lambda item: -item[1]) if ms >= 0.5))
        one = results[0][1]
        for workers, rate in results[1:]:
            print(f"{workers} workers / 1 worker: {rate / one:.2f}x")
    finally:
        stack.stop()
        billing.stop()
        delete_vhost(vhost)
        shutil.rmtree(workdir, ignore_errors=True)
        if is_postgres(os.environ.get("DATABASE_URL")):
            drop_schemas(os.environ["DATABASE_URL"], prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
