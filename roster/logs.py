"""Logging filters named in the LOGGING section of config.yaml.

Plain `logging` only (no nameko import), so any process can load them from its log configuration.
"""
from __future__ import annotations

import logging
import re

EXPECTED_ERROR_PREFIX = "(expected) error handling worker"
ACCESS_LOGGER = "nameko.web.server"
REDACTED = "<redacted>"

# `key=value` pairs of a query string: after `?` or `&`, up to the next `&`, `#` or blank.
_QUERY_VALUE = re.compile(r"([?&][^=&#\s\"]*=)[^&#\s\"]*")
# `Authorization: Basic abc...` (or Bearer, or any scheme) wherever it appears in a message.
_AUTHORIZATION = re.compile(r"((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)[^\r\n\"',}]+", re.IGNORECASE)
# Credentials in an absolute URL: scheme://user:password@host
_URL_USERINFO = re.compile(r"(\w+://)[^/@\s\"]+@")


class ExpectedErrorFilter(logging.Filter):
    """Log nameko's "(expected) error handling worker" warnings as one line without a traceback.

    Expected errors are the caller's mistakes (our 4xx, `expected_exceptions`): the traceback says
    nothing an operator needs. One whose exception reports a 5xx `status` keeps its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Return True (keep the record), after stripping its traceback when it is an expected error."""
        if not (isinstance(record.msg, str) and record.msg.startswith(EXPECTED_ERROR_PREFIX)):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and _is_server_error(exc):
            return True
        message = record.getMessage()
        if exc is not None:
            prefix, separator, _ = message.rpartition(f": {exc}")
            if separator:  # name the type, which the message alone does not
                message = f"{prefix}: {type(exc).__name__}: {exc}"
        record.msg = " ".join(message.split("\n"))
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True


def _is_server_error(exc: BaseException) -> bool:
    """Return True when the exception carries an HTTP-like status of 500 or more."""
    status = getattr(exc, "status", None)
    return isinstance(status, int) and status >= 500


class AccessLogFilter(logging.Filter):
    """Keep personal data out of the gateway's access log (eventlet.wsgi via `nameko.web.server`).

    Query-string values become `<redacted>` (`?email=<redacted>`), Authorization header values and
    URL credentials too; the path, the parameter names and the status stay.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Return True (keep the record), with its message redacted when it comes from the web server."""
        if record.name != ACCESS_LOGGER and not record.name.startswith(ACCESS_LOGGER + "."):
            return True
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        if record.exc_text:  # a formatted traceback may quote the request line
            record.exc_text = redact(record.exc_text)
        return True


def redact(text: str) -> str:
    """Return `text` with query-string values, Authorization values and URL credentials replaced."""
    text = _AUTHORIZATION.sub(lambda match: match.group(1) + REDACTED, text)
    text = _URL_USERINFO.sub(lambda match: match.group(1) + REDACTED + "@", text)
    return _QUERY_VALUE.sub(lambda match: match.group(1) + REDACTED, text)
