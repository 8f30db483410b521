"""The one way timestamps come in and go out.

In: ISO-8601 with `T` or a space, with or without a zone (`Z`, `+05:30`, `-04:00`), or a
date alone (what the official client and its users send); a value without a zone is UTC.
Every parsed value is normalised to UTC, so storage, events and answers agree.
Out: `render()` gives ISO-8601 in UTC with a `Z` suffix, microseconds only when present.
"""
from datetime import date, datetime, timedelta, timezone

from roster.errors import invalid

# Clock skew we tolerate before calling a value "in the future".
FUTURE_TOLERANCE = timedelta(minutes=5)


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def parse(value, field: str, *, not_in_future: bool = False) -> datetime | None:
    """Return `value` as an aware UTC datetime; None for None or ""; a 422 naming `field` otherwise.

    Accepts datetimes and dates too (service-layer callers), so one rule covers every caller.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        parsed = _from_text(value, field)
    else:
        raise invalid(field, "must be an ISO-8601 date or date-time string")
    try:
        parsed = parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 lies before year 1 in UTC
        raise invalid(field, f"{value!r} is outside the years 1 to 9999 in UTC")
    if not_in_future and parsed > utcnow() + FUTURE_TOLERANCE:
        raise invalid(field, "must not be in the future")
    return parsed


def _from_text(value: str, field: str) -> datetime:
    text = value.strip()
    if "\x00" in text or len(text) > 64:
        raise invalid(field, "is not an ISO-8601 date or date-time")
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise invalid(field, f"{value!r} is not an ISO-8601 date or date-time")


def parse_date(value, field: str) -> date | None:
    """Return a calendar date from `YYYY-MM-DD` (or a date-time, whose UTC date is taken)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    parsed = parse(value, field)
    return parsed.date() if parsed else None


def as_utc(value: datetime | None) -> datetime | None:
    """Return an aware UTC datetime; a naive one (SQLite hands those back) is UTC by construction."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def render(value: datetime | None) -> str | None:
    """Return the one rendering of a timestamp: ISO-8601 UTC ending in `Z`; None stays None."""
    if value is None:
        return None
    return as_utc(value).replace(tzinfo=None).isoformat() + "Z"


def render_date(value: date | None) -> str | None:
    """Return a calendar date as `YYYY-MM-DD`."""
    return None if value is None else value.isoformat()
