"""Write benchmark: a read/write mix and a burst of creates, Roster against a naive nameko peer.

    make bench-writes      (SQLite, then PostgreSQL when DATABASE_URL points there)
    .venv/bin/python bench/writes.py [--duration 20] [--warmup 10] [--gateway-processes 1]

Scenarios, each against Roster (the whole platform: gateway, every service, their consumers)
and against the naive peer of bench/naive.py (a gateway and a service: one RPC, one row, one
commit, no outbox, no events):
  * mixed: 32 connections, 90% `GET /v1/customers/{uuid}` and 10% `PATCH` of the name, spread
    over 2,000 customers;
  * paced: the same mix held at a fixed rate (`--rate`, default 1,500 req/s: the issue's target)
    instead of as fast as it goes, for the latency a client sees at that rate. wrk waits
    `delay()` between a connection's answer and its next request; the delay is calibrated from
    short runs so that 64 connections together send `--rate`. (wrk does not correct for
    coordinated omission: a slow answer delays that connection's next request.) The mixed
    scenario above saturates the machine, so its p99 is the latency at saturation;
  * creates: 16 connections of `POST /v1/customers`, each with a new external id; besides the
    API's rate it prints the settled rate, counted until every consumer (activities, avatars,
    ...) has handled the creates' events, and the CPU per create over that time; the naive
    peer's CPU per create beside it is the floor of one HTTP request, one RPC and one row.
Every scenario gets an unmeasured warm-up first. Figures vary by about ±20% from run to run
on a shared 2-core machine; run it on a quiet one.
"""
import argparse
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.common import (API_KEY, METRICS_PORT, Platform, counters_report, cpu_report, cpu_seconds,  # noqa: E402
                          host_speed, metrics_urls, process_cpu, read_counters, server_cpu_seconds, wrk)
from tools.isolation import is_postgres  # noqa: E402
from tools.stack import free_port, rpc_health_problem  # noqa: E402

CUSTOMERS = 2_000
TOLERANCE = 0.03  # how far from --rate the paced scenario may run (wrk pauses in whole ms: ~2% steps)

# A request given its own headers loses wrk's -H ones (the API key): copy them in.
JSON_HEADERS = textwrap.dedent("""
    function json_headers()
      local h = {["Content-Type"] = "application/json"}
      for name, value in pairs(wrk.headers) do h[name] = value end
      return h
    end
""")

MIXED = JSON_HEADERS + textwrap.dedent("""
    local paths = {}
    for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
    local n = 0
    local headers = nil
    request = function()
      headers = headers or json_headers()
      n = n + 1
      local path = paths[math.random(#paths)]
      if n % 10 == 0 then
        return wrk.format("PATCH", path, headers, '{"name": "n' .. n .. '"}')
      end
      return wrk.format("GET", path)
    end
""")

PACED = MIXED + textwrap.dedent("""
    local pause = tonumber(os.getenv("BENCH_DELAY_MS"))
    delay = function() return pause end
""")

CREATES = JSON_HEADERS + textwrap.dedent("""
    local n = 0
    local run = tostring(os.time()) .. "-" .. tostring(math.random(1, 1000000))
    local source = os.getenv("BENCH_SOURCE")
    local headers = nil
    request = function()
      headers = headers or json_headers()
      n = n + 1
      return wrk.format("POST", "/v1/customers", headers,
        '{"data_source_uuid": "' .. source .. '", "external_id": "' .. run .. '-' .. n .. '", "name": "Bench"}')
    end
""")


def create_customers(base: str, source: str, total: int, threads: int = 16) -> list[str]:
    """Create customers through the API (so every service holds what it would in real use); return their uuids."""
    from concurrent.futures import ThreadPoolExecutor

    session = requests.Session()
    session.auth = (API_KEY, "")

    def create(n: int) -> str:
        answer = session.post(f"{base}/v1/customers", timeout=60, json={
            "data_source_uuid": source, "external_id": f"seed-{n}", "name": f"Customer {n}",
            "email": f"c{n}@example.com", "company": f"Company {n}", "website_url": f"https://c{n}.example.com"})
        answer.raise_for_status()
        return answer.json()["uuid"]

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(create, range(total)))


