"""Load: a mixed workload at 32 concurrent clients, with throughput, latency per operation, errors,
and the memory (RSS) of every platform process before and after.

    .venv/bin/python bench/load.py [--duration 60] [--clients 32] [--customers 300]
    make soak          (10 minutes, then RSS growth per process against the bound below; exit 1 over it)

Starts the whole platform on a throwaway vhost, data folder and (on PostgreSQL, DATABASE_URL) schemas,
creates `--customers` customers through the API (not timed), warms up, then runs for `--duration`:
  * 70% reads:   55% `GET /v1/customers/{uuid}`, 15% `GET /v1/customers?data_source_uuid=...&per_page=25`
  * 20% updates: `PATCH /v1/customers/{uuid}` (a new name)
  * 10% imports: `POST /v1/import/customers/{uuid}/invoices` (one invoice: a line and a payment)
over random customers. Every answer must be a 2xx: the error count must be 0 (exit 1 otherwise).
The clients are threads of this process, on the same (shared, 2-core) machine as the platform, so
they take CPU from it: figures are a floor, and vary by about ±20% from run to run.

RSS bound (--soak): a process passes when its RSS grew by at most 50 MiB or at most 20% over the
run, whichever allows more (the first minutes fill caches and pools; a leak keeps growing).
"""
import argparse
import os
import random
import statistics
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.common import API_KEY, Platform  # noqa: E402

RSS_BOUND_MIB = 50
RSS_BOUND_RATIO = 0.20
MIX = (("read", 0.55), ("list", 0.15), ("update", 0.20), ("import", 0.10))


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def platform_rss(stack) -> dict[str, float]:
    found = {}
    for name, procs in stack.processes.items():
        for index, proc in enumerate(procs):
            found[f"{name}{'-' + str(index + 1) if len(procs) > 1 else ''}"] = rss_mib(proc.popen.pid)
    return found


def within_bound(before: float, after: float) -> bool:
    growth = after - before
    return growth <= max(RSS_BOUND_MIB, before * RSS_BOUND_RATIO)


