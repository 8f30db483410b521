"""Error types shared across the bus.

Each is registered as a nameko remote error, so an RPC caller gets the same type
back (with its field name) instead of a generic RemoteError. The gateway maps each
type to one HTTP status in one table.
"""
from nameko.exceptions import deserialize_to_instance


class RosterError(Exception):
    """A failure to report to the caller: a message and, if one field is to blame, its name."""

    status = 500

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message, param)
        self.message = message
        self.param = param

    def __str__(self):
        return self.message


@deserialize_to_instance
class BadRequest(RosterError):
    status = 400


@deserialize_to_instance
class Unauthorized(RosterError):
    status = 401


@deserialize_to_instance
class Forbidden(RosterError):
    status = 403


@deserialize_to_instance
class NotFound(RosterError):
    status = 404


@deserialize_to_instance
class ValidationFailed(RosterError):
    status = 422


@deserialize_to_instance
class ServiceUnavailable(RosterError):
    status = 503


def from_marshmallow(err) -> ValidationFailed:
    """Turn a marshmallow ValidationError into one ValidationFailed naming the first bad field."""
    field, reason = _first_message(err.messages)
    return ValidationFailed(f"{field}: {reason}" if field else reason, param=field)


def _first_message(messages, prefix=""):
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = key if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
            if key == "_schema":
                name = prefix
            return _first_message(value, name)
    if isinstance(messages, list) and messages:
        first = messages[0]
        if isinstance(first, (dict, list)):
            return _first_message(first, prefix)
        return prefix or None, str(first)
    return prefix or None, str(messages)
