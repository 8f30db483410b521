"""Field types shared by the gateway's HTTP schemas."""
from datetime import datetime, timezone

from marshmallow import EXCLUDE, Schema, ValidationError, fields


class FlexibleDateTime(fields.Field):
    """Accepts ISO-8601 with `T` or a space, with or without a zone, or a date alone
    (what the official client and its users send); loads to an ISO string in UTC."""

    def __init__(self, not_in_future: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.not_in_future = not_in_future
        self.metadata.setdefault("format", "date-time")

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError("must be an ISO-8601 date or date-time string")
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValidationError(f"{value!r} is not an ISO-8601 date or date-time")
        if self.not_in_future and parsed > datetime.now(timezone.utc):
            raise ValidationError("must not be in the future")
        return parsed.isoformat()

    def _serialize(self, value, attr, obj, **kwargs):
        return value


def parse_datetime(value: str) -> datetime | None:
    """Return an aware datetime (UTC when no zone is given), or None when it is not ISO-8601."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class StrictString(fields.String):
    """A string that refuses numbers and booleans instead of silently accepting them."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError("must be a string")
        return super()._deserialize(value, attr, data, **kwargs)


class Lenient(Schema):
    """Request schemas ignore keys they do not know (the client echoes read-only ones)."""

    class Meta:
        unknown = EXCLUDE


class PerPage(fields.Integer):
    """A page size. The services refuse one outside 1..MAX_PER_PAGE with a 422 naming per_page
    (roster.pagination.page_size), so every list route answers the same; the document says the range."""

    def __init__(self, **kwargs):
        from roster.pagination import MAX_PER_PAGE

        kwargs.setdefault("metadata", {}).update({"minimum": 1, "maximum": MAX_PER_PAGE})
        super().__init__(**kwargs)
