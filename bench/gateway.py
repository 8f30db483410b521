"""Gateway benchmark: requests/second and p50/p99 latency, printed as a table.

    make bench            (or: .venv/bin/python bench/gateway.py [--duration 10] [--connections 32])

Starts the whole platform in a throwaway vhost and data folder, loads 1,000 and then
100,000 customers, and drives the gateway with `wrk` (apt-get install wrk):
  * GET /v1/customers/{uuid}, cycling over 1,000 customers (answered from the
    gateway's cache of rendered records once warm; each scenario gets an unmeasured
    warm-up first);
  * the same with the cache off: one RPC per request, the naive nameko gateway;
  * GET /v1/customers?per_page=200, the first page and a page deep in the table
    (keyset pagination: the deep page should cost what the first one does).
"""
import argparse
import os
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.common import API_KEY, wrk  # noqa: E402
from tools.isolation import create_vhost, delete_vhost, drop_schemas, is_postgres, schema_prefix  # noqa: E402
from tools.stack import DEFAULT_AMQP_URI, Stack, StackError, ensure_rabbitmq, free_port  # noqa: E402

WRK_SCRIPT = textwrap.dedent("""
    local paths = {}
    for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
    local i = 0
    request = function()
      i = i + 1
      return wrk.format("GET", paths[(i % #paths) + 1])
    end
""")


def cycle(url_base: str, paths: list[str], connections: int, duration: int, workdir: Path) -> dict:
    """Run wrk over `paths` round-robin; return req/s, p50 and p99 in milliseconds."""
    path_file = workdir / "paths.txt"
    path_file.write_text("\n".join(paths) + "\n")
    return wrk(url_base, WRK_SCRIPT, connections=connections, duration=duration, workdir=workdir,
               env={"BENCH_PATHS": str(path_file)})


class Bench:
    def __init__(self, args):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="roster-bench-"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.rows = []
        self.vhost = None
        self.stack = None
        # On PostgreSQL (DATABASE_URL) the bench's tables live in schemas of their own.
        self.schema_prefix = schema_prefix()

    def env(self, cache_entries: int) -> dict:
        return {**os.environ, "AMQP_URI": self.amqp_uri, "DATA_DIR": str(self.workdir / "data"),
                "GATEWAY_PORT": str(self.port), "GATEWAY_HOST": "127.0.0.1",
                "API_KEYS": f"{API_KEY}:owner", "GATEWAY_CACHE_ENTRIES": str(cache_entries),
                "LOG_LEVEL": "WARNING", "DATABASE_SCHEMA_PREFIX": self.schema_prefix}

    def start(self, cache_entries: int = 50_000):
        self.stack = Stack(self.env(cache_entries), ROOT, self.workdir / "logs")
        self.stack.start()
        self.stack.wait_ready(timeout=90)

    def measure(self, label: str, customers: int, paths: list[str]):
        cycle(self.base, paths, self.args.connections, self.args.warmup, self.workdir)  # fills caches; not counted
        figures = cycle(self.base, paths, self.args.connections, self.args.duration, self.workdir)
        self.rows.append((label, customers, figures))
        print(f"  {label:<44} {customers:>8,} {figures['rps']:>9.0f} {figures['p50']:>8.1f} {figures['p99']:>8.1f}"
              f"{'  (' + str(figures['errors']) + ' errors)' if figures['errors'] else ''}", flush=True)

    def run(self):
        base_uri = os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI
        ensure_rabbitmq(base_uri)
        self.vhost, self.amqp_uri = create_vhost(base_uri, prefix="roster_bench")
        try:
            self._scenarios()
        finally:
            if self.stack:
                self.stack.stop()
            delete_vhost(self.vhost)
            shutil.rmtree(self.workdir, ignore_errors=True)
            if is_postgres(os.environ.get("DATABASE_URL")):
                drop_schemas(os.environ["DATABASE_URL"], self.schema_prefix)

    def _scenarios(self):
        os.environ["DATA_DIR"] = str(self.workdir / "data")  # where bench.seed writes
        os.environ["DATABASE_SCHEMA_PREFIX"] = self.schema_prefix
        from bench.seed import seed_customers

        self.start()
        auth = (API_KEY, "")
        source = requests.post(f"{self.base}/v1/data_sources", json={"name": "Bench"}, auth=auth).json()["uuid"]
        print(f"\n  {'scenario (' + str(self.args.connections) + ' connections)':<44} {'customers':>8} "
              f"{'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for total in (1_000, 100_000):
            uuids = seed_customers(total, source)
            sample = uuids[:: max(1, len(uuids) // 1000)][:1000]
            middle = requests.get(f"{self.base}/v1/customers", auth=auth,
                                  params={"per_page": 200, "external_id": f"bench-{total // 2}"})
            assert middle.status_code == 200
            deep_cursor = self._cursor_after(total // 2)
            self.measure("GET /v1/customers/{uuid} (cached gateway)", total,
                         [f"/v1/customers/{u}" for u in sample])
            self.measure("GET /v1/customers?per_page=200 (first page)", total, ["/v1/customers?per_page=200"])
            self.measure("GET /v1/customers?per_page=200 (middle page)", total,
                         [f"/v1/customers?per_page=200&cursor={deep_cursor}"])
            if total == 1_000:
                self.stack.stop()
                self.start(cache_entries=0)
                self.measure("GET /v1/customers/{uuid} (naive: RPC each)", total,
                             [f"/v1/customers/{u}" for u in sample])
                self.stack.stop()
                self.start()

    @staticmethod
    def _cursor_after(customer_id: int) -> str:
        from roster.pagination import encode_cursor
        return encode_cursor({"after_id": customer_id})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=10, help="seconds of unmeasured load before each scenario")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench: wrk is not installed; install it with `apt-get install wrk`", file=sys.stderr)
        return 1
    try:
        Bench(args).run()
    except StackError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
