"""Gateway pieces without a broker: keys and roles, the rendered cache, wire rendering, schemas."""
import base64
import io
from datetime import datetime, timedelta, timezone

import pytest
from marshmallow import ValidationError

from gateway.auth import ADMIN, READ, WRITE, check_permission, key_from_header, parse_api_keys
from gateway.cache import RecordCache, SharedVersions
from gateway.http import parse_json_body, read_body
from gateway.schemas.customers import CustomerCreate, CustomerOut, customer_wire
from gateway.schemas.fields import parse_datetime
from roster.errors import BadRequest, Forbidden, PayloadTooLarge, Unauthorized


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def test_api_keys_parse_and_refuse_unknown_roles():
    assert parse_api_keys("a:owner, b:read_only,") == {"a": "owner", "b": "read_only"}
    with pytest.raises(ValueError):
        parse_api_keys("a:superuser")


def test_key_comes_from_the_basic_user_name():
    assert key_from_header(basic("k123")) == "k123"
    assert key_from_header("Bearer k123") is None
    assert key_from_header("Basic !!!") is None
    assert key_from_header(None) is None


@pytest.mark.parametrize("role, allowed", [
    ("read_only", {READ}), ("staff", {READ, WRITE}), ("admin", {READ, WRITE, ADMIN}), ("owner", {READ, WRITE, ADMIN}),
])
def test_roles_grant_what_design_says(role, allowed):
    for permission in (READ, WRITE, ADMIN):
        if permission in allowed:
            check_permission(role, permission)
        else:
            with pytest.raises(Forbidden):
                check_permission(role, permission)


def test_no_key_is_unauthorized():
    with pytest.raises(Unauthorized):
        check_permission(None, READ)


def make_cache(folder, entries=3, ttl=60.0):
    """A RecordCache as one gateway process has it; two made on one folder share versions like two processes."""
    cache = RecordCache()
    cache.max_entries, cache.ttl = entries, ttl
    cache.versions = SharedVersions(folder / "versions")
    return cache


def body(entry):
    return entry.body if entry is not None else None


R1, R2 = datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 1, 2, tzinfo=timezone.utc)


def test_cache_serves_what_was_put_and_forgets_on_invalidate(tmp_path):
    cache = make_cache(tmp_path)
    cache.put("a", b"A", cache.token("a"))
    assert body(cache.get("a")) == b"A"
    cache.invalidate("a")
    assert cache.get("a") is None


def test_cache_refuses_a_fill_that_an_invalidation_overtook(tmp_path):
    cache = make_cache(tmp_path)
    token = cache.token("a")  # a request starts fetching "a"
    cache.invalidate("a")     # meanwhile "a" changes
    cache.put("a", b"stale", token)
    assert cache.get("a") is None


def test_a_write_through_one_process_stops_every_process_serving_the_old_copy(tmp_path):
    first, second = make_cache(tmp_path), make_cache(tmp_path)
    for cache in (first, second):
        cache.put("a", b"old", cache.token("a"), R1)
    token = first.token("a")
    first.written("a", b"new", token, R2)  # what the gateway process that handled the write does before answering
    assert second.get("a") is None and body(first.get("a")) == b"new"


def test_a_write_keeps_its_answer_only_when_no_other_write_came_between(tmp_path):
    mine, other = make_cache(tmp_path), make_cache(tmp_path)
    token = mine.token("a")           # my PATCH starts
    other.written("a", b"theirs", other.token("a"), R2)  # another process's write lands meanwhile
    mine.written("a", b"mine", token, R1)
    assert mine.get("a") is None      # which answer is newer is unknown here: neither is kept


@pytest.mark.parametrize("event_first", [False, True])
def test_the_writes_own_broadcast_keeps_its_answer_whether_it_comes_before_or_after(tmp_path, event_first):
    cache = make_cache(tmp_path)
    cache.put("a", b"v1", cache.token("a"), R1)
    token = cache.token("a")
    if event_first:
        cache.changed_elsewhere("a", R2)  # the event overtook the RPC answer
    cache.written("a", b"v2", token, R2)
    if not event_first:
        cache.changed_elsewhere("a", R2)
    cache.changed_elsewhere("a", R1)  # an older event, arriving late
    assert body(cache.get("a")) == b"v2"
    cache.changed_elsewhere("a", R2 + timedelta(seconds=1))
    assert cache.get("a") is None


def test_a_fill_that_read_the_record_before_a_broadcast_change_is_not_stored(tmp_path):
    cache = make_cache(tmp_path)
    token = cache.token("a")
    cache.changed_elsewhere("a", R2)
    cache.put("a", b"read before the change", token, R1)
    assert cache.get("a") is None
    cache.put("a", b"v2", cache.token("a"), R2)
    assert body(cache.get("a")) == b"v2"


def test_a_deleted_or_merged_away_record_is_neither_served_nor_stored_again(tmp_path):
    cache = make_cache(tmp_path)
    cache.put("a", b"v2", cache.token("a"), R2)
    token = cache.token("a")
    cache.gone("a")
    cache.put("a", b"late fill", token, R2 + timedelta(seconds=1))
    assert cache.get("a") is None


def test_versions_advance_by_one_per_bump_across_processes(tmp_path):
    first, second = SharedVersions(tmp_path / "v"), SharedVersions(tmp_path / "v")
    assert [first.bump("k"), second.bump("k"), first.bump("k")] == [1, 2, 3]
    assert second.of("k") == 3 and first.of("other") == 0


