"""Hostile input is refused with a clear 4xx before anything is stored.

Bodies over 1 MiB → 413 (an invoice batch may be up to 10 MiB), JSON nested deeper than 32 levels
→ 400, invalid UTF-8 and NUL characters → 400, any text longer than its field allows → 422 naming
the field, per_page over 200 → 422 on every list route. After each refusal the records of this
module's data source are exactly what they were (docs/testing.md).
"""
import json

import pytest

from gateway.http import MAX_BODY_BYTES, MAX_JSON_DEPTH
from gateway.routes.billing import INVOICE_BATCH_MAX_BODY
from roster.pagination import MAX_PER_PAGE
from tests.e2e.support import unique

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def ds(http):
    answer = http.post("/v1/data_sources", json={"name": unique("limits")})
    assert answer.status_code == 201, answer.text
    return answer.json()["uuid"]


@pytest.fixture(scope="module")
def customer(http, ds):
    answer = http.post("/v1/customers", json={"data_source_uuid": ds, "external_id": unique("cus"), "name": "Limits"})
    assert answer.status_code == 201, answer.text
    return answer.json()["uuid"]


def listed(http, path: str, key: str) -> list:
    answer = http.get(path)
    assert answer.status_code == 200, (path, answer.text)
    return sorted(json.dumps(entry, sort_keys=True) for entry in answer.json()[key])


@pytest.fixture()
def stored(http, ds, customer):
    """stored() -> everything this module's data source holds, to compare before and after a refusal."""

    known_sources = {source["uuid"] for source in http.get("/v1/data_sources").json()["data_sources"]}

    def snapshot() -> dict:
        return {
            # data sources are global: other modules' may change meanwhile, so only new ones count
            "new data sources": sorted(set(source["uuid"] for source in
                                           http.get("/v1/data_sources").json()["data_sources"]) - known_sources),
            "customers": listed(http, f"/v1/customers?data_source_uuid={ds}", "entries"),
            "contacts": listed(http, f"/v1/contacts?data_source_uuid={ds}", "entries"),
            "notes": listed(http, f"/v1/customer_notes?customer_uuid={customer}", "entries"),
            "plans": listed(http, f"/v1/plans?data_source_uuid={ds}", "plans"),
            "invoices": listed(http, f"/v1/import/customers/{customer}/invoices", "invoices"),
        }

    return snapshot


def assert_error(answer, status: int, param=...):
    assert answer.status_code == status, answer.text[:500]
    body = answer.json()
    assert body["code"] == status and body["message"], body
    if param is not ...:
        assert body["param"] == param, body


def test_a_body_over_1_mib_is_413_whether_its_length_is_announced_or_not(http, ds, stored):
    before = stored()
    huge = json.dumps({"data_source_uuid": ds, "external_id": unique("big"), "name": "x" * MAX_BODY_BYTES}).encode()
    assert_error(http.post("/v1/customers", data=huge, headers={"Content-Type": "application/json"}), 413)
    chunks = (huge[i:i + 65536] for i in range(0, len(huge), 65536))  # chunked: no Content-Length
    assert_error(http.post("/v1/customers", data=chunks, headers={"Content-Type": "application/json"}), 413)
    assert stored() == before


def _invoices(ds: str, count: int, padding: int) -> list[dict]:
    """Invoices without a currency (so each is refused after parsing), padded to make the body big."""
    return [{"external_id": unique("inv"), "data_source_uuid": ds, "date": "2025-01-01T00:00:00Z",
             "line_items": [{"type": "one_time", "amount_in_cents": 100, "description": "d" * 2000}] * padding}
            for _ in range(count)]


