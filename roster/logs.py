"""Logging filters named in the LOGGING section of config.yaml.

Plain `logging` only (no nameko import), so any process can load them from its log configuration.
"""
from __future__ import annotations

import json
import logging
import re
import time

EXPECTED_ERROR_PREFIX = "(expected) error handling worker"
ACCESS_LOGGER = "nameko.web.server"
REDACTED = "<redacted>"

# These run on every log line, whatever a caller put in it (a 200,000-character value echoed in a
# 422 message), so each must take linear time: no match attempt may rescan text that attempts
# starting at other positions scan too.
#
# `key=value` pairs of a query string: after `?` or `&`, up to the next `&`, `#` or blank. The
# name excludes `?` so that a run of `?`s (or `?a?a?a...`) without `=` is scanned once, not once
# per `?`; that redacts exactly as a name allowing `?` did: the match then starts at the last `?`
# before the `=`, and the text between the two `?`s is kept as it was.
_QUERY_VALUE = re.compile(r"([?&][^=&#?\s\"]*=)[^&#\s\"]*")
# `Authorization: Basic abc...` (or Bearer, or any scheme) wherever it appears in a message.
# Linear as it is: every attempt starts on the literal word.
_AUTHORIZATION = re.compile(r"((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)[^\r\n\"',}]+", re.IGNORECASE)
# Credentials in an absolute URL: scheme://user:password@host. The scheme starts at a word
# boundary: without it `\w+` was tried from every character of a long word, each attempt running
# to the word's end (quadratic). A match found from inside a word is found from its start too, so
# what is redacted is unchanged. `_URL_SCHEME` is a cheap check that skips the regex when no URL is there.
_URL_USERINFO = re.compile(r"\b(\w+://)[^/@\s\"]+@")
_URL_SCHEME = "://"


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
    return _QUERY_VALUE.sub(lambda match: match.group(1) + REDACTED, redact_credentials(text))


class CredentialsFilter(logging.Filter):
    """Keep credentials out of every log line, whichever logger made it.

    Authorization header values and URL credentials become `<redacted>` in the message, its
    arguments and any formatted traceback (an error's repr can quote a request or a broker URL).
    Query-string values are left to AccessLogFilter (they are not credentials).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's business, not ours
            return True
        redacted = redact_credentials(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_credentials(record.exc_text)
        return True


def redact_credentials(text: str) -> str:
    """Return `text` with Authorization values and URL credentials replaced (query values kept)."""
    text = _AUTHORIZATION.sub(lambda match: match.group(1) + REDACTED, text)
    if _URL_SCHEME not in text:
        return text
    return _URL_USERINFO.sub(lambda match: match.group(1) + REDACTED + "@", text)


class RequestIdFilter(logging.Filter):
    """Stamp each record with the request id of the work that made it (roster.tracing).

    `record.request_id` is the id or "-"; `record.request` is " [id]" or "" for the text format.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from roster import tracing

        request_id = tracing.current()
        record.request_id = request_id or "-"
        record.request = f" [{request_id}]" if request_id else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (LOG_FORMAT=json): time, level, logger, message, request_id, error."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "pid": record.process,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["error"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)

    converter = time.gmtime  # the "Z" above means UTC
