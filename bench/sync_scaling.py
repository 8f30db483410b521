"""Sync worker scaling: a backlog of customer re-syncs drained by 1, 2 and 4 sync workers.

    .venv/bin/python bench/sync_scaling.py [--customers 400] [--latency 0.02] [--workers 1,2,4] [--first-syncs]
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python bench/sync_scaling.py

Starts the whole platform in a throwaway vhost and data folder and a local Stripe-compatible
billing server (tools/fake_billing.py) answering every request after `--latency` seconds
(default 20 ms), seeded with `--customers` customers (one subscription, 3 invoices each).

Default, re-syncs (what a nightly refresh or ops re-syncing a source after an outage queue): a
Stripe source is synced once (not timed), so its customers exist with their invoices. For each
worker count, that many `sync_worker` processes start, then `POST /v1/customers/{uuid}/resync`
queues one job per customer (far faster than they drain: the backlog) and the clock runs until
`GET /v1/sync_jobs/stats` shows nothing pending or running. Each re-sync makes ~4 upstream
requests and asks the customers and contacts services, which find nothing changed.

`--first-syncs`: each round instead creates a new Stripe source and queues its full sync (one job
lists the customers and queues a customer_resync per customer), so every job creates a customer
with its contacts, invoices, MRR movements, feed entries and avatar: CPU-bound on 2 cores.

Prints jobs/s per worker count, the CPU per job by process, and the ratio to one worker
(target: 2 workers >= 1.7x, 4 workers >= 3x).
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
    source = new_source(http, base, billing)
    started = time.perf_counter()
    job = http.post(f"{base}/v1/data_sources/{source}/sync").json()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        job = http.get(f"{base}/v1/sync_jobs/{job['id']}").json()
        if job["state"] in ("succeeded", "failed"):
            return time.perf_counter() - started, job
        time.sleep(0.25)
    raise SystemExit(f"the sync did not finish within {timeout:g}s: {job}")


def new_source(http: requests.Session, base: str, billing: FakeBilling) -> str:
    return http.post(f"{base}/v1/data_sources", json={
        "name": f"Bench {time.time()}", "system": "Stripe",
        "connection": {"base_url": billing.url, "api_key": DEFAULT_API_KEY}}).json()["uuid"]


def backlog(http: requests.Session, base: str) -> int:
    stats = http.get(f"{base}/v1/sync_jobs/stats").json()
    return stats["pending"] + stats["running"]


def synced_customers(http: requests.Session, base: str, source: str) -> list[str]:
    """Sync `source` once (with the workers running) and return its customers' uuids."""
    job = http.post(f"{base}/v1/data_sources/{source}/sync").json()
    while job["state"] not in ("succeeded", "failed"):
        time.sleep(0.5)
        job = http.get(f"{base}/v1/sync_jobs/{job['id']}").json()
    uuids, cursor = [], None
    while True:
        page = http.get(f"{base}/v1/customers", params={"data_source_uuid": source, "per_page": 200,
                                                        **({"cursor": cursor} if cursor else {})}).json()
        uuids += [entry["uuid"] for entry in page["entries"]]
        if not page.get("has_more"):
            return uuids
        cursor = page["cursor"]


def drain_resyncs(http: requests.Session, base: str, uuids: list[str], timeout: float) -> float:
    """Queue a re-sync per customer (far faster than workers drain them); return seconds until none is left."""
    started = time.perf_counter()
    for uuid in uuids:
        response = http.post(f"{base}/v1/customers/{uuid}/resync")
        assert response.status_code == 202, response.text
    deadline = started + timeout
    while backlog(http, base):
        if time.perf_counter() > deadline:
            raise SystemExit(f"the re-syncs did not drain within {timeout:g}s")
        time.sleep(0.1)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per upstream request")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--first-syncs", action="store_true", help="each round syncs a new source (see above)")
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
           "CONNECTOR_ALLOWED_HOSTS": "127.0.0.1",  # the fake billing system's host
           # new customers make the avatars service look for logos: nowhere outside this machine
           "CLEARBIT_LOGO_URL": "http://127.0.0.1:9", "GRAVATAR_URL": "http://127.0.0.1:9", "AVATAR_FETCH_TIMEOUT": "1"}
    stack = Stack(env, ROOT, workdir / "logs")
    results = []
    try:
        stack.start()
        stack.wait_ready(timeout=90)
        http = requests.Session()
        http.auth = (API_KEY, "")
        print(f"{args.customers} customer {'first syncs' if args.first_syncs else 're-syncs'} per round, {args.latency * 1000:.0f} ms per upstream request, "
              f"database {'PostgreSQL' if is_postgres(os.environ.get('DATABASE_URL')) else 'SQLite'}")
        uuids = []
        if not args.first_syncs:
            stack.env["SYNC_WORKERS"] = "2"
            stack.start_service("sync_worker")
            stack.wait_ready(timeout=90)
            uuids = synced_customers(http, base, new_source(http, base, billing))
            print(f"synced {len(uuids)} customers once (not timed); now re-syncing them", flush=True)
        for workers in counts:
            stack.env["SYNC_WORKERS"] = str(workers)
            stack.start_service("sync_worker")
            stack.wait_ready(timeout=90)
            billing.reset_counts()
            before = cpu_seconds(stack)
            if args.first_syncs:
                elapsed, job = drain(http, base, billing, args.customers, args.timeout)
                done, failed = job["counts"]["processed"], job["counts"]["failed"]
            else:
                elapsed = drain_resyncs(http, base, uuids, args.timeout)
                done, failed = len(uuids), None
            rate = done / elapsed
            after = cpu_seconds(stack)
            used = {name: after[name] - before.get(name, 0.0) for name in after}
            results.append((workers, rate))
            print(f"{workers} worker(s): {done} jobs{f' ({failed} failed)' if failed is not None else ''} in "
                  f"{elapsed:.1f} s = {rate:.1f} jobs/s; {billing.count()} upstream requests; "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
            per_job = {name: 1000 * seconds / max(1, done) for name, seconds in used.items()}
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
