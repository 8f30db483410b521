"""`make run`: start RabbitMQ if needed, every service and the gateway; stop all on Ctrl-C.

Settings come from the environment (see README.md): AMQP_URI, DATA_DIR (default var),
GATEWAY_PORT (default 8000), GATEWAY_PROCESSES, SYNC_WORKERS, API_KEYS, API_KEYS_FILE,
METRICS_PORT (default 9100: customers' metrics on 9101, contacts' on 9102 ...). Without API_KEYS
and API_KEYS_FILE an owner key is generated once and kept in plain text in DATA_DIR/api_key (a
development convenience: the banner prints it on every run), so later runs print the same key.
Production keys belong in API_KEYS_FILE, stored hashed (`python -m tools.keys add --role ...`).
A process that dies is restarted with backoff (tools.stack.Stack.supervise_once), and says so.
"""
from __future__ import annotations

import os
import secrets
import signal
import sys
import time
import warnings
from pathlib import Path

# The readiness checks import nameko, hence eventlet, which warns on import (STACK.md).
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from tools.stack import DEFAULT_AMQP_URI, Stack, StackError, ensure_rabbitmq  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class Stop(Exception):
    """Raised from the signal handler to leave whatever the main loop is doing."""


def _raise_stop(signum, frame):
    raise Stop(signal.Signals(signum).name)


def owner_key(data_dir: Path) -> str:
    """Return the persisted owner key of this checkout, creating it on first use."""
    path = data_dir / "api_key"
    if path.exists():
        key = path.read_text().strip()
        if key:
            return key
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(16)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def settings() -> dict:
    """Return the environment of the services, with this runner's defaults filled in."""
    env = dict(os.environ)
    env.setdefault("AMQP_URI", DEFAULT_AMQP_URI)
    data_dir = Path(env.get("DATA_DIR") or "var")
    if not data_dir.is_absolute():
        data_dir = ROOT / data_dir
    env["DATA_DIR"] = str(data_dir)
    env["GATEWAY_PORT"] = env.get("GATEWAY_PORT") or "8000"
    if not env.get("API_KEYS") and not env.get("API_KEYS_FILE"):
        env["API_KEYS"] = f"{owner_key(data_dir)}:owner"
    env.setdefault("METRICS_PORT", "9100")
    return env


def banner(stack: Stack, env: dict, log_dir: Path) -> str:
    port = stack.gateway_port
    first = env.get("API_KEYS", "").split(",")[0].strip()
    key, _, role = first.rpartition(":")
    if not key:  # keys only in API_KEYS_FILE: stored hashed, so there is none to show
        key, role = "KEY", f"one of {env.get('API_KEYS_FILE')}"
    workers = stack.process_count("sync_worker")
    gateways = stack.process_count("gateway")
    return "\n".join([
        "",
        "Roster is running.",
        f"  Gateway:  http://localhost:{port}/v1"
        + (f"  ({gateways} processes)" if gateways > 1 else ""),
        f"  API key:  {key}  (role: {role})",
        f"  Try:      curl -u {key}: http://localhost:{port}/v1/ping",
        f"  Python:   cfg = chartmogul.Config({key!r}); cfg.uri = 'http://localhost:{port}/v1'",
        f"  Services: {', '.join(stack.processes)}"
        + f"  ({workers} sync workers)",
        f"  Logs:     {log_dir}/",
        "Press Ctrl-C to stop.",
        "",
    ])


def main() -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_stop)
    stack = None
    try:
        env = settings()
        ensure_rabbitmq(env["AMQP_URI"])
        log_dir = Path(env["DATA_DIR"]) / "logs"
        stack = Stack(env, ROOT, log_dir)
        print(f"Starting Roster (logs in {log_dir}/) ...", flush=True)
        stack.start()
        stack.wait_ready()
        print(banner(stack, env, log_dir), flush=True)
        while True:
            time.sleep(1)
            for report in stack.supervise_once():
                print(report, file=sys.stderr, flush=True)
    except Stop as stop:
        print(f"\nReceived {stop}, stopping Roster ...", flush=True)
        code = 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        # a second Ctrl-C must not interrupt the clean-up
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        if stack is not None:
            stack.stop()
    if code == 0:
        print("Stopped.", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
