"""Gateway pieces without a broker: keys and roles, the rendered cache, wire rendering, schemas."""
import base64

import pytest
from marshmallow import ValidationError

from gateway.auth import ADMIN, READ, WRITE, check_permission, key_from_header, parse_api_keys
from gateway.cache import RenderedCache
from gateway.schemas.customers import CustomerCreate, CustomerOut, customer_wire
from gateway.schemas.fields import parse_datetime
from roster.errors import Forbidden, Unauthorized


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


def make_cache(entries=3, ttl=60.0):
    cache = RenderedCache()
    cache.max_entries, cache.ttl = entries, ttl
    return cache


def test_cache_serves_what_was_put_and_forgets_on_invalidate():
    cache = make_cache()
    cache.put("a", b"A", cache.epoch)
    assert cache.get("a") == b"A"
    cache.invalidate("a")
    assert cache.get("a") is None


def test_cache_refuses_a_fill_that_an_invalidation_overtook():
    cache = make_cache()
    epoch = cache.epoch          # a request starts fetching "a"
    cache.invalidate("a")        # meanwhile "a" changes
    cache.put("a", b"stale", epoch)
    assert cache.get("a") is None


def test_cache_evicts_oldest_and_expires_after_ttl():
    cache = make_cache(entries=2)
    for key in "abc":
        cache.put(key, key.encode(), cache.epoch)
    assert cache.get("a") is None and cache.get("c") == b"c"
    expired = make_cache(ttl=-1)
    expired.put("a", b"A", expired.epoch)
    assert expired.get("a") is None


SERVICE_CUSTOMER = {
    "id": 7, "uuid": "cus_x", "external_id": "e1", "external_ids": ["e1"], "data_source_uuid": "ds_1",
    "data_source_uuids": ["ds_1"], "name": None, "email": "a@b.co", "company": None, "status": "New Lead",
    "customer_since": None, "lead_created_at": None, "free_trial_started_at": None, "city": "Berlin",
    "state": None, "country": "DE", "zip": "10115", "website_url": None, "owner": None, "mrr": 1000, "arr": 12000,
    "currency": "EUR", "billing_system_type": "Import API", "created_at": "x", "updated_at": "y",
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


def test_create_schema_names_missing_and_malformed_fields():
    with pytest.raises(ValidationError) as err:
        CustomerCreate().load({"external_id": "x", "email": "not-an-email"})
    assert set(err.value.messages) == {"data_source_uuid", "email"}
    with pytest.raises(ValidationError) as err:
        CustomerCreate().load({"data_source_uuid": "ds", "external_id": "x", "lead_created_at": "2999-01-01"})
    assert "lead_created_at" in err.value.messages


def test_create_schema_ignores_read_only_keys_the_client_echoes():
    loaded = CustomerCreate().load({"data_source_uuid": "ds", "external_id": "x", "customer-since": "2020-01-01"})
    assert loaded == {"data_source_uuid": "ds", "external_id": "x"}


def test_contact_wire_schema_documents_exactly_what_the_contacts_service_returns():
    from gateway.schemas.contacts import ContactOut
    from services.contacts.schemas import ContactSchema

    assert set(ContactOut().fields) == set(ContactSchema().fields)
