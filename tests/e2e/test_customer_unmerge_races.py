"""Unmerges racing merges and other unmerges through the gateway: every outcome is consistent or
refused with a 4xx, never a 5xx, and every external id names exactly one live customer after.
Run on SQLite and PostgreSQL (DATABASE_URL=postgresql://...), where the row locks do the work."""
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from tests.e2e.support import unique

ROUNDS = 4


@pytest.fixture(scope="module")
def source(http):
    return http.post("/v1/data_sources", json={"name": unique("unmerge-races")}).json()["uuid"]


def create(http, source, **fields):
    response = http.post("/v1/customers", json={"data_source_uuid": source, "external_id": unique(), **fields})
    assert response.status_code == 201, response.text
    return response.json()


def merge(http, from_customer, into_customer):
    response = http.post("/v1/customers/merges", json={"from": {"customer_uuid": from_customer["uuid"]},
                                                       "into": {"customer_uuid": into_customer["uuid"]}})
    assert response.status_code == 204, response.text


def merge_call(http, from_customer, into_customer):
    return call(http, "/v1/customers/merges", {"from": {"customer_uuid": from_customer["uuid"]},
                                               "into": {"customer_uuid": into_customer["uuid"]}})


def unmerge_call(http, source, customer, external_id):
    return call(http, "/v1/customers/unmerges", {"customer_uuid": customer["uuid"], "data_source_uuid": source,
                                                 "external_id": external_id})


def call(http, path, body):
    return ("POST", http.base_url + path, body, (http.api_keys["owner"], ""))


def at_once(calls):
    """Run the calls concurrently, each on its own connection; return the responses in order."""
    def send(one):
        method, url, body, auth = one
        return requests.request(method, url, json=body, auth=auth, timeout=30)
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        responses = list(pool.map(send, calls))
    assert all(response.status_code < 500 for response in responses), [r.text for r in responses]
    return responses


def holders(http, external_id) -> list[str]:
    return [c["uuid"] for c in http.get("/v1/customers", params={"external_id": external_id}).json()["entries"]]


def ids_of(http, customer) -> list[str]:
    return http.get(f"/v1/customers/{customer['uuid']}").json()["external_ids"]


def test_the_same_unmerge_twice_at_once_makes_one_customer(http, source):
    for _ in range(ROUNDS):
        gone, survivor = create(http, source), create(http, source)
        merge(http, gone, survivor)

        responses = at_once([unmerge_call(http, source, survivor, gone["external_id"])] * 2)

        assert sorted(r.status_code for r in responses) == [202, 422], [r.text for r in responses]
        [new] = holders(http, gone["external_id"])
        assert new not in (gone["uuid"], survivor["uuid"])
        assert ids_of(http, survivor) == [survivor["external_id"]]


def test_two_unmerges_of_different_ids_at_once_both_land(http, source):
    for _ in range(ROUNDS):
        first, second, survivor = create(http, source), create(http, source), create(http, source)
        merge(http, first, survivor)
        merge(http, second, survivor)

        responses = at_once([unmerge_call(http, source, survivor, first["external_id"]),
                             unmerge_call(http, source, survivor, second["external_id"])])

        assert [r.status_code for r in responses] == [202, 202], [r.text for r in responses]
        assert ids_of(http, survivor) == [survivor["external_id"]]
        news = {holders(http, first["external_id"])[0], holders(http, second["external_id"])[0]}
        assert len(news) == 2 and survivor["uuid"] not in news


def test_an_unmerge_racing_a_merge_of_that_customer_away_ends_consistent_or_is_refused(http, source):
    for _ in range(ROUNDS):
        gone, survivor, last = create(http, source), create(http, source), create(http, source)
        merge(http, gone, survivor)

        unmerge, onward = at_once([unmerge_call(http, source, survivor, gone["external_id"]),
                                   merge_call(http, survivor, last)])

        assert onward.status_code == 204, onward.text
        if unmerge.status_code == 202:  # the unmerge went first: the id left before the merge took the rest
            assert ids_of(http, last) == [last["external_id"], survivor["external_id"]]
            [new] = holders(http, gone["external_id"])
            assert new not in (gone["uuid"], survivor["uuid"], last["uuid"])
        else:  # the customer was merged away meanwhile: refused, and nothing of it applied
            assert unmerge.status_code in (404, 409), unmerge.text
            assert ids_of(http, last) == [last["external_id"], gone["external_id"], survivor["external_id"]]
        for customer in (gone, survivor, last):
            assert len(holders(http, customer["external_id"])) == 1


def test_an_unmerge_racing_a_merge_into_that_customer_keeps_both(http, source):
    for _ in range(ROUNDS):
        gone, survivor, joining = create(http, source), create(http, source), create(http, source)
        merge(http, gone, survivor)

        unmerge, joined = at_once([unmerge_call(http, source, survivor, gone["external_id"]),
                                   merge_call(http, joining, survivor)])

        assert (unmerge.status_code, joined.status_code) == (202, 204), [unmerge.text, joined.text]
        assert ids_of(http, survivor) == [survivor["external_id"], joining["external_id"]]
        assert holders(http, gone["external_id"]) != [survivor["uuid"]]
