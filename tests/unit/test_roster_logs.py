"""roster.logs redaction stays linear-time on long lines and redacts what it always did."""
import pytest

from roster.logs import redact, redact_credentials

LONG = 200_000


@pytest.mark.timeout(10)  # a hang guard (the quadratic patterns took minutes here), not a speed target
@pytest.mark.parametrize("text", [
    "a" * LONG,                                  # one long word without "://"
    "a" * LONG + "://host/",                     # one long word that is a scheme
    "GET /" + "x" * LONG + " HTTP/1.1 401",      # a long URL path
    "?" * LONG,                                  # `?`s without `=`
    "?a" * (LONG // 2),
    "&" * LONG,
    "authorization" + " " * LONG,                # the header name and no value
    "authorization:" + "\n" * LONG,
    '{"value": "' + "é" * LONG + '"} was refused',
])
def test_redaction_of_a_long_line_does_not_hang(text):
    assert redact(text) == text
    assert redact_credentials(text) == text


@pytest.mark.parametrize("text, expected", [
    ("GET /a?b?c=1&d=2 x", "GET /a?b?c=<redacted>&d=<redacted> x"),
    ("see ?? then ?k=v", "see ?? then ?k=<redacted>"),
    ("xx_abc://u:p@h/p", "xx_abc://<redacted>@h/p"),
    ("é1http://u:p@h and ftp://q@r", "é1http://<redacted>@h and ftp://<redacted>@r"),
    ("a:b://u@h", "a:b://<redacted>@h"),
    ("no url, user@host", "no url, user@host"),
])
def test_redaction_is_unchanged_where_the_patterns_were_made_linear(text, expected):
    assert redact(text) == expected


def test_credentials_in_a_long_line_are_still_redacted():
    text = "x" * LONG + " https://user:secret@example.com/" + "?" * 1000 + "token=abc"
    out = redact(text)
    assert "secret" not in out and "https://<redacted>@example.com/" in out and out.endswith("token=<redacted>")
