"""The pure parts of the web page's live updates and customer search: which events concern which
customer and what the page re-fetches, stream tokens, SSE frames, and the search scan."""
import json

import pytest

from gateway import live

CUS = "cus_de305d54-75b4-431b-adb2-eb6b9e546012"
OTHER = "cus_0a1b2c3d-0000-4000-8000-000000000002"


# ---- which customers an event concerns ----------------------------------------------------------

@pytest.mark.parametrize("source, event, payload", [
    ("customers", "customer_updated", {"uuid": CUS, "changes": {"name": "A"}}),
    ("customers", "customer_created", {"uuid": CUS, "customer": {}}),
    ("customers", "customer_deleted", {"uuid": CUS}),
    ("contacts", "contact_created", {"uuid": "con_1", "customer_uuid": CUS}),
    ("contacts", "contact_deleted", {"uuid": "con_1", "customer_uuid": CUS}),
    ("activities", "activity_recorded", {"customer_uuid": CUS, "activity": {"type": "call"}}),
    ("billing_sync", "customer_metrics_changed", {"customer_uuid": CUS, "sequence": 3}),
    ("billing_sync", "mrr_movement_recorded", {"customer_uuid": CUS, "movement": {}}),
    ("billing_sync", "transaction_recorded", {"customer_uuid": CUS, "transaction": {}}),
    ("avatars", "avatar_resolved", {"customer_uuid": CUS, "source": "initials"}),
])
def test_an_event_concerns_the_customer_it_names(source, event, payload):
    assert live.customers_concerned(source, event, payload) == [CUS]


def test_a_merge_concerns_both_customers():
    payload = {"from_uuid": OTHER, "into_uuid": CUS}
    assert live.customers_concerned("customers", "customer_merged", payload) == [OTHER, CUS]


@pytest.mark.parametrize("source, event, payload", [
    ("customers", "customer_updated", {"changes": {}}),            # no uuid
    ("customers", "customer_updated", {"uuid": 42}),               # not a string
    ("customers", "customer_updated", "not a dict"),
    ("billing_sync", "data_source_created", {"data_source": {}}),  # not about a customer
    ("billing_sync", "customer_metrics_changed", {"customer_uuid": ""}),
])
def test_an_event_naming_no_customer_concerns_none(source, event, payload):
    assert live.customers_concerned(source, event, payload) == []


def test_the_message_says_what_to_refetch():
    payload = {"event_id": "e-1", "occurred_at": "2024-01-02T14:00:00Z", "uuid": CUS}
    message = live.live_message("customers", "customer_updated", payload, CUS)
    assert message == {"event": "customers.customer_updated", "customer_uuid": CUS, "event_id": "e-1",
                       "occurred_at": "2024-01-02T14:00:00Z", "refresh": ["customer", "metrics"]}


def test_a_customer_update_names_the_revision_a_fresh_copy_must_have():
    payload = {"uuid": CUS, "changes": {}, "updated_at": "2024-05-02T08:30:00.000001Z"}
    assert live.live_message("customers", "customer_updated", payload, CUS)["revision"] == payload["updated_at"]
    assert "revision" not in live.live_message("customers", "customer_updated", {"uuid": CUS}, CUS)


def test_billing_changes_refresh_the_subscriptions_tab_and_the_header():
    refresh = live.live_message("billing_sync", "customer_metrics_changed", {"customer_uuid": CUS}, CUS)["refresh"]
    assert {"metrics", "billing", "customer"} <= set(refresh)
    assert live.live_message("activities", "activity_recorded", {}, CUS)["refresh"][0] == "activities"


def test_the_merged_away_page_is_told_where_the_customer_went():
    payload = {"from_uuid": OTHER, "into_uuid": CUS}
    away = live.live_message("customers", "customer_merged", payload, OTHER)
    survivor = live.live_message("customers", "customer_merged", payload, CUS)
    assert away["merged_into"] == CUS and away["refresh"] == []
    assert "merged_into" not in survivor and set(survivor["refresh"]) == set(live.EVERYTHING)


def test_a_deleted_customer_is_said_so():
    assert live.live_message("customers", "customer_deleted", {"uuid": CUS}, CUS)["deleted"] is True


def test_every_role_reads_every_live_event_and_unknown_ones_are_refused():
    for role in ("read_only", "staff", "admin", "owner"):
        assert all(live.may_read(role, source, event) for source, event in live.LIVE_EVENTS)
    assert not live.may_read("read_only", "billing_sync", "data_source_created")
    assert not live.may_read("nobody", "customers", "customer_updated")


# ---- tokens -------------------------------------------------------------------------------------

SECRET = live.token_secret("k1:owner,k2:read_only")


def grant(**changes):
    fields = {"customer_uuid": CUS, "role": "read_only", "expires_at": 1_000_060, **changes}
    return live.StreamGrant(**fields)


def test_a_token_carries_its_grant():
    token = live.make_token(grant(), SECRET)
    assert live.read_token(token, SECRET, customer_uuid=CUS, now=1_000_000) == grant()
    assert "k1" not in token and "k2" not in token


@pytest.mark.parametrize("token, why", [
    (None, "missing"), ("", "missing"), ("abc", "malformed"), ("a.b.c", "malformed"), ("x" * 2000, "malformed"),
])
def test_a_malformed_token_is_refused(token, why):
    with pytest.raises(live.BadToken, match=why):
        live.read_token(token, SECRET, customer_uuid=CUS, now=1_000_000)


def test_a_token_is_good_for_its_customer_only_and_until_it_expires():
    token = live.make_token(grant(), SECRET)
    with pytest.raises(live.BadToken, match="another customer"):
        live.read_token(token, SECRET, customer_uuid=OTHER, now=1_000_000)
    with pytest.raises(live.BadToken, match="expired"):
        live.read_token(token, SECRET, customer_uuid=CUS, now=1_000_061)


def test_a_forged_or_altered_token_is_refused():
    token = live.make_token(grant(role="read_only"), SECRET)
    body, signature = token.split(".")
    promoted = live.make_token(grant(role="owner"), b"someone else's secret")
    with pytest.raises(live.BadToken, match="not signed"):
        live.read_token(promoted, SECRET, customer_uuid=CUS, now=1_000_000)
    with pytest.raises(live.BadToken, match="not signed"):
        live.read_token(promoted.split(".")[0] + "." + signature, SECRET, customer_uuid=CUS, now=1_000_000)


def test_changing_the_api_keys_ends_every_token():
    token = live.make_token(grant(), SECRET)
    with pytest.raises(live.BadToken, match="not signed"):
        live.read_token(token, live.token_secret("k1:owner"), customer_uuid=CUS, now=1_000_000)
    assert live.token_secret("anything", "configured") == b"configured"


# ---- frames -------------------------------------------------------------------------------------

def test_a_frame_is_one_event_with_its_json_on_one_line():
    frame = live.sse_frame({"text": "two\nlines"}, event="change", event_id="e\n1").decode()
    assert frame.endswith("\n\n")
    lines = frame[:-2].split("\n")
    assert lines[0] == "event: change" and lines[1] == "id: e 1"
    assert json.loads(lines[2].removeprefix("data: ")) == {"text": "two\nlines"}
    assert live.sse_comment("heartbeat\nx") == b": heartbeat x\n\n"
