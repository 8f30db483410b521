"""Start, watch and stop the whole platform as local processes.

Used by `make run` (tools/run.py) and by the end-to-end tests (tests/e2e/conftest.py), so
both start the platform the same way and readiness waits live here, not in shell loops.
Every service is its own `nameko run` process; billing_sync's sync workers (`sync_worker`,
SYNC_WORKERS of them, default 2) compete for its work queue, and the gateway may run several
processes sharing one port (SO_REUSEPORT).
"""
from __future__ import annotations

import atexit
import base64
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Mapping
from urllib.parse import urlsplit

DEFAULT_AMQP_URI = "amqp://guest:guest@localhost:5672/"
DEFAULT_GATEWAY_PORT = 8000
DEFAULT_SYNC_WORKERS = 2
# A gateway worker mostly waits for an RPC's answer: with the services' 10 it held requests back
# in the accept queue (creates from 16 clients: 454/s, 486/s with 32). Overload now ends in the
# services' queues, where the bounded RPC answers a 503 in time, instead of in a hanging connection.
DEFAULT_GATEWAY_MAX_WORKERS = "64"
STOP_GRACE_SECONDS = 10
LOG_TAIL_LINES = 25
RESTART_MARKER = "--- restarted at"  # written into a log before each restart's output
# Supervision (make run): a process that dies is restarted after 1 s, 2 s, 4 s ... at most
# 30 s; a process that stayed up a minute before it died starts again from 1 s.
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
STABLE_UPTIME = 60.0

# Start order: the services the gateway calls first, the gateway last.
SERVICES = {
    "customers": "services.customers.service",
    "contacts": "services.contacts.service",
    "billing_sync": "services.billing_sync.service",
    "activities": "services.activities.service",
    "avatars": "services.avatars.service",
    # after the services its jobs call (and last but the gateway, so the others keep their places)
    "sync_worker": "services.billing_sync.worker",
    "gateway": "gateway.service:GatewayService",
}


class StackError(Exception):
    """The platform could not be started; the message says why, ready to print."""


# --- the broker -----------------------------------------------------------------------------

def broker_address(amqp_uri: str) -> tuple[str, int]:
    """Return (host, port) of the broker named by an AMQP URI."""
    parts = urlsplit(amqp_uri)
    return parts.hostname or "localhost", parts.port or 5672


