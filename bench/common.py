"""What every benchmark needs: a throwaway platform (vhost, data folder, schemas) and wrk."""
import base64
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from tools.isolation import create_vhost, delete_vhost, drop_schemas, is_postgres, schema_prefix
from tools.stack import DEFAULT_AMQP_URI, Stack, ensure_rabbitmq, free_port

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-owner-key"


def wrk(base_url: str, script: str, *, connections: int, duration: int, workdir: Path, env: dict | None = None) -> dict:
    """Run wrk with a Lua `script` against `base_url`; return req/s, p50 and p99 (ms) and non-2xx count."""
    script_path = workdir / "scenario.lua"
    script_path.write_text(script)
    auth = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script_path),
         "-H", f"Authorization: {auth}", base_url],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, check=True,
    )
    return parse_wrk(result.stdout)


def parse_wrk(output: str) -> dict:
    def millis(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    for label, key in (("50%", "p50"), ("99%", "p99")):
        figures[key] = millis(re.search(rf"{label}\s+([\d.]+\w+)", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    figures["errors"] = int(errors.group(1)) if errors else 0
    return figures


def process_cpu(pid: int) -> float:
    """Return the user + system CPU seconds of a process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def cpu_seconds(stack) -> dict[str, float]:
    """CPU seconds used so far by each platform process, the broker and the database server.

    The broker and database figures are whole servers: on a shared machine they include others' load.
    """
    found = {}
    for name, procs in stack.processes.items():
        for index, proc in enumerate(procs):
            found[f"{name}{'-' + str(index + 1) if len(procs) > 1 else ''}"] = process_cpu(proc.popen.pid)
    return {**found, **server_cpu_seconds()}


def server_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by the broker and the database server (whole servers)."""
    return {"rabbitmq (whole broker)": sum(process_cpu(pid) for pid in pids_named("beam.smp")),
            "postgres (whole server)": sum(process_cpu(pid) for pid in pids_named("postgres"))}


def cpu_report(before: dict, after: dict, count: int, unit: str) -> list[str]:
    """Lines of CPU per `unit` by process between two `cpu_seconds` readings."""
    lines, platform = [], 0.0
    for name in after:
        used = after[name] - before.get(name, 0.0)
        if used > 0.01:
            lines.append(f"    {name:<26} {used / count * 1000:>6.2f} ms per {unit}")
            if "whole" not in name:
                platform += used
    lines.append(f"    {'services + gateway':<26} {platform / count * 1000:>6.2f} ms per {unit}")
    return lines


def host_speed() -> str:
    """Return a line saying how fast this machine runs plain Python right now.

    Figures move with the host (the same code has made 2x more or less from one machine of this
    kind to the next), so every benchmark prints this beside its own: compare runs on one host,
    or scale by it. It is the best of three runs of a 10-million-step loop, taken with the
    platform idle."""
    best = min(_loop_seconds() for _ in range(3))
    return f"host: a 10M-step Python loop takes {best:.2f} s (best of 3; lower is faster)"


_LOOP = compile("total = 0\nfor step in range(10_000_000):\n    total += step\n", "<host-speed>", "exec")


def _loop_seconds() -> float:
    # at module level (global names), as `python -c` runs it: the figure the session notes quote
    began = time.perf_counter()
    exec(_LOOP, {})
    return time.perf_counter() - began


# What the platform counted: how many workers ran (and so how many events a batch worker took on
# average), which RPCs were made, how the gateway cache did. Read off each process's /metrics.
COUNTERS = ("roster_worker_duration_seconds_count", "roster_events_handled_total",
            "roster_rpc_client_duration_seconds_count", "roster_gateway_cache_reads_total",
            "roster_events_published_total", "roster_outbox_batches_total")
METRICS_PORT = 19100  # services at METRICS_PORT + 1 ...; the gateway on its own port


def metrics_urls(stack, gateway_base: str) -> list[str]:
    """The /metrics addresses of a platform started with METRICS_PORT (tools/stack.metrics_port)."""
    ports = {stack.metrics_port(name) for name in stack.processes} - {None}
    return [f"{gateway_base}/metrics"] + [f"http://127.0.0.1:{port}/metrics" for port in sorted(ports)]


def read_counters(urls: list[str]) -> Counter:
    """Sum the COUNTERS samples, by name and labels, over these /metrics pages."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    found: Counter = Counter()
    for url in urls:
        try:
            text = requests.get(url, timeout=5).text
        except requests.RequestException:
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in COUNTERS:
                    found[(sample.name, tuple(sorted(sample.labels.items())))] += sample.value
    return found


def counters_report(before: Counter, after: Counter) -> list[str]:
    """Lines of what was counted between two `read_counters`, with events per worker of batch handlers."""
    lines = []
    for (name, labels), value in sorted(after.items()):
        grown = value - before.get((name, labels), 0)
        if grown >= 1:
            shown = {key: label for key, label in labels if key not in ("outcome", "kind")}
            lines.append(f"    {grown:>9,.0f}  {name.removeprefix('roster_').removesuffix('_total')} "
                         f"{' '.join(f'{key}={label}' for key, label in shown.items())}")
    return lines


class Platform:
    """The platform on a vhost, data folder and (on PostgreSQL) schemas of its own."""

    def __init__(self, **env):
        self.workdir = Path(tempfile.mkdtemp(prefix="roster-bench-"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.schema_prefix = schema_prefix()
        base_uri = os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI
        ensure_rabbitmq(base_uri)
        self.vhost, self.amqp_uri = create_vhost(base_uri, prefix="roster_bench")
        self.env = {**os.environ, "AMQP_URI": self.amqp_uri, "DATA_DIR": str(self.workdir / "data"),
                    "GATEWAY_PORT": str(self.port), "GATEWAY_HOST": "127.0.0.1", "API_KEYS": f"{API_KEY}:owner",
                    "LOG_LEVEL": "WARNING", "DATABASE_SCHEMA_PREFIX": self.schema_prefix, **env}
        # bench.seed and the naive peer read these from the environment of this process
        os.environ.update({"DATA_DIR": self.env["DATA_DIR"], "DATABASE_SCHEMA_PREFIX": self.schema_prefix})
        self.stack = None

    def wait_quiet(self, timeout: float = 300, quiet: float = 1.0) -> float:
        """Wait until no queue of the platform's vhost has had a message waiting for `quiet` seconds
        (the consumers caught up); return when that began (time.monotonic()).

        The counts come from passive queue declares, which the broker answers from the queues
        themselves; the management API's counts are statistics it refreshes only every 5 s, so
        they said "busy" for up to 5 s after the last message was taken. A message a consumer
        holds unacknowledged is not counted: the quiet second covers a batch in progress.
        """
        import time
        from urllib.parse import quote

        from kombu import Connection

        from tools.isolation import ManagementApi

        api = ManagementApi.from_environment(self.amqp_uri)
        queues = [queue["name"] for queue in api.call("GET", f"queues/{quote(self.vhost, safe='')}").json()
                  if not queue.get("exclusive")]  # a caller's reply queue: another connection's to declare
        deadline, quiet_since = time.monotonic() + timeout, None
        with Connection(self.amqp_uri) as connection:
            channel = connection.channel()
            while time.monotonic() < deadline:
                waiting = 0
                for name in queues:
                    try:
                        waiting += channel.queue_declare(name, passive=True).message_count
                    except connection.channel_errors:  # gone (an auto-deleted queue): the channel closed
                        channel = connection.channel()
                now = time.monotonic()
                if waiting:
                    quiet_since = None
                else:
                    quiet_since = quiet_since or now
                    if now - quiet_since >= quiet:
                        return quiet_since
                time.sleep(0.05)
        return time.monotonic()

    def start(self, **env) -> Stack:
        self.stack = Stack({**self.env, **env}, ROOT, self.workdir / "logs")
        self.stack.start()
        self.stack.wait_ready(timeout=120)
        return self.stack

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()
            self.stack = None

    def close(self) -> None:
        self.stop()
        delete_vhost(self.vhost)
        shutil.rmtree(self.workdir, ignore_errors=True)
        if is_postgres(os.environ.get("DATABASE_URL")):
            drop_schemas(os.environ["DATABASE_URL"], self.schema_prefix)
