"""Sync job rules as plain functions: states, who may run a job, progress, errors, stats. No I/O.

A job is `pending` when queued, `running` once a worker claimed it, then `succeeded` or
`failed` (with `reason`), or `cancelled` when asked to stop before it ended. Objects the job could not import are counted in `failed` and listed
in `errors` (the first MAX_ERRORS of them), without failing the job: a job fails only when it
could not do its work at all (the billing system unreachable, the customer itself unusable).
"""
from dataclasses import dataclass
from datetime import datetime

SOURCE_SYNC, CUSTOMER_RESYNC, CSV_IMPORT = "source_sync", "customer_resync", "csv_import"
KINDS = (SOURCE_SYNC, CUSTOMER_RESYNC, CSV_IMPORT)
PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED = "pending", "running", "succeeded", "failed", "cancelled"
FINISHED = (SUCCEEDED, FAILED, CANCELLED)
CANCELLED_REASON = "cancelled on request"
MAX_ERRORS = 100  # per job: enough to act on, small enough for one answer
MAX_MESSAGE = 500
CONNECTOR_SYSTEMS = frozenset({"Stripe"})

# What a worker does with a delivered job message, by the job's state.
RUN, SKIP = "run", "skip"


def claim_decision(state: str, *, redelivered: bool) -> str:
    """Return RUN when a worker handed this job's message should run it, else SKIP.

    A pending job runs. A running job runs again only on a redelivery: RabbitMQ redelivers
    a message when the worker holding it died, so the job is resumed (idempotently); a
    running job's message that is not a redelivery is a duplicate while another worker holds
    it. A finished job is never run again.
    """
    if state == PENDING:
        return RUN
    if state == RUNNING and redelivered:
        return RUN
    return SKIP


def storable(value) -> str:
    """Return `value` as text a database and the bus take: a NUL (which a billing system's ids
    may hold) is written as `\\x00`. A reason or error that could not be stored left its job running."""
    return str(value).replace("\x00", "\\x00")


def error_entry(object_id, field, message) -> dict:
    """Return one entry of a job's error list, its message cut to MAX_MESSAGE characters."""
    text = storable(message)
    return {"object_id": None if object_id is None else storable(object_id)[:500],
            "field": None if field is None else storable(field)[:200],
            "message": text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"}


def with_errors(existing: list[dict] | None, new: list[dict], limit: int = MAX_ERRORS) -> list[dict]:
    """Return the error list with `new` appended, keeping the first `limit` entries."""
    errors = list(existing or [])
    room = max(0, limit - len(errors))
    return errors + list(new[:room])


def finished_state(*, failed_reason: str | None) -> str:
    """Return the state a job ends in: failed when it could not do its work, else succeeded."""
    return FAILED if failed_reason else SUCCEEDED


def parent_done(*, listed: bool, total: int | None, processed: int, failed: int) -> bool:
    """Return True when a source sync has queued all its children and every one has finished."""
    return listed and total is not None and processed + failed >= total


def parent_outcome(*, total: int, failed: int) -> str | None:
    """Return why a finished source sync failed (None: it succeeded): every customer failed."""
    if total > 0 and failed >= total:
        return f"all {total} customers failed to sync; see errors"
    return None


@dataclass(frozen=True)
class Progress:
    """Where a job stands, for its log lines."""

    processed: int
    failed: int
    total: int | None
    elapsed: float  # seconds since the job started

    @property
    def rate(self) -> float:
        done = self.processed + self.failed
        return done / self.elapsed if self.elapsed > 0 else 0.0

    def line(self, label: str) -> str:
        """Return e.g. `source_sync 1a2b: 120/400 processed, 2 failed, 35.2/s`."""
        total = "?" if self.total is None else str(self.total)
        return (f"{label}: {self.processed + self.failed}/{total} done ({self.processed} processed, "
                f"{self.failed} failed), {self.rate:.1f}/s")


def should_log_progress(done: int, *, every: int = 100) -> bool:
    """Return True for the items after which a progress line is logged."""
    return done > 0 and done % every == 0


def stats(rows: list[tuple[str, int, datetime | None]], now: datetime) -> dict:
    """Return the backlog `{pending, running, succeeded, failed, cancelled, oldest_pending_age_seconds}`.

    `rows` are (state, count, oldest created_at of that state) per state.
    """
    counts = {PENDING: 0, RUNNING: 0, SUCCEEDED: 0, FAILED: 0, CANCELLED: 0}
    oldest = None
    for state, count, created in rows:
        counts[state] = counts.get(state, 0) + int(count)
        if state == PENDING and created is not None:
            oldest = created if oldest is None else min(oldest, created)
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return {**counts, "oldest_pending_age_seconds": round(age, 3)}


def processing_status(rows: list[tuple[str, int, int, int | None]]) -> dict:
    """Return a data source's `{processed, pending, failed}` from its work jobs (not parents).

    `rows` are (state, processed, failed, total) per job: processed and failed objects are
    summed; pending counts the objects of unfinished jobs not done yet (at least one per job).
    """
    processed = failed = pending = 0
    for state, done, bad, total in rows:
        processed += done
        failed += bad
        if state not in FINISHED:
            pending += max(1, (total or 0) - done - bad)
    return {"processed": processed, "pending": pending, "failed": failed}