class Load:
    def __init__(self, base: str, source: str, customers: list[str], seed: int):
        self.base, self.source, self.customers = base, source, customers
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.samples: list[str] = []  # the first few errors, to say what went wrong
        self.lock = threading.Lock()
        self.counter = 0
        self.seed = seed

    def next_number(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter

    def request(self, http: requests.Session, operation: str, rng: random.Random):
        uuid = rng.choice(self.customers)
        if operation == "read":
            return http.get(f"{self.base}/v1/customers/{uuid}")
        if operation == "list":
            return http.get(f"{self.base}/v1/customers", params={"data_source_uuid": self.source, "per_page": 25})
        if operation == "update":
            return http.patch(f"{self.base}/v1/customers/{uuid}", json={"name": f"Load {self.next_number()}"})
        n = self.next_number()
        day = f"2025-{n % 12 + 1:02d}-{n % 28 + 1:02d}T00:00:00Z"
        invoice = {"external_id": f"load-inv-{n}", "date": day, "currency": "USD",
                   "line_items": [{"type": "one_time", "amount_in_cents": 1000 + n % 100, "quantity": 1,
                                   "description": "load", "external_id": f"load-line-{n}"}],
                   "transactions": [{"date": day, "type": "payment", "result": "successful",
                                     "external_id": f"load-pay-{n}"}]}
        return http.post(f"{self.base}/v1/import/customers/{uuid}/invoices", json={"invoices": [invoice]})

    def client(self, index: int, until: float, record: bool) -> None:
        rng = random.Random(self.seed * 1000 + index)
        operations, weights = zip(*MIX)
        http = requests.Session()
        http.auth = (API_KEY, "")
        latencies, errors = defaultdict(list), defaultdict(int)
        while time.monotonic() < until:
            operation = rng.choices(operations, weights)[0]
            started = time.perf_counter()
            try:
                answer = self.request(http, operation, rng)
                ok, problem = answer.status_code < 300, f"{answer.status_code} {answer.text[:200]}"
            except requests.RequestException as exc:
                ok, problem = False, f"{type(exc).__name__}: {exc}"
            took = time.perf_counter() - started
            if not record:
                continue
            latencies[operation].append(took)
            if not ok:
                errors[operation] += 1
                with self.lock:
                    if len(self.samples) < 5:
                        self.samples.append(f"{operation}: {problem}")
        http.close()
        with self.lock:
            for operation, values in latencies.items():
                self.latencies[operation].extend(values)
            for operation, count in errors.items():
                self.errors[operation] += count

    def run(self, clients: int, seconds: float, record: bool = True) -> float:
        until = time.monotonic() + seconds
        threads = [threading.Thread(target=self.client, args=(index, until, record)) for index in range(clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.monotonic() - started


def create_customers(base: str, source: str, count: int) -> list[str]:
    uuids: list[str] = []
    lock = threading.Lock()
    numbers = iter(range(count))

    def create():
        http = requests.Session()
        http.auth = (API_KEY, "")
        while True:
            with lock:
                index = next(numbers, None)
            if index is None:
                return
            answer = http.post(f"{base}/v1/customers", json={
                "data_source_uuid": source, "external_id": f"load-{index}", "name": f"Load {index}"})
            answer.raise_for_status()
            with lock:
                uuids.append(answer.json()["uuid"])

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return uuids


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(load: Load, elapsed: float, before: dict, after: dict, soak: bool) -> int:
    total = sum(len(values) for values in load.latencies.values())
    errors = sum(load.errors.values())
    print(f"\n  {total:,} requests in {elapsed:.1f} s: {total / elapsed:,.0f} req/s, {errors} errors")
    print(f"  {'operation':<8} {'share':>6} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for operation, _ in MIX:
        values = load.latencies.get(operation, [])
        if values:
            print(f"  {operation:<8} {len(values) / total:>6.0%} {len(values) / elapsed:>7.0f} "
                  f"{statistics.median(values) * 1000:>8.1f} {percentile(values, 0.99) * 1000:>8.1f} "
                  f"{load.errors.get(operation, 0):>7}")
    for sample in load.samples:
        print(f"  error: {sample}")
    print(f"\n  RSS per process (MiB), before -> after{' (bound: +%d MiB or +%d%%)' % (RSS_BOUND_MIB, RSS_BOUND_RATIO * 100) if soak else ''}")
    over = []
    for name in after:
        growth = after[name] - before.get(name, 0.0)
        verdict = ""
        if soak:
            ok = within_bound(before.get(name, 0.0), after[name])
            verdict = "  ok" if ok else "  OVER THE BOUND"
            if not ok:
                over.append(name)
        print(f"    {name:<16} {before.get(name, 0.0):>7.1f} -> {after[name]:>7.1f}  ({growth:+.1f}){verdict}")
    if errors:
        print(f"\n  FAILED: {errors} requests did not get a 2xx")
    if over:
        print(f"\n  FAILED: RSS grew beyond the bound in {', '.join(over)}")
    return 1 if errors or over else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60, help="seconds measured (default 60)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--customers", type=int, default=300, help="customers created first (default 300)")
    parser.add_argument("--warmup", type=float, default=10, help="unmeasured seconds first (default 10)")
    parser.add_argument("--gateway-processes", type=int, default=2, help="gateway processes (default 2)")
    parser.add_argument("--soak", action="store_true", help="judge RSS growth against the bound; exit 1 over it")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    database = "PostgreSQL" if (os.environ.get("DATABASE_URL") or "").startswith("postgresql") else "SQLite"
    platform = Platform(GATEWAY_PROCESSES=str(args.gateway_processes))
    try:
        print(f"load: starting the platform ({database}, {args.gateway_processes} gateway processes)", flush=True)
        stack = platform.start()
        http = requests.Session()
        http.auth = (API_KEY, "")
        source = http.post(f"{platform.base}/v1/data_sources", json={"name": "Load"}).json()["uuid"]
        print(f"load: creating {args.customers} customers (not timed)", flush=True)
        customers = create_customers(platform.base, source, args.customers)
        platform.wait_quiet(timeout=120)
        load = Load(platform.base, source, customers, args.seed)
        print(f"load: warming up {args.warmup:g} s, then {args.clients} clients for {args.duration:g} s", flush=True)
        load.run(args.clients, args.warmup, record=False)
        before = platform_rss(stack)
        elapsed = load.run(args.clients, args.duration)
        after = platform_rss(stack)
        return report(load, elapsed, before, after, args.soak)
    finally:
        platform.close()


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    sys.exit(main())