def test_an_invoice_batch_may_be_larger_than_1_mib_up_to_its_own_limit(http, ds, customer, stored):
    before = stored()
    path = f"/v1/import/customers/{customer}/invoices"
    big = json.dumps({"invoices": _invoices(ds, 10, 60)}).encode()  # ~1.2 MiB
    assert MAX_BODY_BYTES < len(big) < INVOICE_BATCH_MAX_BODY
    answer = http.post(path, data=big, headers={"Content-Type": "application/json"})
    assert_error(answer, 422, "invoices")  # read and checked, not refused for its size
    assert all("currency" in invoice["errors"] for invoice in answer.json()["invoices"])
    too_big = json.dumps({"invoices": _invoices(ds, 1, 1), "padding": "p" * INVOICE_BATCH_MAX_BODY}).encode()
    assert_error(http.post(path, data=too_big, headers={"Content-Type": "application/json"}), 413)
    assert stored() == before


def nested(depth: int):
    value = "deep"
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def test_json_nested_deeper_than_the_limit_is_400(http, ds, stored):
    before = stored()
    body = {"data_source_uuid": ds, "external_id": unique("deep"), "attributes": {"custom": nested(MAX_JSON_DEPTH)}}
    assert_error(http.post("/v1/customers", json=body), 400)
    lists = b'{"data_source_uuid": "%s", "name": %s}' % (ds.encode(), b"[" * 5000 + b"]" * 5000)
    assert_error(http.post("/v1/customers", data=lists, headers={"Content-Type": "application/json"}), 400)
    assert stored() == before


@pytest.mark.parametrize("raw", [
    pytest.param(b'{"name": "caf\xe9", "data_source_uuid": "%s", "external_id": "x1"}', id="latin-1 byte"),
    pytest.param(b'{"name": "\xed\xa0\x80", "data_source_uuid": "%s", "external_id": "x2"}', id="lone surrogate"),
    pytest.param(b'{"name": "a\\u0000b", "data_source_uuid": "%s", "external_id": "x3"}', id="escaped NUL"),
    pytest.param(b'{"name": "a\x00b", "data_source_uuid": "%s", "external_id": "x4"}', id="raw NUL"),
    pytest.param(b'{"name\\u0000": "a", "data_source_uuid": "%s", "external_id": "x5"}', id="NUL in a key"),
])
def test_invalid_utf8_and_nul_characters_are_400(http, ds, stored, raw):
    before = stored()
    assert_error(http.post("/v1/customers", data=raw.replace(b"%s", ds.encode()),
                           headers={"Content-Type": "application/json"}), 400)
    assert stored() == before


def test_a_nul_in_the_query_string_or_the_path_is_400(http, ds):
    assert_error(http.get(f"/v1/customers?data_source_uuid={ds}&external_id=a%00b"), 400, "external_id")
    assert_error(http.get("/v1/sync_jobs/a%00b"), 400, "job_id")
    assert_error(http.post("/v1/sync_jobs/a%00b/cancel"), 400, "job_id")
    assert_error(http.get("/v1/customers/cus_a%00b"), 400, "uuid")


def _email(length: int) -> str:
    domain = ".".join(["b" * 63] * 4) + ".com"
    local = "a" * (length - len(domain) - 1)
    assert len(local) <= 64
    return f"{local}@{domain}"


# (what, path template, base body, field, longest allowed, how to make a value of a given length)
def text(length):
    return "x" * length


FIELDS = [
    *[("customer", "/v1/customers", {"external_id": "E"}, field, limit, text)
      for field, limit in [("name", 500), ("company", 500), ("city", 200), ("state", 200), ("zip", 40),
                           ("external_id", 500)]],
    ("customer", "/v1/customers", {"external_id": "E"}, "email", 320, _email),
    ("customer", "/v1/customers", {"external_id": "E"}, "website_url", 2000,
     lambda n: "https://example.com/" + "p" * (n - 20)),
    *[("contact", "/v1/contacts", {"customer_uuid": "C"}, field, limit, text)
      for field, limit in [("first_name", 200), ("last_name", 200), ("title", 200), ("phone", 100),
                           ("notes", 10_000), ("external_id", 500)]],
    ("contact", "/v1/contacts", {"customer_uuid": "C"}, "linked_in", 500,
     lambda n: "https://www.linkedin.com/in/" + "p" * (n - 28)),
    ("note", "/v1/customer_notes", {"customer_uuid": "C", "type": "note"}, "text", 100_000, text),
    *[("plan", "/v1/plans", {"name": "P", "interval_count": 1, "interval_unit": "month"}, field, limit, text)
      for field, limit in [("name", 500), ("external_id", 500)]],
    ("data source", "/v1/data_sources", {}, "name", 500, text),
]


