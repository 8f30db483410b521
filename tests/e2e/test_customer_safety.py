"""The customer write path under hostile values, offsets, concurrency and faults (issue 6).

Run on SQLite and on PostgreSQL (DATABASE_URL=postgresql://...): the concurrency tests
matter most there, where writers really run at once.
"""
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import eventlet
import pytest
import requests
from eventlet.queue import Queue
from nameko.containers import ServiceContainer
from nameko.events import event_handler
from nameko.standalone.events import event_dispatcher
from tests.e2e.support import eventually, unique

ROUNDS = 4
created_events: Queue = Queue()


class CreatedListener:
    name = "customer_safety_listener"

    @event_handler("customers", "customer_created")
    def on_created(self, payload):
        created_events.put(payload)


@pytest.fixture(scope="module")
def listener(amqp_uri):
    container = ServiceContainer(CreatedListener, {"AMQP_URI": amqp_uri})
    container.start()
    yield created_events
    container.stop()


def wait_for_created(queue: Queue, customer_uuid: str, timeout: float = 15) -> dict:
    with eventlet.Timeout(timeout):
        while True:
            payload = queue.get()
            if payload["customer"]["uuid"] == customer_uuid:
                return payload


@pytest.fixture(scope="module")
def source(http):
    response = http.post("/v1/data_sources", json={"name": unique("Safety")})
    assert response.status_code == 201, response.text
    return response.json()["uuid"]


def create(http, source, **fields):
    response = http.post("/v1/customers", json={"data_source_uuid": source, "external_id": unique(), **fields})
    assert response.status_code == 201, response.text
    return response.json()


def by_external_id(http, external_id):
    return http.get("/v1/customers", params={"external_id": external_id}).json()["entries"]


def at_once(calls):
    """Run the (method, path, json) calls concurrently, each on its own connection; return the responses."""
    def send(call):
        method, path, body, auth = call
        return requests.request(method, path, json=body, auth=auth, timeout=30)
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(send, calls))


def call(http, method, path, body=None):
    return (method, http.base_url + path, body, (http.api_keys["owner"], ""))


def no_server_errors(responses):
    assert all(response.status_code < 500 for response in responses), [r.text for r in responses]


# ---- values the bus cannot carry ------------------------------------------------------------

@pytest.mark.parametrize("attribute", [
    {"type": "Integer", "key": "n", "value": "100000000000000000000"},
    {"type": "Integer", "key": "n", "value": 2**64},
    {"type": "Decimal", "key": "n", "value": "1e30"},
])
def test_an_oversized_custom_value_is_a_422_stores_nothing_and_later_events_flow(http, source, listener, attribute):
    external_id = unique("big")
    created = http.post("/v1/customers", json={"data_source_uuid": source, "external_id": external_id,
                                               "attributes": {"custom": [attribute]}})
    assert created.status_code == 422 and created.json()["param"] == "custom.n", created.text
    assert by_external_id(http, external_id) == []

    customer = create(http, source)
    added = http.post(f"/v1/customers/{customer['uuid']}/attributes/custom", json={"custom": [attribute]})
    assert added.status_code == 422 and added.json()["param"] == "custom.n", added.text
    assert http.get(f"/v1/customers/{customer['uuid']}").json()["attributes"]["custom"] == {}

    later = create(http, source)  # the service is still up, and its events still go out
    assert wait_for_created(listener, later["uuid"])["customer"]["uuid"] == later["uuid"]


def test_a_long_string_value_is_refused_so_no_page_can_grow_without_bound(http, source):
    customer = create(http, source)
    response = http.post(f"/v1/customers/{customer['uuid']}/attributes/custom",
                         json={"custom": [{"type": "String", "key": "blob", "value": "x" * 256}]})
    assert response.status_code == 422 and response.json()["param"] == "custom.blob"


@pytest.mark.parametrize("body, param", [
    ({"name": "nul\u0000"}, "name"), ({"email": "e" * 320 + "@example.com"}, "email"), ({"country": "GERMANY"}, "country"),
    ({"lead_created_at": "0001-01-01T00:00:00+14:00"}, "lead_created_at"),
    ({"attributes": {"custom": [{"type": "String", "key": "k", "value": "v", "source": "s" * 101}]}}, "custom.k.source"),
])
def test_values_longer_than_their_column_or_with_nul_are_422_not_500(http, source, body, param):
    external_id = unique("bad")
    response = http.post("/v1/customers", json={"data_source_uuid": source, "external_id": external_id, **body})
    # the gateway refuses NUL itself while parsing (400); the service refuses it too (unit tests)
    has_nul = any(isinstance(value, str) and "\x00" in value for value in body.values())
    assert response.status_code in ((400, 422) if has_nul else (422,)), response.text
    assert response.json()["param"] == param, response.text
    assert by_external_id(http, external_id) == []


