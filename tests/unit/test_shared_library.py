"""The shared library's pure parts: cursors, page sizes, the event envelope, error mapping."""
import uuid
from datetime import datetime

import pytest
from marshmallow import Schema, ValidationError, fields

import base64

from roster.errors import BadRequest, ValidationFailed, from_marshmallow
from roster.events import envelope
from roster.pagination import MAX_PER_PAGE, decode_cursor, encode_cursor, keyset_page, page_size


def test_cursor_round_trips_and_is_opaque():
    cursor = encode_cursor({"after_id": 1234})
    assert "1234" not in cursor
    assert decode_cursor(cursor, after_id=int) == {"after_id": 1234}
    assert decode_cursor(None, after_id=int) == {} and decode_cursor("", after_id=int) == {}


def _raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("forged", [
    "!!!", "bm90IGpzb24", encode_cursor({"a": 1})[:-3] + "@@",
    _raw("null"), _raw('{"after_id": "x"}'), _raw('{"after_id": NaN}'), _raw('{"after_id": 1e400}'),
    _raw('{"after_id": %d}' % 2**70), _raw('{"after_id": -1}'), _raw('{"after_id": true}'),
    _raw('{"after_id": 1, "extra": 2}'), _raw("{}"), "A" * 5000,
])
def test_forged_cursor_is_a_400_naming_cursor(forged):
    with pytest.raises(BadRequest) as failure:
        decode_cursor(forged, after_id=int)
    assert failure.value.param == "cursor"


def test_page_size_defaults_and_refuses_what_is_out_of_range():
    assert page_size(None) == MAX_PER_PAGE == 200
    assert page_size("50") == 50 and page_size(200) == 200
    for bad in ("0", "-1", "ten", 201, 10**30, "1e3", True):
        with pytest.raises(ValidationFailed) as failure:
            page_size(bad)
        assert failure.value.param == "per_page"


def test_keyset_page_reports_more_only_when_an_extra_row_came_back():
    rows = [{"id": i} for i in range(1, 5)]
    page, has_more, cursor = keyset_page(rows, 3, lambda row: {"after_id": row["id"]})
    assert [r["id"] for r in page] == [1, 2, 3] and has_more
    assert decode_cursor(cursor, after_id=int) == {"after_id": 3}
    page, has_more, cursor = keyset_page(rows, 4, lambda row: {"after_id": row["id"]})
    assert len(page) == 4 and not has_more and cursor is None


def test_envelope_carries_id_time_version_and_fields():
    payload = envelope(uuid="cus_1", changes={"name": "x"})
    uuid.UUID(payload["event_id"])
    assert datetime.fromisoformat(payload["occurred_at"]).tzinfo is not None
    assert payload["version"] == 1 and payload["uuid"] == "cus_1" and payload["changes"] == {"name": "x"}
    assert envelope()["event_id"] != envelope()["event_id"]


def test_marshmallow_errors_name_the_nested_field():
    class Inner(Schema):
        key = fields.String(required=True)

    class Outer(Schema):
        attributes = fields.Nested(Inner, required=True)

    with pytest.raises(ValidationError) as err:
        Outer().load({"attributes": {}})
    failure = from_marshmallow(err.value)
    assert failure.param == "attributes.key"
    assert failure.status == 422 and "required" in failure.message.lower()


def test_a_remembering_proxy_answers_repeats_from_memory_until_told_to_forget(monkeypatch):
    from roster.rpc import RememberingRpcProxy, RememberingServiceProxy

    class Remote:
        calls = 0

        def get_data_source(self, uuid):
            Remote.calls += 1
            if uuid == "missing":
                raise ValidationFailed("no such source", param="uuid")
            return {"uuid": uuid, "n": Remote.calls}

        def other(self, value):
            Remote.calls += 1
            return value

    provider = RememberingRpcProxy("billing_sync", remember={"get_data_source": 5.0})
    proxy = RememberingServiceProxy(Remote(), provider)
    assert proxy.get_data_source("ds_1") == proxy.get_data_source("ds_1") == {"uuid": "ds_1", "n": 1}
    for _ in range(2):  # an error is never remembered
        with pytest.raises(ValidationFailed):
            proxy.get_data_source("missing")
    assert Remote.calls == 3
    proxy.other("x"), proxy.other("x")  # methods not named are always asked
    assert Remote.calls == 5
    proxy.forget("get_data_source", "ds_1")
    assert proxy.get_data_source("ds_1")["n"] == 6
    import roster.rpc
    monkeypatch.setattr(roster.rpc.time, "monotonic", lambda: 10**9)  # the answer has aged out
    assert proxy.get_data_source("ds_1")["n"] == 7
