"""Opaque keyset cursors and page sizes shared by every list endpoint."""
import base64
import binascii
import json

from roster.errors import ValidationFailed

MAX_PER_PAGE = 200


def encode_cursor(position: dict) -> str:
    """Return an opaque cursor that resumes a listing after `position`."""
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict:
    """Return the position a cursor stands for; {} for no cursor; 422 for a forged one."""
    if not cursor:
        return {}
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed("cursor: is not a cursor this API returned", param="cursor")
    if not isinstance(position, dict):
        raise ValidationFailed("cursor: is not a cursor this API returned", param="cursor")
    return position


def page_size(per_page) -> int:
    """Return the page size asked for, defaulting to and capped at MAX_PER_PAGE."""
    if per_page in (None, ""):
        return MAX_PER_PAGE
    try:
        size = int(per_page)
    except (TypeError, ValueError):
        raise ValidationFailed("per_page: must be a whole number", param="per_page")
    if size < 1:
        raise ValidationFailed("per_page: must be at least 1", param="per_page")
    return min(size, MAX_PER_PAGE)


def keyset_page(rows: list, size: int, key) -> tuple[list, bool, str | None]:
    """Split `size + 1` fetched rows into (page, has_more, cursor of the last row)."""
    has_more = len(rows) > size
    page = rows[:size]
    cursor = encode_cursor(key(page[-1])) if has_more and page else None
    return page, has_more, cursor