# ---- timestamps with an offset --------------------------------------------------------------

def test_offset_timestamps_round_trip_in_utc_through_create_get_and_the_event(http, source, listener):
    customer = create(http, source, lead_created_at="2024-01-02T10:00:00-04:00",
                      free_trial_started_at="2024-01-02T10:00:00+05:30")
    fetched = http.get(f"/v1/customers/{customer['uuid']}").json()
    event = wait_for_created(listener, customer["uuid"])["customer"]

    for record in (customer, fetched, event):
        assert record["lead_created_at"] == "2024-01-02T14:00:00Z"
        assert record["free_trial_started_at"] == "2024-01-02T04:30:00Z"
    patched = http.patch(f"/v1/customers/{customer['uuid']}", json={"lead_created_at": "2024-03-01T00:00:00+05:30"})
    assert patched.json()["lead_created_at"] == "2024-02-29T18:30:00Z"
    assert http.get(f"/v1/customers/{customer['uuid']}").json()["lead_created_at"] == "2024-02-29T18:30:00Z"


# ---- concurrency ---------------------------------------------------------------------------

def test_a_tag_added_during_a_merge_ends_on_the_survivor_or_is_refused(http, source):
    for _ in range(ROUNDS):
        merged, survivor = create(http, source), create(http, source)
        tag = unique("tag")
        merge, tagging = at_once([
            call(http, "POST", "/v1/customers/merges", {"from": {"customer_uuid": merged["uuid"]},
                                                        "into": {"customer_uuid": survivor["uuid"]}}),
            call(http, "POST", f"/v1/customers/{merged['uuid']}/attributes/tags", {"tags": [tag]}),
        ])
        no_server_errors([merge, tagging])
        assert merge.status_code == 204, merge.text
        after = http.get(f"/v1/customers/{survivor['uuid']}").json()
        if tagging.status_code == 200:
            assert tag in after["attributes"]["tags"]
        else:
            assert 400 <= tagging.status_code < 500
        assert after["external_ids"] == [survivor["external_id"], merged["external_id"]]


def test_chain_merges_at_once_lose_nothing(http, source):
    for _ in range(ROUNDS):
        a, b, c = (create(http, source, attributes={"tags": [f"t{i}"], "custom": [
            {"type": "Integer", "key": f"k{i}", "value": i}]}) for i in range(3))
        first, second = at_once([
            call(http, "POST", "/v1/customers/merges", {"from": {"customer_uuid": a["uuid"]},
                                                        "into": {"customer_uuid": b["uuid"]}}),
            call(http, "POST", "/v1/customers/merges", {"from": {"customer_uuid": b["uuid"]},
                                                        "into": {"customer_uuid": c["uuid"]}}),
        ])
        no_server_errors([first, second])
        assert second.status_code == 204, second.text
        survivor = http.get(f"/v1/customers/{c['uuid']}").json()
        if first.status_code == 204:  # both applied: C holds everything
            assert survivor["external_ids"] == [c["external_id"], a["external_id"], b["external_id"]]
            assert sorted(survivor["attributes"]["tags"]) == ["t0", "t1", "t2"]
            assert survivor["attributes"]["custom"] == {"k0": 0, "k1": 1, "k2": 2}
        else:  # the first was refused: A is untouched
            assert 400 <= first.status_code < 500
            assert http.get(f"/v1/customers/{a['uuid']}").json()["external_ids"] == [a["external_id"]]
            assert set(survivor["external_ids"]) == {c["external_id"], b["external_id"]}
        for customer in (a, b, c):  # every id still names exactly one live customer
            assert len(by_external_id(http, customer["external_id"])) == 1