@pytest.mark.parametrize("what, path, base, field, limit, make", [
    pytest.param(*case, id=f"{case[0]} {case[3]} {case[4]}") for case in FIELDS])
def test_text_longer_than_its_field_allows_is_422_naming_the_field(http, ds, customer, stored,
                                                                      what, path, base, field, limit, make):
    before = stored()
    body = {**base, "data_source_uuid": ds}
    if what == "data source":
        body.pop("data_source_uuid")
    body = {key: customer if value == "C" else unique("e") if value == "E" else value for key, value in body.items()}
    value = make(limit + 1)
    assert len(value) == limit + 1
    answer = http.post(path, json={**body, field: value})
    assert_error(answer, 422)
    assert answer.json()["param"] in (field, f"{what.replace(' ', '_')}.{field}"), answer.json()
    assert stored() == before


@pytest.mark.parametrize("field, limit", [
    ("external_id", 500), ("customer_external_id", 500), ("description", 2000), ("discount_description", 2000),
    ("account_code", 500),
])
def test_invoice_text_longer_than_its_field_allows_is_422_naming_the_field(http, ds, customer, stored,
                                                                             field, limit):
    before = stored()
    line = {"type": "one_time", "amount_in_cents": 100, "quantity": 1}
    invoice = {"external_id": unique("inv"), "date": "2025-01-01T00:00:00Z", "currency": "USD",
               "data_source_uuid": ds, "line_items": [line]}
    if field in ("description", "discount_description", "account_code"):
        line[field] = "x" * (limit + 1)
    else:
        invoice[field] = "x" * (limit + 1)
    answer = http.post(f"/v1/import/customers/{customer}/invoices", json={"invoices": [invoice]})
    assert_error(answer, 422, "invoices")
    errors = json.dumps(answer.json()["invoices"][0]["errors"])
    assert field in errors and str(limit) in errors, errors
    assert stored() == before


def list_routes(document: dict) -> dict[str, dict]:
    """{path: its other required query parameters} of every GET route of the document that takes per_page."""
    routes = {}
    for path, operations in document["paths"].items():
        parameters = operations.get("get", {}).get("parameters", [])
        if any(p.get("name") == "per_page" for p in parameters):
            routes[path] = {p["name"]: "x" for p in parameters if p.get("in") == "query" and p.get("required")}
    return routes


def test_per_page_over_200_is_422_on_every_list_route(http, customer):
    document = http.get("/v1/openapi.json").json()
    routes = list_routes(document)
    assert len(routes) >= 10, routes
    refused = {}
    for route, required in sorted(routes.items()):
        path = route.replace("{uuid}", customer)
        assert "{" not in path, path
        answer = http.get(path, params={**required, "per_page": MAX_PER_PAGE + 1})
        if answer.status_code != 422 or answer.json().get("param") != "per_page":
            refused[route] = (answer.status_code, answer.text[:200])
        else:
            assert http.get(path, params={**required, "per_page": MAX_PER_PAGE}).status_code == 200, route
    assert not refused, f"routes that did not answer per_page={MAX_PER_PAGE + 1} with a 422 naming per_page: {refused}"


def test_a_chunked_body_is_read_like_any_other(http, customer):
    """A body sent without Content-Length (chunked) was once read as empty: a PATCH silently did nothing."""
    body = json.dumps({"name": "Chunked Ltd"}).encode()
    answer = http.patch(f"/v1/customers/{customer}", data=iter([body[:5], body[5:]]),
                        headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert http.get(f"/v1/customers/{customer}").json()["name"] == "Chunked Ltd"
