"""A circuit breaker for calls to a remote source that can be down.

Why: a source that is down or black-holed costs every call its connect or read timeout, so every
event that asks it waits those seconds and the backlog grows behind it. With a breaker, only
the first `failures` calls in a row pay that price. Then the circuit opens, and for `cool_down`
seconds calls are refused at once with `CircuitOpen`, without asking the source. After the
cool-down one trial call goes through (half-open). If it succeeds the circuit closes; if it
fails the circuit opens for another cool-down. Calls made while the trial is in flight are
refused too, so a slow source is never asked twice at once.

Only the `counted` exceptions are failures: an outage, not an answer such as "no image" or a
caller's own bad argument. Any other exception passes through, and the call counts as
neither a failure nor a success.

State lives in the process. Green threads switch only at I/O, and the state is changed between
such points, so no lock is needed. Each process learns of an outage on its own, after its own
`failures` calls.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from roster.metrics import CIRCUIT_OPENED, CIRCUIT_REFUSED

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitOpen(Exception):
    """The call was refused without asking the source: its circuit is open."""

    def __init__(self, name: str, retry_in: float):
        super().__init__(f"{name} is not asked for {retry_in:.1f} s more: it failed repeatedly")
        self.name = name
        self.retry_in = retry_in


class CircuitBreaker:
    """Guards calls to one remote source (see the module docstring)."""

    def __init__(self, name: str, *, failures: int = 5, cool_down: float = 30.0,
                 counted: tuple[type[BaseException], ...] = (Exception,),
                 clock: Callable[[], float] = time.monotonic):
        if failures < 1:
            raise ValueError("failures: must be at least 1")
        if cool_down <= 0:
            raise ValueError("cool_down: must be positive seconds")
        self.name = name
        self.failures = failures
        self.cool_down = cool_down
        self.counted = counted
        self.clock = clock
        self._failed_in_a_row = 0
        self._open_until: float | None = None  # set while open or half-open
        self._trial_running = False

    @property
    def state(self) -> str:
        if self._open_until is None:
            return CLOSED
        return OPEN if self.clock() < self._open_until or self._trial_running else HALF_OPEN

    def call(self, fn: Callable, *args, **kwargs):
        """Return fn(*args, **kwargs), or raise CircuitOpen without calling it while the circuit is open."""
        trial = self._admit()
        try:
            result = fn(*args, **kwargs)
        except self.counted:
            self._failed(trial)
            raise
        except BaseException:
            if trial:  # not an outage, but not a success either: the next call is the trial
                self._trial_running = False
            raise
        self._succeeded()
        return result

    def _admit(self) -> bool:
        """Return whether this call is the half-open trial; raise CircuitOpen if it may not run."""
        if self._open_until is None:
            return False
        now = self.clock()
        if now < self._open_until or self._trial_running:
            CIRCUIT_REFUSED.labels(self.name).inc()
            raise CircuitOpen(self.name, max(self._open_until - now, 0.0))
        self._trial_running = True
        return True

    def _failed(self, trial: bool) -> None:
        self._trial_running = False
        self._failed_in_a_row += 1
        if trial or (self._open_until is None and self._failed_in_a_row >= self.failures):
            self._open_until = self.clock() + self.cool_down
            CIRCUIT_OPENED.labels(self.name).inc()
            log.warning("%s failed %d times in a row: not asked for %g s", self.name, self._failed_in_a_row,
                        self.cool_down)

    def _succeeded(self) -> None:
        if self._open_until is not None:
            log.info("%s answers again after %d failures in a row", self.name, self._failed_in_a_row)
        self._failed_in_a_row = 0
        self._open_until = None
        self._trial_running = False