def test_opposite_merges_at_once_one_wins_the_other_is_a_4xx(http, source):
    for _ in range(ROUNDS):
        a, b = create(http, source), create(http, source)
        responses = at_once([
            call(http, "POST", "/v1/customers/merges", {"from": {"customer_uuid": a["uuid"]},
                                                        "into": {"customer_uuid": b["uuid"]}}),
            call(http, "POST", "/v1/customers/merges", {"from": {"customer_uuid": b["uuid"]},
                                                        "into": {"customer_uuid": a["uuid"]}}),
        ])
        no_server_errors(responses)
        assert sorted(r.status_code // 100 for r in responses) == [2, 4], [r.text for r in responses]
        winner = b if responses[0].status_code == 204 else a
        assert sorted(http.get(f"/v1/customers/{winner['uuid']}").json()["external_ids"]) == sorted(
            [a["external_id"], b["external_id"]])


def test_the_same_tag_and_the_same_new_key_added_at_once_all_succeed(http, source):
    customer = create(http, source)
    path = f"/v1/customers/{customer['uuid']}/attributes"
    tags = at_once([call(http, "POST", f"{path}/tags", {"tags": ["same"]}) for _ in range(20)])
    keys = at_once([call(http, "PUT", f"{path}/custom", {"custom": {"fresh": "v"}}) for _ in range(10)] +
                   [call(http, "POST", f"{path}/custom", {"custom": [{"type": "String", "key": "typed", "value": "v"}]})
                    for _ in range(10)])
    assert [r.status_code for r in tags + keys] == [200] * 40, [r.text for r in tags + keys if r.status_code != 200]
    after = http.get(f"/v1/customers/{customer['uuid']}").json()["attributes"]
    assert after["tags"] == ["same"] and after["custom"] == {"fresh": "v", "typed": "v"}


def test_concurrent_patches_of_different_custom_keys_lose_none(http, source):
    customer = create(http, source)
    responses = at_once([call(http, "PATCH", f"/v1/customers/{customer['uuid']}",
                              {"attributes": {"custom": {f"key{i}": i}}}) for i in range(20)])
    assert [r.status_code for r in responses] == [200] * 20
    custom = http.get(f"/v1/customers/{customer['uuid']}").json()["attributes"]["custom"]
    assert custom == {f"key{i}": i for i in range(20)}


# ---- create with a primary contact: both or neither ---------------------------------------

def contacts_with_external_id(http, source, external_id):
    return http.get("/v1/contacts", params={"data_source_uuid": source, "external_id": external_id}).json()["entries"]


def test_an_invalid_primary_contact_is_a_422_naming_it_and_stores_nothing(http, source):
    external_id = unique("pc")
    response = http.post("/v1/customers", json={"data_source_uuid": source, "external_id": external_id,
                                                "primary_contact": {"email": "not-an-email"}})
    assert response.status_code == 422 and response.json()["param"] == "primary_contact.email", response.text
    assert by_external_id(http, external_id) == []


def test_two_creates_with_one_primary_contact_id_store_one_customer_and_the_retry_succeeds(http, source):
    for _ in range(ROUNDS):
        contact_id = unique("contact")
        keys = [unique("key") for _ in range(2)]
        bodies = [{"data_source_uuid": source, "external_id": unique("pc"),
                   "primary_contact": {"external_id": contact_id, "first_name": "Ada"}} for _ in range(2)]

        def send(index):
            return requests.post(http.base_url + "/v1/customers", json=bodies[index], timeout=30,
                                 auth=(http.api_keys["owner"], ""), headers={"Idempotency-Key": keys[index]})
        with ThreadPoolExecutor(max_workers=2) as pool:
            responses = list(pool.map(send, range(2)))

        assert sorted(r.status_code for r in responses) == [201, 422], [r.text for r in responses]
        loser = 0 if responses[0].status_code == 422 else 1
        assert responses[loser].json()["param"] == "primary_contact.external_id"
        assert by_external_id(http, bodies[loser]["external_id"]) == []
        assert len(contacts_with_external_id(http, source, contact_id)) == 1
        # the loser's customer was discarded, its stored answer too: the same key with a fixed contact works
        retry = http.post("/v1/customers", headers={"Idempotency-Key": keys[loser]}, json={
            **bodies[loser], "primary_contact": {"external_id": unique("contact"), "first_name": "Bo"}})
        assert retry.status_code == 201, retry.text
        assert [c["uuid"] for c in by_external_id(http, bodies[loser]["external_id"])] == [retry.json()["uuid"]]


# ---- idempotency ---------------------------------------------------------------------------

def test_a_create_sent_twice_with_one_idempotency_key_is_stored_once(http, source):
    body = {"data_source_uuid": source, "external_id": unique("idem"), "name": "Once"}
    key = {"Idempotency-Key": unique("key")}
    first = http.post("/v1/customers", json=body, headers=key)
    second = http.post("/v1/customers", json=body, headers=key)
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json()["uuid"] == first.json()["uuid"]
    assert len(by_external_id(http, body["external_id"])) == 1
    other = http.post("/v1/customers", json={**body, "name": "Other"}, headers=key)
    assert other.status_code == 422 and other.json()["param"] == "Idempotency-Key", other.text


def test_a_create_answered_503_then_retried_with_its_key_makes_exactly_one_customer(http, stack, source):
    body = {"data_source_uuid": source, "external_id": unique("late"), "name": "Late"}
    key = {"Idempotency-Key": unique("key")}
    stack.stop_service("customers")
    try:
        unanswered = http.post("/v1/customers", json=body, headers=key)
        assert unanswered.status_code == 503 and "customers" in unanswered.json()["message"]
    finally:
        stack.start_service("customers")
        stack.wait_ready()

    retry = http.post("/v1/customers", json=body, headers=key)

    assert retry.status_code == 201, retry.text
    stored = by_external_id(http, body["external_id"])
    assert [c["uuid"] for c in stored] == [retry.json()["uuid"]]


# ---- consumers of billing_sync's events ----------------------------------------------------

def test_deleting_a_data_source_deletes_its_only_customers_and_strips_merged_ones(http, source):
    doomed = http.post("/v1/data_sources", json={"name": unique("Doomed")}).json()["uuid"]
    only = create(http, doomed)
    kept = create(http, source)
    merged = create(http, doomed)
    assert http.post("/v1/customers/merges", json={"from": {"customer_uuid": merged["uuid"]},
                                                   "into": {"customer_uuid": kept["uuid"]}}).status_code == 204

    assert http.delete(f"/v1/data_sources/{doomed}", role="admin").status_code == 204

    eventually(lambda: http.get(f"/v1/customers/{only['uuid']}").status_code == 404)
    survivor = eventually(lambda: (lambda c: c if c["data_source_uuids"] == [source] else None)(
        http.get(f"/v1/customers/{kept['uuid']}").json()))
    assert survivor["external_ids"] == [kept["external_id"]]
    assert http.get("/v1/customers", params={"data_source_uuid": doomed}).json()["entries"] == []


def metrics_event(customer_uuid, sequence, event_id=None, **fields):
    return {"event_id": event_id or str(uuid.uuid4()), "occurred_at": "2024-05-01T10:00:00Z", "version": 1,
            "customer_uuid": customer_uuid, "sequence": sequence, "mrr": 1000 * sequence, "arr": 12000 * sequence,
            "status": "Active", "customer_since": "2024-01-02T10:00:00-04:00", "net_payments": 500,
            "currency": "EUR", **fields}


def test_the_billing_projection_shows_on_the_customer_and_redelivery_changes_nothing(http, source, amqp_uri):
    customer = create(http, source, status="Working Lead")
    sentinel = create(http, source)
    dispatch = event_dispatcher({"AMQP_URI": amqp_uri})
    first = metrics_event(customer["uuid"], 1)
    dispatch("billing_sync", "customer_metrics_changed", first)
    dispatch("billing_sync", "customer_metrics_changed", metrics_event(customer["uuid"], 2, status="Past Due"))
    applied = eventually(lambda: (lambda c: c if c["mrr"] == 2000 else None)(
        http.get(f"/v1/customers/{customer['uuid']}").json()))

    for _ in range(2):  # the first event again (same event_id), and an older sequence
        dispatch("billing_sync", "customer_metrics_changed", first)
    dispatch("billing_sync", "customer_metrics_changed", metrics_event(customer["uuid"], 1, mrr=5))
    dispatch("billing_sync", "customer_metrics_changed", metrics_event(sentinel["uuid"], 1))
    eventually(lambda: http.get(f"/v1/customers/{sentinel['uuid']}").json()["mrr"] == 1000)
    time.sleep(1)  # handlers run concurrently: give the redeliveries time to be (not) applied

    after = http.get(f"/v1/customers/{customer['uuid']}").json()
    assert after == applied
    assert (after["mrr"], after["arr"], after["status"], after["currency"]) == (2000, 24000, "Past Due", "EUR")
    assert after["customer-since"] == "2024-01-02T14:00:00Z" and after["billing-system-url"] is None

    dispatch("billing_sync", "customer_metrics_changed", metrics_event(customer["uuid"], 3, status=None, mrr=0))
    assert eventually(lambda: http.get(f"/v1/customers/{customer['uuid']}").json()["status"] == "Working Lead")
