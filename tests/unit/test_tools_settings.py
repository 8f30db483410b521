"""Every setting the code reads is documented in the README, passed by compose, and honoured by config.yaml."""
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CODE = ["roster", "gateway", "services", "tools"]
# Read only by the local tooling (make run, tests, tools/), which compose replaces with its own means.
TOOLING_ONLY = {"GATEWAY_PROCESSES", "SYNC_WORKERS", "GATEWAY_MAX_WORKERS"}  # compose: the gateway's MAX_WORKERS
SERVICE_NAMES = ["customers", "contacts", "billing_sync", "activities", "avatars"]
NOT_SETTINGS = {"PYTHONPATH"}  # tools/stack.py extends it for its children; Python's own

_READ = re.compile(r"""(?:environ|env)\.get\(\s*(f?)["']([^"']+)["']|environ\[["']([A-Z_]+)["']\]""")


def settings_read() -> set[str]:
    """Return the names of the environment variables the code and config.yaml read."""
    names = set()
    for folder in CODE:
        for path in (ROOT / folder).rglob("*.py"):
            for is_f, name, indexed in _READ.findall(path.read_text()):
                name = name or indexed
                if is_f:  # f"{service_name.upper()}_DATABASE_URL"
                    name = re.sub(r"\{[^}]*\}", "<SERVICE>", name)
                names.add(name)
    config = [line for line in (ROOT / "config.yaml").read_text().splitlines() if not line.lstrip().startswith("#")]
    names |= set(re.findall(r"\$\{([A-Z_]+)", "\n".join(config)))
    return names - NOT_SETTINGS


def settings_documented() -> set[str]:
    """Return the variables in the README's settings table."""
    section = (ROOT / "README.md").read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z_<>]+)`", section, re.MULTILINE))


def test_the_scan_finds_settings_in_code_and_in_config():
    read = settings_read()

    assert {"AMQP_URI", "<SERVICE>_DATABASE_URL", "GATEWAY_PORT", "MAX_WORKERS"} <= read


def test_every_setting_read_is_documented_and_every_documented_one_is_read():
    read, documented = settings_read(), settings_documented()

    assert read - documented == set(), "read but not in the README's settings table"
    assert documented - read == set(), "documented but read nowhere"


def test_compose_passes_every_setting_the_services_read():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    passed = set()
    for service in compose["services"].values():
        passed |= set(service.get("environment") or {})
    passed.add("DATA_DIR")  # set by the Dockerfile
    wanted = settings_read() - TOOLING_ONLY - {"<SERVICE>_DATABASE_URL"}
    wanted |= {f"{name.upper()}_DATABASE_URL" for name in SERVICE_NAMES}

    assert wanted - passed == set()


@pytest.fixture()
def load_config(monkeypatch):
    """load_config(**env) -> config.yaml as `nameko run` reads it with that environment."""
    from nameko.cli.main import setup_yaml_parser

    setup_yaml_parser()

    def load(**env):
        for name in ("GATEWAY_HOST", "GATEWAY_PORT", "LOG_LEVEL", "LOG_FORMAT"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return yaml.safe_load((ROOT / "config.yaml").read_text())

    return load


def test_config_binds_the_gateway_to_gateway_host_and_port(load_config):
    assert load_config()["WEB_SERVER_ADDRESS"] == "0.0.0.0:8000"
    assert load_config(GATEWAY_PORT="8123")["WEB_SERVER_ADDRESS"] == "0.0.0.0:8123"
    assert load_config(GATEWAY_HOST="127.0.0.1", GATEWAY_PORT="80")["WEB_SERVER_ADDRESS"] == "127.0.0.1:80"


def test_config_logging_puts_every_filter_on_the_handler(load_config):
    logging_config = load_config(LOG_LEVEL="WARNING")["LOGGING"]

    assert logging_config["root"]["level"] == "WARNING"
    assert logging_config["handlers"]["stderr"]["filters"] == ["expected_errors", "access_log", "credentials",
                                                                "request_id"]
    assert {name: spec["()"] for name, spec in logging_config["filters"].items()} == {
        "expected_errors": "roster.logs.ExpectedErrorFilter", "access_log": "roster.logs.AccessLogFilter",
        "credentials": "roster.logs.CredentialsFilter", "request_id": "roster.logs.RequestIdFilter"}


def test_config_log_format_picks_the_formatter(load_config):
    assert load_config()["LOGGING"]["handlers"]["stderr"]["formatter"] == "text"
    logging_config = load_config(LOG_FORMAT="json")["LOGGING"]
    assert logging_config["handlers"]["stderr"]["formatter"] == "json"
    assert logging_config["formatters"]["json"]["()"] == "roster.logs.JsonFormatter"
