"""Pure parts of issue 14's security and operations: key digests and the keys file, the constant-time
key check, the rate limiter, credential redaction, request ids and the JSON log format."""
import base64
import hmac
import json
import logging
import sys

import pytest

from gateway import auth
from gateway.ratelimit import RateLimiter, TooManyRequests
from roster import logs, tracing
from tools import keys as keys_tool


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


# ---- keys file ---------------------------------------------------------------------------------

def test_a_keys_file_line_holds_the_digest_never_the_key():
    line = auth.keys_file_line("secret-key", "staff")

    assert "secret-key" not in line
    assert auth.parse_keys_file(line + "\n# comment\n\n") == [(auth.digest("secret-key"), "staff")]


@pytest.mark.parametrize("line", ["md5:00:staff", "sha256:abc:staff", "sha256:" + "0" * 64 + ":root",
                                  "sha256:" + "0" * 64, "sha256:" + "g" * 64 + ":staff"])
def test_a_malformed_keys_file_line_is_refused_naming_its_line(line):
    with pytest.raises(ValueError, match="line 2"):
        auth.parse_keys_file("# keys\n" + line)


def test_match_role_finds_the_key_and_nothing_else():
    entries = [(auth.digest("a-key"), "read_only"), (auth.digest("b-key"), "owner")]

    assert auth.match_role(entries, "b-key") == "owner"
    assert auth.match_role(entries, "a-key") == "read_only"
    assert auth.match_role(entries, "b-ke") is None
    assert auth.match_role(entries, None) is None
    assert auth.match_role(entries, "") is None


def test_match_role_compares_every_key_in_constant_time_whichever_matches(monkeypatch):
    compared, real = [], hmac.compare_digest

    def spy(a, b):
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    entries = [(auth.digest(f"key-{n}"), "staff") for n in range(5)]
    for presented in ("key-0", "key-4", "nope", None):
        compared.clear()
        auth.match_role(entries, presented)
        assert compared == [hashed for hashed, _ in entries]  # no early exit, no skipped entry


def test_api_keys_read_both_sources_and_the_file_again_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "keys"
    path.write_text(auth.keys_file_line("filed", "staff") + "\n")
    monkeypatch.setenv("API_KEYS", "plain:owner")
    monkeypatch.setenv("API_KEYS_FILE", str(path))
    monkeypatch.setattr(auth, "KEYS_FILE_CHECK_SECONDS", 0)
    keys = auth.ApiKeys()
    keys.setup()

    assert keys.role_for(basic("plain")) == "owner"
    assert keys.role_for(basic("filed")) == "staff"
    assert keys.role_for(basic("later")) is None
    path.write_text(path.read_text() + auth.keys_file_line("later", "read_only") + "\n# longer now\n")
    assert keys.role_for(basic("later")) == "read_only"
    path.write_text("garbage\n")  # a broken edit keeps the keys read before
    assert keys.role_for(basic("later")) == "read_only"


def test_a_missing_keys_file_fails_at_start(tmp_path, monkeypatch):
    monkeypatch.setenv("API_KEYS_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="absent"):
        auth.ApiKeys().setup()


def test_the_keys_tool_adds_lists_and_removes(tmp_path, capsys):
    path = tmp_path / "keys"
    assert keys_tool.main(["--file", str(path), "add", "--role", "admin"]) == 0
    key = capsys.readouterr().out.strip()

    assert key.startswith("rk_") and len(key) > 30
    assert key not in path.read_text()
    assert auth.parse_keys_file(path.read_text()) == [(auth.digest(key), "admin")]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    prefix = auth.digest(key).hex()[:12]
    assert keys_tool.main(["--file", str(path), "list"]) == 0
    assert prefix in capsys.readouterr().out
    assert keys_tool.main(["--file", str(path), "remove", prefix]) == 0
    assert auth.parse_keys_file(path.read_text()) == []


# ---- rate limit ----------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_bucket_allows_the_burst_then_the_rate_and_says_when_to_retry():
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    for _ in range(3):
        limiter.check("k")
    with pytest.raises(TooManyRequests) as refused:
        limiter.check("k")
    assert refused.value.status == 429 and refused.value.retry_after == 1

    clock.now += 0.5  # one token back at 2 per second
    limiter.check("k")
    with pytest.raises(TooManyRequests):
        limiter.check("k")
    limiter.check("other")  # each key has its own bucket


def test_retry_after_rounds_up_to_whole_seconds():
    clock = Clock()
    limiter = RateLimiter(rate=0.25, burst=1, clock=clock)
    limiter.check("k")
    with pytest.raises(TooManyRequests) as refused:
        limiter.check("k")
    assert refused.value.retry_after == 4


def test_a_rate_of_zero_is_no_limit_and_buckets_are_bounded():
    off = RateLimiter(rate=0)
    for _ in range(1000):
        off.check("k")
    limiter = RateLimiter(rate=1, clock=Clock(), max_buckets=3)
    for name in "abcde":
        limiter.check(name)
    assert list(limiter.buckets) == ["c", "d", "e"]


# ---- logs ----------------------------------------------------------------------------------------

def record(message, *args, name="nameko.containers", exc_info=None):
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, args, exc_info)


def test_credentials_are_redacted_from_every_logger_message_args_and_traceback():
    try:
        raise RuntimeError("Authorization: Basic c2VjcmV0Og== for amqp://guest:hunter2@broker/")
    except RuntimeError:
        exc_info = sys.exc_info()
    item = record("headers %s", {"Authorization": "Basic c2VjcmV0Og=="}, exc_info=exc_info)

    assert logs.CredentialsFilter().filter(item)
    text = logging.Formatter().format(item)
    assert "c2VjcmV0Og" not in text and "hunter2" not in text
    assert text.count(logs.REDACTED) >= 3


def test_request_ids_are_accepted_when_sane_and_replaced_otherwise():
    assert tracing.accept("abc-123_x.y") == "abc-123_x.y"
    for bad in (None, "", "a b", "x" * 200, "line\nbreak", "ünïcode"):
        made = tracing.accept(bad)
        assert made != bad and len(made) == 32


def test_the_request_id_filter_and_the_json_format():
    tracing.bind("rid-1")
    try:
        item = record("hello %s", "world")
        logs.RequestIdFilter().filter(item)
    finally:
        tracing.bind(None)
    entry = json.loads(logs.JsonFormatter().format(item))

    assert entry["message"] == "hello world" and entry["request_id"] == "rid-1" and entry["level"] == "ERROR"
    assert entry["time"].endswith("Z")
    plain = record("x")
    logs.RequestIdFilter().filter(plain)
    assert plain.request_id == "-" and plain.request == ""


def test_events_carry_the_request_id_of_the_work_that_recorded_them():
    from roster.events import envelope

    assert "request_id" not in envelope(a=1)
    tracing.bind("rid-2")
    try:
        assert envelope(a=1)["request_id"] == "rid-2"
    finally:
        tracing.bind(None)


# ---- health ---------------------------------------------------------------------------------------

def test_a_service_reports_its_database_failing_by_error_type_only():
    from contextlib import contextmanager

    from sqlalchemy.exc import OperationalError

    from roster.dependencies import service_health

    class BrokenUow:
        @contextmanager
        def read(self):
            raise OperationalError("SELECT secret FROM customers", {}, Exception("password=hunter2"))
            yield

    report = service_health("customers", BrokenUow())

    assert report == {"service": "customers", "status": "failing", "database": "unreachable (OperationalError)"}
