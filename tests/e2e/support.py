"""Helpers the end-to-end tests share: unique names, polling, and the status of a client error."""
import secrets
import time

import chartmogul
import pytest

POLL_SECONDS = 30


def unique(prefix: str = "ext") -> str:
    """Return a name no other test run uses: `prefix-` and ten hex digits."""
    return f"{prefix}-{secrets.token_hex(5)}"


def eventually(check, timeout: float = POLL_SECONDS, interval: float = 0.1):
    """Return check()'s first truthy value, polling until `timeout`; fail the test after that."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout:g}s (last value {value!r})")
        time.sleep(interval)


def status_of(error: chartmogul.APIError) -> int:
    """Return the HTTP status behind an APIError of the official client."""
    return error.__cause__.response.status_code
