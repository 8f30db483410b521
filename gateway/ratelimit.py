"""Per-API-key rate limit: a token bucket per key, answering 429 with Retry-After when empty.

RATE_LIMIT_PER_SECOND (0 or unset: no limit, the default) refills each key's bucket;
RATE_LIMIT_BURST (default: one second's worth, at least 1) is its size. The buckets live in
each gateway process: with GATEWAY_PROCESSES=N a key may get up to N times the rate across the
host (a client's keep-alive connection stays with one process, so one client sees the limit
as configured). Keys are named by their digest prefix, never the key itself.
"""
from __future__ import annotations

import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable

from nameko.extensions import SharedExtension

from roster.errors import RosterError

MAX_BUCKETS = 10_000  # least recently used buckets beyond this are dropped (a full bucket is the default)


class TooManyRequests(RosterError):
    status = 429

    def __init__(self, retry_after: float):
        seconds = max(1, math.ceil(retry_after))
        super().__init__(f"Too many requests for this API key; retry after {seconds} s")
        self.retry_after = seconds


class TokenBucket:
    """`rate` tokens per second up to `burst`; a request takes one."""

    __slots__ = ("rate", "burst", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.updated = burst, now

    def take(self, now: float) -> float:
        """Take a token; return 0.0 when granted, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    """One TokenBucket per key name, the least recently used dropped beyond `max_buckets`."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic,
                 max_buckets: int = MAX_BUCKETS):
        if rate < 0:
            raise ValueError("RATE_LIMIT_PER_SECOND must be 0 (off) or more")
        self.rate = rate
        self.burst = max(1.0, burst if burst else rate)
        self.clock = clock
        self.max_buckets = max_buckets
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def check(self, name: str) -> None:
        """Take a token from `name`'s bucket; raise TooManyRequests (with retry_after) when it is empty."""
        if not self.enabled:
            return
        now = self.clock()
        bucket = self.buckets.get(name)
        if bucket is None:
            bucket = self.buckets[name] = TokenBucket(self.rate, self.burst, now)
            if len(self.buckets) > self.max_buckets:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(name)
        wait = bucket.take(now)
        if wait > 0:
            raise TooManyRequests(wait)


def limiter_from_environment() -> RateLimiter:
    rate = float(os.environ.get("RATE_LIMIT_PER_SECOND") or 0)
    burst = float(os.environ.get("RATE_LIMIT_BURST") or 0) or None
    return RateLimiter(rate, burst)


class KeyRateLimits(SharedExtension):
    """The gateway process's rate limiter (one per process, shared by every route)."""

    def __init__(self):
        self.limiter = RateLimiter(0)

    def setup(self):
        self.limiter = limiter_from_environment()

    @property
    def enabled(self) -> bool:
        return self.limiter.enabled

    def check(self, key_name: str) -> None:
        self.limiter.check(key_name)