def port_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Return True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_rabbitmq_server() -> str | None:
    """Return the path of the rabbitmq-server script, or None when RabbitMQ is not installed."""
    found = shutil.which("rabbitmq-server")
    if found:
        return found
    for candidate in ("/usr/sbin/rabbitmq-server", "/usr/lib/rabbitmq/bin/rabbitmq-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_rabbitmq(amqp_uri: str, timeout: float = 60) -> None:
    """Return once the broker port answers, starting a local RabbitMQ if it is installed."""
    host, port = broker_address(amqp_uri)
    if port_answers(host, port):
        return
    server = find_rabbitmq_server()
    if server is None:
        raise StackError(
            f"RabbitMQ is not installed and nothing answers on {host}:{port}: "
            "install it (apt-get install rabbitmq-server) or point AMQP_URI at a running broker."
        )
    if host not in ("localhost", "127.0.0.1", "::1"):
        raise StackError(
            f"No broker answers on {host}:{port} (AMQP_URI); start it there, or unset AMQP_URI "
            "to use a local RabbitMQ."
        )
    try:
        subprocess.run([server, "-detached"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StackError(f"Could not start RabbitMQ with `{server} -detached`: {exc}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_answers(host, port):
            return
        time.sleep(0.5)
    raise StackError(
        f"Started RabbitMQ (`{server} -detached`) but {host}:{port} did not answer within "
        f"{timeout:g}s; see /var/log/rabbitmq/."
    )


def rpc_health_problem(amqp_uri: str, name: str, timeout: float) -> str | None:
    """Return None when service `name` answers its `health` RPC with status ok, else why not."""
    from nameko.standalone.rpc import ClusterRpcProxy

    try:
        with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=timeout) as cluster:
            reply = getattr(cluster, name).health()
    except Exception as exc:  # UnknownService, RpcTimeout, broker hiccups
        return f"health: {type(exc).__name__}: {exc}"
    if not (isinstance(reply, dict) and reply.get("status") == "ok"):
        return f"health returned {reply!r}"
    return None


def http_ping_problem(port: int, key: str | None, expected=(200,), timeout: float = 3,
                      path: str = "/v1/ping") -> str | None:
    """Return None when GET http://127.0.0.1:port<path> answers one of `expected`, else why not."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if key:
        token = base64.b64encode(f"{key}:".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        return f"GET {path}: {exc}"
    if status not in expected:
        return f"GET {path} answered {status}, expected {' or '.join(map(str, expected))}"
    return None


def free_port() -> int:
    """Return a TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the processes ----------------------------------------------------------------------------

def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM this child when the process that started it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def restart_delay(restart: int, *, first: float = FIRST_RESTART_DELAY,
                  maximum: float = MAX_RESTART_DELAY) -> float:
    """Return the seconds to wait before the `restart`-th restart in a row (1 s doubling, capped)."""
    return min(maximum, first * 2 ** max(0, restart - 1))


def restarts_so_far(previous: int, uptime: float, *, stable: float = STABLE_UPTIME) -> int:
    """Return how many restarts in a row precede the next one: none after a stable run."""
    return 0 if uptime >= stable else previous


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last lines of a log file written since the last restart ('' when there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    text = text.rpartition(RESTART_MARKER)[2].partition("\n")[2] if RESTART_MARKER in text else text
    return "\n".join(text.rstrip().splitlines()[-lines:])


@dataclass
class ServiceProcess:
    name: str
    module: str
    log_path: Path
    popen: subprocess.Popen
    log_file: IO[bytes]
    started_at: float = field(default_factory=time.monotonic)
    restarts: int = 0  # restarts in a row that led to this process (supervision)
    restart_at: float | None = None  # when the supervisor will start its replacement

    @property
    def label(self) -> str:
        return self.log_path.stem

    def alive(self) -> bool:
        return self.popen.poll() is None

    def describe_exit(self) -> str:
        log = tail(self.log_path)
        return (f"{self.label} exited with code {self.popen.returncode} "
                f"(log: {self.log_path})" + (f":\n{log}" if log else ""))


class Stack:
    """The platform's processes: start them, wait until they answer, restart the ones that die, stop them.

    `services` maps each name to what `nameko run` starts (default: SERVICES, the whole platform);
    a name "gateway" is the HTTP gateway, any other an RPC service with a `health` method.
    """

    def __init__(self, env: dict, root: Path, log_dir: Path, services: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.root = Path(root).resolve()
        self.log_dir = Path(log_dir)
        self.services = dict(SERVICES if services is None else services)
        self.clock = clock
        self.env = dict(env)
        self.env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(self.root), self.env.get("PYTHONPATH", "")]))
        self.env.setdefault("AMQP_URI", DEFAULT_AMQP_URI)
        self.env["GATEWAY_PORT"] = str(int(self.env.get("GATEWAY_PORT") or DEFAULT_GATEWAY_PORT))
        self.gateway_port = int(self.env["GATEWAY_PORT"])
        self.processes: dict[str, list[ServiceProcess]] = {name: [] for name in self.services}
        self._atexit_registered = False

    # -- settings

    @property
    def amqp_uri(self) -> str:
        return self.env["AMQP_URI"]

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def api_key(self) -> str | None:
        """Return the first key of API_KEYS (`key:role,...`), used for the readiness ping."""
        first = self.env.get("API_KEYS", "").split(",")[0].strip()
        return first.rpartition(":")[0] or None

    def process_count(self, name: str) -> int:
        if name == "sync_worker":
            return max(0, int(self.env.get("SYNC_WORKERS") or DEFAULT_SYNC_WORKERS))
        if name == "gateway":
            return max(1, int(self.env.get("GATEWAY_PROCESSES") or 1))
        return 1

    def log_paths(self, name: str) -> list[Path]:
        count = self.process_count(name)
        if count == 1:
            return [self.log_dir / f"{name}.log"]
        return [self.log_dir / f"{name}-{n}.log" for n in range(1, count + 1)]

    # -- starting

    def start(self) -> None:
        """Launch every service's processes (fresh log files); does not wait for readiness."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in self.services:  # logs of an earlier run with other process counts
            for stale in [*self.log_dir.glob(f"{name}.log"), *self.log_dir.glob(f"{name}-*.log")]:
                stale.unlink()
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        for name in self.services:
            self._launch(name, log_mode="wb")

    def start_service(self, name: str) -> None:
        """(Re)start one service's processes, appending to their logs; does not wait."""
        self._check_name(name)
        self.stop_service(name)
        self._launch(name, log_mode="ab")

    def _launch(self, name: str, log_mode: str) -> None:
        if name == "gateway" and port_answers("127.0.0.1", self.gateway_port):
            # eventlet listens with SO_REUSEPORT: a second listener would not fail to bind,
            # it would silently take half of the traffic. Refuse instead.
            raise StackError(
                f"Port {self.gateway_port} is already in use (another `make run`?); "
                "stop it or set GATEWAY_PORT to another port."
            )
        if self.process_count(name) > 1:  # every process starts now: earlier counters must not add up with ours
            shutil.rmtree(self.multiproc_dir(name), ignore_errors=True)
            self.multiproc_dir(name).mkdir(parents=True, exist_ok=True)
        for index, log_path in enumerate(self.log_paths(name)):
            if index == 1 and name != "gateway":
                # Let the first process create the tables before its siblings try the same
                # (two concurrent create_all calls race on a fresh database).
                self._wait_consuming(name, timeout=60)
            self.processes[name].append(self._spawn(name, log_path, log_mode))

    def command(self, name: str) -> list[str]:
        """Return the command line that runs one process of service `name`."""
        return [sys.executable, "-m", "nameko", "run", "--config", "config.yaml", self.services[name]]

    def metrics_port(self, name: str) -> int | None:
        """The metrics port of service `name`: METRICS_PORT + its place in SERVICES (1 for customers ...).

        None for the gateway (its /metrics is on its own port) and when METRICS_PORT is unset or 0.
        """
        base = int(self.env.get("METRICS_PORT") or 0)
        if not base or name == "gateway":
            return None
        return base + 1 + [other for other in SERVICES if other != "gateway"].index(name) \
            if name in SERVICES else None

    def multiproc_dir(self, name: str) -> Path:
        """Where the processes of a service with several of them keep prometheus_client's shared files."""
        return Path(self.env.get("DATA_DIR") or self.log_dir) / "metrics" / name

    def service_env(self, name: str) -> dict:
        """The environment of one process of service `name`: its own metrics port, and a shared
        prometheus multiprocess folder when it runs as several processes (roster/metrics.py)."""
        env = dict(self.env)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if name == "gateway":
            env["MAX_WORKERS"] = self.env.get("GATEWAY_MAX_WORKERS") or DEFAULT_GATEWAY_MAX_WORKERS
        port = self.metrics_port(name)
        if port is not None:
            env["METRICS_PORT"] = str(port)
        elif name != "gateway":
            env.pop("METRICS_PORT", None)
        if self.process_count(name) > 1:
            env["PROMETHEUS_MULTIPROC_DIR"] = str(self.multiproc_dir(name))
        return env

    def _spawn(self, name: str, log_path: Path, log_mode: str, restarts: int = 0) -> ServiceProcess:
        log_file = open(log_path, log_mode)
        if log_mode == "ab":
            log_file.write(f"\n{RESTART_MARKER} {time.strftime('%H:%M:%S')} ---\n".encode())
            log_file.flush()
        popen = subprocess.Popen(
            self.command(name), cwd=self.root, env=self.service_env(name), stdin=subprocess.DEVNULL,
            stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        return ServiceProcess(name, self.services[name], log_path, popen, log_file,
                              started_at=self.clock(), restarts=restarts)

    def _wait_consuming(self, name: str, timeout: float) -> None:
        """Return when a process of `name` consumes its RPC queue; fail fast if one exits."""
        from kombu import Connection

        deadline = time.monotonic() + timeout
        problem = "no answer"
        while time.monotonic() < deadline:
            self._fail_if_exited()
            try:
                with Connection(self.amqp_uri, connect_timeout=3) as conn:
                    _, _, consumers = conn.default_channel.queue_declare(
                        queue=f"rpc-{name}", passive=True)
                if consumers >= 1:
                    return
                problem = f"nothing consumes rpc-{name}"
            except Exception as exc:  # the queue is not declared yet
                problem = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)
        raise self._not_ready([name], {name: problem}, timeout)

    # -- stopping

    def stop_service(self, name: str, timeout: float = STOP_GRACE_SECONDS) -> None:
        """Stop one service's processes: SIGTERM, then SIGKILL after `timeout` seconds."""
        self._check_name(name)
        self._terminate(self.processes[name], timeout)
        self.processes[name] = []

    def stop(self, timeout: float = STOP_GRACE_SECONDS) -> None:
        """Stop every process, the gateway first; safe to call more than once."""
        everything = [proc for name in reversed(list(self.services)) for proc in self.processes[name]]
        self._terminate(everything, timeout)
        self.processes = {name: [] for name in self.services}

    @staticmethod
    def _signal(proc: ServiceProcess, sig: int) -> None:
        try:
            os.killpg(proc.popen.pid, sig)  # the child leads its own session and group
        except ProcessLookupError:
            pass
        except PermissionError:
            try:
                proc.popen.send_signal(sig)
            except ProcessLookupError:
                pass

    def _terminate(self, procs: list[ServiceProcess], timeout: float) -> None:
        for proc in procs:
            if proc.alive():
                self._signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.popen.wait()
            # anything the service itself started in its group goes too
            self._signal(proc, signal.SIGKILL)
            proc.log_file.close()

    # -- supervising (make run)

    def supervise_once(self) -> list[str]:
        """Restart what died on its own, with backoff; return one report per exit and per restart.

        A process found dead is given a restart time (1 s, 2 s, 4 s ... at most 30 s after its
        death, back to 1 s if it had stayed up a minute); a later call past that time starts its
        replacement. Processes stopped through stop()/stop_service() are not watched any more.
        """
        reports = []
        now = self.clock()
        for name, procs in self.processes.items():
            for index, proc in enumerate(procs):
                if proc.alive():
                    continue
                if proc.restart_at is None:
                    restart = restarts_so_far(proc.restarts, now - proc.started_at) + 1
                    delay = restart_delay(restart)
                    proc.restarts = restart
                    proc.restart_at = now + delay
                    log = tail(proc.log_path)
                    reports.append(
                        f"{proc.label} exited with code {proc.popen.returncode}; restarting in {delay:g} s "
                        f"(restart {restart}); log: {proc.log_path}" + (f"\n{log}" if log else ""))
                elif now >= proc.restart_at:
                    self._signal(proc, signal.SIGKILL)  # anything it left in its process group
                    proc.log_file.close()
                    procs[index] = self._spawn(name, proc.log_path, "ab", restarts=proc.restarts)
                    reports.append(f"{proc.label} restarted (restart {proc.restarts}, pid {procs[index].popen.pid})")
        return reports

    # -- watching

    def exited(self) -> list[ServiceProcess]:
        """Return the processes that have exited although nobody stopped them."""
        return [proc for procs in self.processes.values() for proc in procs if not proc.alive()]

    def _fail_if_exited(self) -> None:
        dead = self.exited()
        if dead:
            raise StackError("\n".join(proc.describe_exit() for proc in dead))

    def wait_ready(self, timeout: float = 60) -> None:
        """Return when every service answers `health` and the gateway answers /v1/ping.

        Each RPC service must also have as many consumers on its queue as it has processes,
        so every sync worker is up. Raise StackError naming what did not come up, with the
        tail of its log; a process that exits meanwhile fails the wait at once.
        """
        deadline = time.monotonic() + timeout
        waiting = [name for name in self.services if name != "gateway" and self.processes[name]]
        problems: dict[str, str] = {}
        while waiting:
            self._fail_if_exited()
            for name in list(waiting):
                problem = self._rpc_problem(name, max(0.5, min(3.0, deadline - time.monotonic())))
                if problem is None:
                    waiting.remove(name)
                    problems.pop(name, None)
                else:
                    problems[name] = problem
            if waiting and time.monotonic() >= deadline:
                raise self._not_ready(waiting, problems, timeout)
            if waiting:
                time.sleep(0.25)
        if self.processes.get("gateway"):
            while True:
                self._fail_if_exited()
                problem = self._gateway_problem()
                if problem is None:
                    break
                if time.monotonic() >= deadline:
                    raise self._not_ready(["gateway"], {"gateway": problem}, timeout)
                time.sleep(0.25)
        self._fail_if_exited()

    def _not_ready(self, names: list[str], problems: dict[str, str], timeout: float) -> StackError:
        parts = [f"Not ready after {timeout:g}s: {', '.join(names)}."]
        for name in names:
            parts.append(f"{name}: {problems.get(name, 'no answer')}")
            for proc in self.processes[name]:
                parts.append(f"--- tail of {proc.log_path} ---\n{tail(proc.log_path)}")
        return StackError("\n".join(parts))

    def _rpc_problem(self, name: str, call_timeout: float) -> str | None:
        """Return None when `name` answers health on every process, else what is wrong."""
        from kombu import Connection

        try:
            # Count consumers first: cheap, and it publishes nothing to a queue nobody reads.
            with Connection(self.amqp_uri, connect_timeout=call_timeout) as conn:
                _, _, consumers = conn.default_channel.queue_declare(
                    queue=f"rpc-{name}", passive=True)
        except Exception as exc:  # the service has not declared its queue yet
            return f"{type(exc).__name__}: {exc}"
        expected = len(self.processes[name])
        if consumers < expected:
            return f"{consumers} of {expected} processes consume rpc-{name}"
        return rpc_health_problem(self.amqp_uri, name, call_timeout)

    def _gateway_problem(self) -> str | None:
        """Return None when GET /v1/ping answers 200 (401 when no API key is configured)."""
        key = self.api_key
        return http_ping_problem(self.gateway_port, key, expected=(200,) if key else (401,))

    def _check_name(self, name: str) -> None:
        if name not in self.services:
            raise ValueError(f"unknown service {name!r}; one of {', '.join(self.services)}")


def main(argv: list[str]) -> int:
    """`python -m tools.stack health NAME`: exit 0 when that service answers (container healthcheck).

    An RPC service must answer `health` (status ok: its database answers too); the gateway must
    answer GET /healthz (liveness; /readyz is for load balancers, docs/operations.md).
    Uses AMQP_URI and GATEWAY_PORT from the environment.
    """
    if len(argv) != 2 or argv[0] != "health" or argv[1] not in SERVICES:
        print(f"usage: python -m tools.stack health {{{'|'.join(SERVICES)}}}", file=sys.stderr)
        return 2
    name = argv[1]
    if name == "gateway":
        port = int(os.environ.get("GATEWAY_PORT") or DEFAULT_GATEWAY_PORT)
        problem = http_ping_problem(port, None, expected=(200,), path="/healthz")
    else:
        problem = rpc_health_problem(os.environ.get("AMQP_URI", DEFAULT_AMQP_URI), name, timeout=5)
    if problem:
        print(f"{name}: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    sys.exit(main(sys.argv[1:]))
