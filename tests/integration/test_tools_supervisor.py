"""The supervisor of `make run` on a real broker: a service killed with SIGKILL comes back and answers."""
import os
import signal
import time
from pathlib import Path

from nameko.rpc import rpc

from tools.stack import Stack, rpc_health_problem

ROOT = Path(__file__).resolve().parents[2]


class Sentinel:
    """The cheapest service the Stack can start and ask for its health."""

    name = "tools_sentinel"

    @rpc
    def health(self):
        return {"service": self.name, "status": "ok"}


def test_a_killed_service_is_restarted_with_a_report_and_answers_health_again(amqp_uri, tmp_path):
    stack = Stack({**os.environ, "AMQP_URI": amqp_uri, "DATA_DIR": str(tmp_path)}, ROOT, tmp_path / "logs",
                  services={"tools_sentinel": "tests.integration.test_tools_supervisor:Sentinel"})
    try:
        stack.start()
        stack.wait_ready(timeout=60)
        killed = stack.processes["tools_sentinel"][0]

        os.killpg(killed.popen.pid, signal.SIGKILL)
        killed.popen.wait(timeout=10)
        reports = []
        deadline = time.monotonic() + 30
        while not any("restarted" in report for report in reports) and time.monotonic() < deadline:
            reports += stack.supervise_once()
            time.sleep(0.2)
        stack.wait_ready(timeout=60)

        assert reports[0].startswith("tools_sentinel exited with code -9; restarting in 1 s (restart 1)")
        assert reports[1].startswith("tools_sentinel restarted (restart 1")
        assert stack.processes["tools_sentinel"][0].popen.pid != killed.popen.pid
        assert rpc_health_problem(amqp_uri, "tools_sentinel", timeout=10) is None
    finally:
        stack.stop()