class WriteBench:
    def __init__(self, args):
        self.args = args
        self.platform = Platform(GATEWAY_PROCESSES=str(args.gateway_processes), METRICS_PORT=str(METRICS_PORT))
        self.results = {}
        self.naive = []

    def run(self):
        self.host = host_speed()  # before anything starts, so nothing else competes for the CPU
        try:
            if self.args.only in (None, "roster"):
                self.roster()
                self.platform.stop()
            if self.args.only in (None, "naive"):
                self.naive_peer()
        finally:
            for process in self.naive:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:  # nameko's graceful stop can hang on a lingering connection
                    process.kill()
                    process.wait()
            self.platform.close()
        self.report()

    def measure(self, system: str, scenario: str, base: str, script: str, connections: int, env: dict,
                settle: bool = False):
        """Run one scenario; with `settle`, its CPU counts until the consumers have handled every event,
        and it also prints the settled rate: requests per second until every consumer is done."""
        workdir = self.platform.workdir
        settle = settle and system == "roster"
        wrk(base, script, connections=connections, duration=self.args.warmup, workdir=workdir, env=env)
        if settle:
            self.platform.wait_quiet()
        before = self._cpu_seconds(system)
        counted = read_counters(self._metrics()) if settle else None
        started = time.monotonic()
        figures = wrk(base, script, connections=connections, duration=self.args.duration, workdir=workdir, env=env)
        if settle:
            settled_at = self.platform.wait_quiet()
            figures["settled"] = figures["rps"] * self.args.duration / max(0.1, settled_at - started)
        self.results[(system, scenario)] = figures
        print(f"  {system:<7} {scenario:<8} {figures['rps']:>8.0f} req/s  p50 {figures['p50']:>6.1f} ms  "
              f"p99 {figures['p99']:>6.1f} ms  errors {figures['errors']}", flush=True)
        if "settled" in figures:
            print(f"  {'':<7} {scenario:<8} {figures['settled']:>8.0f} req/s settled (until every consumer is done)",
                  flush=True)
        if before is not None:
            requests_done = max(1.0, figures["rps"] * self.args.duration)
            print("\n".join(cpu_report(before, self._cpu_seconds(system), requests_done, "request")), flush=True)
        if counted is not None:  # how well the consumers batched: events handled per worker
            print("  what the platform counted (a batch worker's events: events handled / its workers)")
            print("\n".join(counters_report(counted, read_counters(self._metrics()))), flush=True)

    def _cpu_seconds(self, system: str) -> dict[str, float]:
        """CPU used so far by `system`'s processes, the broker and the database: the naive peer's
        figures show what its one RPC and one row cost, beside what Roster's create costs."""
        if system == "roster":
            return cpu_seconds(self.platform.stack)
        names = ("naive service", "naive gateway")  # the order naive_peer() starts them in
        return {**{name: process_cpu(proc.pid) for name, proc in zip(names, self.naive)}, **server_cpu_seconds()}

    def _metrics(self) -> list[str]:
        return metrics_urls(self.platform.stack, self.platform.base)

    def measure_paced(self, base: str, paths: Path, connections: int = 64) -> None:
        """The mix at `--rate` requests/s: each connection pauses between an answer and its next
        request, by a delay calibrated so that the connections together send that rate (wrk's
        timers have a granularity of 1 ms: 64 connections make a step of it about 2.5% of the rate)."""
        workdir, rate = self.platform.workdir, self.args.rate
        pause = connections / rate * 1000.0  # ms between requests of one connection, if answers took no time
        trial, held = 5, False
        for _ in range(8):  # take the answers' own time (and the timers' lateness) off the pause
            env = {"BENCH_PATHS": str(paths), "BENCH_DELAY_MS": f"{max(pause, 0.0):.2f}"}
            duration = trial or self.args.duration
            figures = wrk(base, PACED, connections=connections, duration=duration, workdir=workdir, env=env)
            if abs(figures["rps"] - rate) < TOLERANCE * rate:
                if not trial:
                    held = True  # the measured run held the rate
                    break
                trial = 0  # calibrated: now the measured run
                continue
            # off: calibrate again (a measured run drifts when, say, the database was still busy
            # after the seeding during the short trials)
            trial = 5
            pause += (connections / rate - connections / figures["rps"]) * 1000.0
        self.results[("roster", "paced")] = figures
        outcome = f"held at --rate {rate:.0f}" if held else f"DID NOT HOLD --rate {rate:.0f} (last run of {duration} s)"
        print(f"  roster  paced    {figures['rps']:>8.0f} req/s  p50 {figures['p50']:>6.1f} ms  "
              f"p99 {figures['p99']:>6.1f} ms  errors {figures['errors']}   ({outcome}; "
              f"delay {pause:.1f} ms)", flush=True)

    def roster(self):
        self.platform.start()
        auth = (API_KEY, "")
        base = self.platform.base
        source = requests.post(f"{base}/v1/data_sources", json={"name": "Bench"}, auth=auth).json()["uuid"]
        uuids = create_customers(base, source, CUSTOMERS)
        self.platform.wait_quiet()  # the creates' events handled before anything is measured
        paths = self.platform.workdir / "paths.txt"
        paths.write_text("\n".join(f"/v1/customers/{u}" for u in uuids) + "\n")
        if "mixed" in self.args.scenarios:
            self.measure("roster", "mixed", base, MIXED, 32, {"BENCH_PATHS": str(paths)})
            self.platform.wait_quiet()
        if "paced" in self.args.scenarios:
            self.measure_paced(base, paths)
            self.platform.wait_quiet()
        if "creates" in self.args.scenarios:
            self.measure("roster", "creates", base, CREATES, 16, {"BENCH_SOURCE": source}, settle=True)

    def naive_peer(self):
        port = free_port()
        env = {**self.platform.env, "GATEWAY_PORT": str(port), "PYTHONPATH": str(ROOT)}
        Path(env["DATA_DIR"]).mkdir(parents=True, exist_ok=True)  # made by the platform, unless --only naive
        for service in ("bench.naive:NaiveCustomers", "bench.naive:NaiveGateway"):
            self.naive.append(subprocess.Popen(
                [sys.executable, "-m", "nameko", "run", "--config", "config.yaml", service], cwd=ROOT, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while rpc_health_problem(self.platform.amqp_uri, "naive_customers", 2) and time.monotonic() < deadline:
            time.sleep(0.5)
        from nameko.standalone.rpc import ClusterRpcProxy

        with ClusterRpcProxy({"AMQP_URI": self.platform.amqp_uri}, timeout=60) as cluster:
            uuids = cluster.naive_customers.seed(CUSTOMERS)
        base = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                requests.get(f"{base}/v1/customers/{uuids[0]}", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.5)
        paths = self.platform.workdir / "naive-paths.txt"
        paths.write_text("\n".join(f"/v1/customers/{u}" for u in uuids) + "\n")
        if "mixed" in self.args.scenarios:
            self.measure("naive", "mixed", base, MIXED, 32, {"BENCH_PATHS": str(paths)})
        if "creates" in self.args.scenarios:
            self.measure("naive", "creates", base, CREATES, 16, {"BENCH_SOURCE": "ds_naive"})

    def report(self):
        database = "PostgreSQL" if is_postgres(os.environ.get("DATABASE_URL")) else "SQLite"
        print(f"\n  {database}, {self.args.gateway_processes} gateway process(es), {self.args.duration}s each")
        print(f"  {self.host}")
        for scenario in ("mixed", "creates"):
            if ("roster", scenario) not in self.results or ("naive", scenario) not in self.results:
                continue
            roster, naive = self.results[("roster", scenario)], self.results[("naive", scenario)]
            print(f"  {scenario:<8} Roster {roster['rps']:>6.0f}/s (p99 {roster['p99']:.0f} ms)   "
                  f"naive {naive['rps']:>6.0f}/s (p99 {naive['p99']:.0f} ms)   "
                  f"Roster/naive {roster['rps'] / naive['rps']:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--gateway-processes", type=int, default=1)
    parser.add_argument("--only", choices=("roster", "naive"), help="measure one side only")
    parser.add_argument("--scenarios", nargs="+", choices=("mixed", "paced", "creates"),
                        default=["mixed", "paced", "creates"])
    parser.add_argument("--rate", type=float, default=1500.0, help="requests/s of the paced scenario")
    args = parser.parse_args()
    WriteBench(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
