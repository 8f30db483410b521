"""Error types every service and the gateway share: plain Python, no framework.

A domain rule raises one of these; the gateway maps each type to one HTTP status in one
table. `roster.rpc` registers them with nameko, so an RPC caller gets the same type back
(with its field name) instead of a generic RemoteError; that mapping lives at the edge,
not here.
"""


class RosterError(Exception):
    """A failure to report to the caller: a message and, if one field is to blame, its name."""

    status = 500

    def __init__(self, message: str, param: str | None = None):
        # args are what crosses RPC (nameko stringifies them): no param must stay no param, not "None"
        super().__init__(*((message,) if param is None else (message, param)))
        self.message = message
        self.param = param

    def __str__(self):
        return self.message


class BadRequest(RosterError):
    status = 400


class Unauthorized(RosterError):
    status = 401


class Forbidden(RosterError):
    status = 403


class NotFound(RosterError):
    status = 404


class Conflict(RosterError):
    """The request is valid but collides with the current state (e.g. a concurrent merge)."""

    status = 409


class PayloadTooLarge(RosterError):
    status = 413


class ValidationFailed(RosterError):
    status = 422


class AnswerTooLarge(RosterError):
    """The service worked out an answer the bus cannot carry (roster.serialization.MAX_MESSAGE_BYTES).

    Not the caller's mistake in a way a 4xx could name (413 is about the request's body), so a
    500 whose message says what to do: ask for less.
    """

    status = 500


class ServiceUnavailable(RosterError):
    status = 503


class UnprocessableEvent(RosterError):
    """An event handler can never apply this event (it goes to the dead letters at once)."""

    status = 422


ALL_ERRORS = (RosterError, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge,
              ValidationFailed, ServiceUnavailable, UnprocessableEvent, AnswerTooLarge)


def invalid(field: str, reason: str) -> ValidationFailed:
    """Return the 422 for one field: message `field: reason`, param `field`."""
    return ValidationFailed(f"{field}: {reason}", param=field)


def from_marshmallow(err) -> ValidationFailed:
    """Turn a marshmallow ValidationError into one ValidationFailed naming the first bad field."""
    field, reason = _first_message(err.messages)
    return ValidationFailed(f"{field}: {reason}" if field else reason, param=field)


def _first_message(messages, prefix=""):
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
            return _first_message(value, name)
    if isinstance(messages, list) and messages:
        first = messages[0]
        if isinstance(first, (dict, list)):
            return _first_message(first, prefix)
        return prefix or None, str(first)
    return prefix or None, str(messages)