def test_cache_evicts_least_recently_stored_and_expires_after_ttl(tmp_path):
    cache = make_cache(tmp_path, entries=2)
    for key in "abc":
        cache.put(key, key.encode(), cache.token(key))
    assert cache.get("a") is None and body(cache.get("c")) == b"c"
    expired = make_cache(tmp_path, ttl=-1)
    expired.put("a", b"A", expired.token("a"))
    assert expired.get("a") is None


class FakeRequest:
    """What read_body uses of a werkzeug request. Without a Content-Length werkzeug's own `stream`
    reads nothing; a chunked body comes from the server's input (`wsgi.input`), as in eventlet."""

    def __init__(self, body: bytes, declared=None):
        self.content_length = declared
        chunked = declared is None
        self.headers = {"Transfer-Encoding": "chunked"} if chunked else {}
        self.stream = io.BytesIO(b"" if chunked else body)
        self.environ = {"wsgi.input": io.BytesIO(body)}


def test_a_body_over_the_limit_is_a_413_before_it_is_read():
    with pytest.raises(PayloadTooLarge):
        read_body(FakeRequest(b"", declared=2_000_000), 1024)
    with pytest.raises(PayloadTooLarge):  # chunked: no length declared
        read_body(FakeRequest(b"x" * 1025), 1024)
    assert read_body(FakeRequest(b"x" * 1024), 1024) == b"x" * 1024
    assert read_body(FakeRequest(b"x" * 10, declared=10), 1024) == b"x" * 10


@pytest.mark.parametrize("raw, param", [
    (b"[1]", None),
    (b"{\"a\": " * 40 + b"1" + b"}" * 40, "a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a"),
    (b'{"name": "a\\u0000b"}', "name"),
    (b'{"tags": ["ok", "\\u0000"]}', "tags[1]"),
    (b'{"n": "\xff\xfe"}', None),
    (b"{not json", None),
])
def test_bodies_that_are_not_plain_sane_json_are_a_400(raw, param):
    with pytest.raises(BadRequest) as failure:
        parse_json_body(raw)
    assert failure.value.param == param


def test_plain_json_passes():
    assert parse_json_body(b'{"a": {"b": [1, "x"]}}') == {"a": {"b": [1, "x"]}}
    assert parse_json_body(b"  ") == {}


SERVICE_CUSTOMER = {
    "id": 7, "uuid": "cus_x", "external_id": "e1", "external_ids": ["e1"], "data_source_uuid": "ds_1",
    "data_source_uuids": ["ds_1"], "name": None, "email": "a@b.co", "company": None, "status": "New Lead",
    "customer_since": None, "lead_created_at": None, "free_trial_started_at": None, "city": "Berlin",
    "state": None, "country": "DE", "zip": "10115", "website_url": None, "owner": None, "mrr": 1000, "arr": 12000,
    "currency": "EUR", "billing_system_type": "Import API", "billing_system_url": None, "created_at": "x", "updated_at": "y",
    "attributes": {"tags": [], "stripe": {}, "clearbit": {}, "custom": {}},
}


def test_wire_rendering_has_exactly_the_documented_keys():
    documented = {field.data_key or name for name, field in CustomerOut().fields.items()}
    assert set(customer_wire(SERVICE_CUSTOMER)) == documented


def test_wire_rendering_never_sends_null_where_the_client_forbids_it():
    wire = customer_wire(SERVICE_CUSTOMER)
    for key in ("id", "uuid", "external_id", "external_ids", "data_source_uuid", "data_source_uuids", "name",
                "email", "company", "status", "attributes", "mrr", "arr", "billing-system-type",
                "chartmogul-url", "currency", "currency-sign"):
        assert wire[key] is not None, key
    assert wire["name"] == "" and wire["currency-sign"] == "€"
    assert wire["address"] == {"address_zip": "10115", "city": "Berlin", "state": None, "country": "DE"}


@pytest.mark.parametrize("text", [
    "2015-01-01T10:00:00", "2015-01-01 10:00:00", "2015-01-01", "2025-04-30T00:00:00Z",
    "2023-06-09T13:16:00-04:00", "2020-05-06T01:00:00.123456",
])
def test_dates_in_every_form_the_client_sends_are_accepted(text):
    assert parse_datetime(text).tzinfo is not None


def test_create_schema_names_missing_and_mistyped_fields_and_leaves_rules_to_the_service():
    with pytest.raises(ValidationError) as err:
        CustomerCreate().load({"external_id": "x", "email": 3})
    assert set(err.value.messages) == {"data_source_uuid", "email"}
    # rules (email shape, dates not in the future) are the customers service's: one set, in its domain.py
    loaded = CustomerCreate().load({"data_source_uuid": "ds", "external_id": "x", "email": "not-an-email",
                                    "lead_created_at": "2999-01-01"})
    assert loaded["email"] == "not-an-email" and loaded["lead_created_at"] == "2999-01-01"


def test_create_schema_ignores_read_only_keys_the_client_echoes():
    loaded = CustomerCreate().load({"data_source_uuid": "ds", "external_id": "x", "customer-since": "2020-01-01"})
    assert loaded == {"data_source_uuid": "ds", "external_id": "x"}
