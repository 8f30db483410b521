"""The supervisor of `make run`: restart with backoff, on a fake clock, with a real child process."""
import sys

import pytest

from tools.stack import Stack, restart_delay, restarts_so_far


@pytest.mark.parametrize("restart, delay", [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (40, 30)])
def test_restart_delay_doubles_from_one_second_up_to_thirty(restart, delay):
    assert restart_delay(restart) == delay


def test_restarts_in_a_row_start_again_after_a_minute_up():
    assert restarts_so_far(4, uptime=59.9) == 4
    assert restarts_so_far(4, uptime=60) == 0


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class CrashingStack(Stack):
    """A Stack whose only service prints a line and exits with code 3 (no broker, no nameko)."""

    def command(self, name):
        return [sys.executable, "-c", "import sys; print('cannot connect to the database'); sys.exit(3)"]


@pytest.fixture()
def stack(tmp_path):
    clock = Clock()
    crashing = CrashingStack({}, tmp_path, tmp_path / "logs", services={"customers": "unused"}, clock=clock)
    crashing.start()
    yield crashing, clock
    crashing.stop(timeout=5)


def wait_for_exit(stack):
    for proc in stack.processes["customers"]:
        proc.popen.wait(timeout=30)


def test_a_dead_process_is_reported_with_its_log_and_restarted_after_its_delay(stack):
    stack, clock = stack
    first = stack.processes["customers"][0]
    wait_for_exit(stack)

    reports = stack.supervise_once()

    assert len(reports) == 1
    assert reports[0].startswith("customers exited with code 3; restarting in 1 s (restart 1)")
    assert "cannot connect to the database" in reports[0]
    assert stack.supervise_once() == []  # not before its time
    clock.now += 1
    assert stack.supervise_once() == [f"customers restarted (restart 1, pid {stack.processes['customers'][0].popen.pid})"]
    assert stack.processes["customers"][0] is not first


def test_the_report_of_a_replacement_shows_only_its_own_log(stack):
    stack, clock = stack
    wait_for_exit(stack)
    stack.supervise_once()
    clock.now += 1
    stack.supervise_once()
    wait_for_exit(stack)

    report = stack.supervise_once()[0]

    assert (stack.log_dir / "customers.log").read_text().count("cannot connect to the database") == 2
    assert report.count("cannot connect to the database") == 1


def test_restarts_in_a_row_wait_longer_each_time(stack):
    stack, clock = stack
    announced = []
    for _ in range(3):
        wait_for_exit(stack)
        report = stack.supervise_once()[0]
        announced.append(report.split("; ")[1])
        clock.now += 30  # past any delay; the replacement then dies at once (uptime 0)
        stack.supervise_once()

    assert announced == ["restarting in 1 s (restart 1)", "restarting in 2 s (restart 2)",
                         "restarting in 4 s (restart 3)"]


def test_a_process_that_stayed_up_a_minute_starts_again_from_one_second(stack):
    stack, clock = stack
    wait_for_exit(stack)
    stack.supervise_once()
    clock.now += 1
    stack.supervise_once()  # restart 1
    wait_for_exit(stack)
    clock.now += 61  # it "stayed up" a minute before dying

    report = stack.supervise_once()[0]

    assert "restarting in 1 s (restart 1)" in report


def test_a_stopped_service_is_not_restarted(stack):
    stack, clock = stack
    wait_for_exit(stack)
    stack.stop_service("customers")
    clock.now += 100

    assert stack.supervise_once() == []
    assert stack.processes["customers"] == []


