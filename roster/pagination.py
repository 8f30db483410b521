"""Opaque keyset cursors and page sizes shared by every list endpoint."""
import base64
import binascii
import json

import orjson

from roster.errors import BadRequest, ValidationFailed

MAX_PER_PAGE = 200
MAX_CURSOR_LENGTH = 2000
INT64_MAX = 2**63 - 1
# Every integer a cursor carries is a row id (or, in billing's subscription list, an offset into a
# list), and every id column behind a cursor is a 32-bit signed `Integer` (services/*/models.py,
# roster/uow.py). PostgreSQL refuses to compare an `integer` with a literal beyond its range
# ("integer out of range", a 500) where SQLite just answers, so a number no column can hold is a
# cursor this API never returned: a 400 like every other forged cursor.
CURSOR_INT_MAX = 2**31 - 1


def encode_cursor(position: dict) -> str:
    """Return an opaque cursor that resumes a listing after `position`."""
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, **fields: type) -> dict:
    """Return the position a cursor stands for, each of `fields` checked to have its type.

    `decode_cursor(c, after_id=int)` → `{"after_id": 42}`; {} for no cursor. A cursor this
    API did not hand out (not base64 JSON, other keys, wrong types, huge numbers) is a 400.
    """
    if not cursor:
        return {}
    try:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError("too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()), parse_constant=_refuse)
    except (ValueError, binascii.Error, UnicodeDecodeError, TypeError):
        raise _forged()
    if not isinstance(position, dict) or set(position) != set(fields):
        raise _forged()
    for name, kind in fields.items():
        value = position[name]
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= CURSOR_INT_MAX:
                raise _forged()
        elif not isinstance(value, kind) or (isinstance(value, str) and len(value) > 500):
            raise _forged()
    return position


def _refuse(constant):
    raise ValueError(f"{constant} is not a cursor value")


def _forged() -> BadRequest:
    return BadRequest("cursor: is not a cursor this API returned", param="cursor")


def page_size(per_page) -> int:
    """Return the page size asked for: default MAX_PER_PAGE; 1 to MAX_PER_PAGE, else a 422."""
    if per_page in (None, ""):
        return MAX_PER_PAGE
    if isinstance(per_page, bool):
        raise ValidationFailed("per_page: must be a whole number", param="per_page")
    try:
        size = int(per_page)
    except (TypeError, ValueError, OverflowError):
        raise ValidationFailed("per_page: must be a whole number", param="per_page")
    if not 1 <= size <= MAX_PER_PAGE:
        raise ValidationFailed(f"per_page: must be between 1 and {MAX_PER_PAGE}", param="per_page")
    return size


# A list page stops growing once its entries take this many bytes of JSON (has_more stays true),
# so no list reply comes near the bus's message limit whatever the records hold: the worst page is
# PAGE_BYTES plus one record (each service bounds its records' size), against
# roster.serialization.MAX_MESSAGE_BYTES (32 MiB) and RabbitMQ's 128 MiB frames.
PAGE_BYTES = 4 * 1024 * 1024


def json_bytes(value) -> int:
    """Return about how many bytes `value` takes as JSON on the bus (a Decimal as its text)."""
    return len(orjson.dumps(value, default=str))


def within_budget(rows: list, size: int, measure=json_bytes) -> tuple[list, int]:
    """Return (rows, size) cut so the first `size` rows' `measure(row)` bytes stay within
    PAGE_BYTES (at least one row); pass them on to `keyset_page`, which then sees there is more."""
    limit, total = PAGE_BYTES, 0
    for index, row in enumerate(rows[:size]):
        total += measure(row)
        if total > limit and index > 0:
            return rows[:index + 1], index  # rows[index] tells keyset_page there is more
    return rows, size


def keyset_page(rows: list, size: int, key) -> tuple[list, bool, str | None]:
    """Split `size + 1` fetched rows into (page, has_more, cursor of the last row)."""
    has_more = len(rows) > size
    page = rows[:size]
    cursor = encode_cursor(key(page[-1])) if has_more and page else None
    return page, has_more, cursor
