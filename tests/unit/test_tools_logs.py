"""The logging filters of config.yaml, on real LogRecords formatted by a real handler."""
import io
import logging
import sys

import pytest

from roster.errors import NotFound, ServiceUnavailable
from roster.logs import AccessLogFilter, ExpectedErrorFilter, redact


class WorkerContext:
    """Stands in for nameko's WorkerContext, whose repr is all the log message uses."""

    def __repr__(self):
        return "<WorkerContext [customers.get_customer] at 0x7f>"


def record_of(exc: BaseException, msg: str, name="nameko.containers", level=logging.WARNING):
    """Return the LogRecord nameko's container makes when a worker raises `exc`."""
    try:
        raise exc
    except BaseException:
        exc_info = sys.exc_info()
    return logging.LogRecord(name, level, "containers.py", 395, msg, (WorkerContext(), exc), exc_info)


def emitted(record: logging.LogRecord, *filters: logging.Filter) -> str:
    """Return what a stream handler with `filters` writes for `record` ('' when it is dropped)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for one in filters:
        handler.addFilter(one)
    handler.handle(record)
    return stream.getvalue()


def test_an_expected_error_is_one_line_naming_the_exception_without_traceback():
    record = record_of(NotFound("customer: not found", param="uuid"), "(expected) error handling worker %s: %s")

    output = emitted(record, ExpectedErrorFilter())

    assert output == ("WARNING nameko.containers: (expected) error handling worker "
                      "<WorkerContext [customers.get_customer] at 0x7f>: NotFound: customer: not found\n")


def test_an_expected_error_with_a_multi_line_message_stays_on_one_line():
    record = record_of(NotFound("first line\nsecond line"), "(expected) error handling worker %s: %s")

    output = emitted(record, ExpectedErrorFilter())

    assert output.count("\n") == 1
    assert "Traceback" not in output


def test_an_expected_error_that_is_a_5xx_keeps_its_traceback():
    record = record_of(ServiceUnavailable("customers did not answer"), "(expected) error handling worker %s: %s")

    output = emitted(record, ExpectedErrorFilter())

    assert "Traceback (most recent call last)" in output


def test_an_unexpected_error_keeps_its_traceback():
    record = record_of(KeyError("boom"), "error handling worker %s: %s", level=logging.ERROR)

    output = emitted(record, ExpectedErrorFilter())

    assert "Traceback (most recent call last)" in output
    assert "KeyError: 'boom'" in output


def access_record(request_line: str, name="nameko.web.server") -> logging.LogRecord:
    """Return the record eventlet.wsgi logs for one request (it formats the line itself)."""
    line = f'127.0.0.1 - - [26/Nov/2026 10:00:00] "{request_line}" 200 512 0.004211'
    return logging.LogRecord(name, logging.INFO, "wsgi.py", 748, line, None, None)


def test_the_access_log_keeps_path_parameter_names_and_status_but_not_query_values():
    record = access_record("GET /v1/customers/search?email=jane%40example.com&name=Jane+Doe&per_page=2 HTTP/1.1")

    output = emitted(record, AccessLogFilter())

    assert '"GET /v1/customers/search?email=<redacted>&name=<redacted>&per_page=<redacted> HTTP/1.1" 200' in output
    assert "jane" not in output and "Jane" not in output


def test_the_access_log_keeps_a_request_without_query_unchanged():
    record = access_record("GET /v1/customers/cus_123 HTTP/1.1")

    assert emitted(record, AccessLogFilter()) == f"INFO nameko.web.server: {record.msg}\n"


def test_records_with_arguments_are_redacted_after_formatting():
    record = logging.LogRecord("nameko.web.server", logging.ERROR, "wsgi.py", 728,
                               'I/O error while discarding request body. request="%s"',
                               ("POST /v1/contacts?email=a@b.c HTTP/1.1",), None)

    output = emitted(record, AccessLogFilter())

    assert 'request="POST /v1/contacts?email=<redacted> HTTP/1.1"' in output
    assert "a@b.c" not in output


def test_other_loggers_are_left_alone():
    record = access_record("GET /v1/customers/search?email=jane@example.com HTTP/1.1", name="gateway.http")

    assert "jane@example.com" in emitted(record, AccessLogFilter())


@pytest.mark.parametrize("text, expected", [
    ("Authorization: Basic dGVzdDo=", "Authorization: <redacted>"),
    ("{'authorization': 'Bearer abc.def'}", "{'authorization': '<redacted>'}"),
    ('"GET http://key:@example.com/v1/ping HTTP/1.1"', '"GET http://<redacted>@example.com/v1/ping HTTP/1.1"'),
    ("GET /v1/ping?x=1#frag", "GET /v1/ping?x=<redacted>#frag"),
    ("GET /v1/customers?external_id= HTTP/1.1", "GET /v1/customers?external_id=<redacted> HTTP/1.1"),
])
def test_redact(text, expected):
    assert redact(text) == expected