def test_each_service_gets_its_own_metrics_port_and_a_shared_folder_when_it_has_several_processes(tmp_path):
    stack = Stack({"METRICS_PORT": "9100", "SYNC_WORKERS": "3", "DATA_DIR": str(tmp_path),
                   "PROMETHEUS_MULTIPROC_DIR": "/elsewhere"}, tmp_path, tmp_path / "logs")

    assert [stack.metrics_port(name) for name in ("customers", "contacts", "billing_sync", "activities",
                                                   "avatars", "sync_worker", "gateway")] == [
        9101, 9102, 9103, 9104, 9105, 9106, None]
    assert stack.service_env("customers")["METRICS_PORT"] == "9101"
    assert "PROMETHEUS_MULTIPROC_DIR" not in stack.service_env("customers")
    assert "PROMETHEUS_MULTIPROC_DIR" not in stack.service_env("billing_sync")  # one process; its workers are sync_worker
    assert stack.service_env("sync_worker")["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "metrics" / "sync_worker")
    assert "METRICS_PORT" in stack.service_env("gateway")  # unused there: its /metrics is on GATEWAY_PORT
    assert Stack({}, tmp_path, tmp_path / "logs").metrics_port("customers") is None


def test_make_run_generates_a_development_key_only_without_configured_keys(tmp_path, monkeypatch):
    from tools import run

    for name in ("API_KEYS", "API_KEYS_FILE", "METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    generated = run.settings()
    assert generated["API_KEYS"].endswith(":owner") and generated["METRICS_PORT"] == "9100"
    assert (tmp_path / "api_key").read_text().strip() == generated["API_KEYS"].rpartition(":")[0]

    monkeypatch.setenv("API_KEYS_FILE", str(tmp_path / "api_keys"))
    assert not run.settings().get("API_KEYS")


def test_sync_workers_are_their_own_process_type_two_by_default(tmp_path):
    from tools.stack import SERVICES, Stack

    assert SERVICES["sync_worker"] == "services.billing_sync.worker"
    default = Stack({}, tmp_path, tmp_path / "logs")
    assert default.process_count("sync_worker") == 2 and default.process_count("billing_sync") == 1
    assert [path.name for path in default.log_paths("sync_worker")] == ["sync_worker-1.log", "sync_worker-2.log"]
    assert Stack({"SYNC_WORKERS": "4"}, tmp_path, tmp_path / "logs").process_count("sync_worker") == 4
    assert Stack({"SYNC_WORKERS": "0"}, tmp_path, tmp_path / "logs").log_paths("sync_worker") == []


def test_a_service_started_later_with_several_processes_gets_a_fresh_metrics_folder(tmp_path, monkeypatch):
    stack = Stack({"SYNC_WORKERS": "0", "DATA_DIR": str(tmp_path)}, tmp_path, tmp_path / "logs")
    monkeypatch.setattr(stack, "_spawn", lambda name, log_path, log_mode, restarts=0: log_path)
    monkeypatch.setattr(stack, "_wait_consuming", lambda name, timeout: None)
    folder = stack.multiproc_dir("sync_worker")
    assert not folder.exists()

    stack.env["SYNC_WORKERS"] = "2"  # as ops (or a benchmark) add workers to a running platform
    stack.start_service("sync_worker")
    assert folder.is_dir() and len(stack.processes["sync_worker"]) == 2
    (folder / "counter_123.db").write_bytes(b"old")

    stack.processes["sync_worker"] = []  # (the fakes above are not processes to stop)
    stack.start_service("sync_worker")
    assert list(folder.iterdir()) == []  # a restart of them all does not add up the old counters


def test_the_gateway_has_workers_of_its_own_count_and_the_services_keep_max_workers(tmp_path):
    default = Stack({"MAX_WORKERS": "12"}, tmp_path, tmp_path / "logs")
    chosen = Stack({"MAX_WORKERS": "12", "GATEWAY_MAX_WORKERS": "40"}, tmp_path, tmp_path / "logs")

    assert default.service_env("gateway")["MAX_WORKERS"] == "64"
    assert chosen.service_env("gateway")["MAX_WORKERS"] == "40"
    assert default.service_env("customers")["MAX_WORKERS"] == chosen.service_env("customers")["MAX_WORKERS"] == "12"
