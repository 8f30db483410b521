"""The customers service's methods on a real SQLite database, with the hand-written fake of fakes.py for
what lies outside it (the billing_sync service); events are read back from the outbox."""
import pytest

from roster import pagination
from roster.errors import NotFound, UnprocessableEvent, ValidationFailed
from roster.testing import as_handler, recorded, recorded_fields, unit_of_work, with_idempotency_key
from roster.uow import AlreadyHandled, Replay
from services.customers import commands
from services.customers.models import UNIQUE_RULES, Base, bookkeeping
from tests.unit.customers.fakes import SOURCE, FakeBilling


def events(service, event_type=None):
    return recorded_fields(service.uow, event_type)


def create(service, external_id="e1", **fields):
    return service.create_customer({"data_source_uuid": SOURCE, "external_id": external_id, **fields})


def test_create_stores_the_customer_and_records_customer_created(service):
    customer = create(service, name="Acme", email="A@Acme.io", website_url="acme.io", country="de",
                      attributes={"tags": ["vip"], "custom": [{"type": "Integer", "key": "seats", "value": "4"}]})

    assert service.get_customer(customer["uuid"]) == customer
    assert customer["website_url"] == "https://acme.io" and customer["status"] == "New Lead"
    assert customer["country"] == "DE"
    assert customer["attributes"]["custom"] == {"seats": 4}
    assert events(service, "customer_created") == [{"customer": customer, "reason": "created"}]


def test_create_in_an_unknown_data_source_is_a_422_that_stores_nothing(service):
    with pytest.raises(ValidationFailed) as failure:
        service.create_customer({"data_source_uuid": "ds_nope", "external_id": "e1"})
    assert failure.value.param == "data_source_uuid"
    assert service.list_customers({})["entries"] == [] and events(service) == []


def test_a_duplicate_external_id_is_refused_and_a_bad_attribute_rolls_back(service):
    create(service, "e1")
    with pytest.raises(ValidationFailed):
        create(service, "e1")
    with pytest.raises(ValidationFailed):
        create(service, "e2", attributes={"custom": [{"type": "Integer", "key": "n", "value": "x"}]})
    assert [c["external_id"] for c in service.list_customers({})["entries"]] == ["e1"]


def test_list_pages_by_keyset_and_filters(service):
    made = [create(service, f"e{i}", email=f"p{i}@x.io") for i in range(5)]
    first = service.list_customers({}, None, 2)
    rest = service.list_customers({}, first["cursor"], 10)
    assert [c["uuid"] for c in first["entries"] + rest["entries"]] == [c["uuid"] for c in made]
    assert first["has_more"] and not rest["has_more"] and rest["cursor"] is None
    assert [c["uuid"] for c in service.list_customers({"email": "P3@X.IO"})["entries"]] == [made[3]["uuid"]]
    assert service.list_customers({"status": "new_lead"})["entries"][0]["uuid"] == made[0]["uuid"]


def test_update_records_only_the_changed_fields(service):
    customer = create(service, name="Old")
    updated = service.update_customer(customer["uuid"], {"name": "New", "company": ""})
    assert events(service, "customer_updated") == [
        {"uuid": customer["uuid"], "changes": {"name": "New"}, "updated_at": updated["updated_at"]}]
    assert updated["updated_at"] > customer["updated_at"]  # the record's revision moved on


def test_merge_moves_ids_tags_and_attributes_and_deletes_the_loser(service):
    into = create(service, "a", attributes={"tags": ["t1"], "custom": [{"type": "String", "key": "k", "value": "a"}]})
    loser = create(service, "b", attributes={"tags": ["t2"], "custom": [{"type": "String", "key": "k", "value": "b"},
                                                                      {"type": "Boolean", "key": "pro", "value": True}]})

    merge = service.merge_customers({"data_source_uuid": SOURCE, "external_id": "b"}, {"customer_uuid": into["uuid"]})

    survivor = merge["into"]
    assert survivor["external_ids"] == ["a", "b"] and survivor["attributes"]["tags"] == ["t1", "t2"]
    assert survivor["attributes"]["custom"] == {"k": "a", "pro": True}
    with pytest.raises(NotFound):
        service.get_customer(loser["uuid"])
    merged_event = events(service, "customer_merged")[0]
    assert (merged_event["from_uuid"], merged_event["into_uuid"]) == (loser["uuid"], into["uuid"])


def test_delete_records_the_ids_subscribers_need(service):
    customer = create(service, "gone")
    service.delete_customer(customer["uuid"])
    assert events(service, "customer_deleted") == [
        {"uuid": customer["uuid"], "external_ids": ["gone"], "data_source_uuids": [SOURCE], "reason": "deleted"}]
    with pytest.raises(NotFound):
        service.delete_customer(customer["uuid"])


def test_tags_and_custom_attributes_by_email_reach_every_customer_with_it(service):
    create(service, "x1", email="team@x.io")
    create(service, "x2", email="Team@X.io")
    tagged = service.add_tags_by_email("team@x.io", ["shared"])
    assert [c["attributes"]["tags"] for c in tagged] == [["shared"], ["shared"]]
    with pytest.raises(NotFound):
        service.add_tags_by_email("nobody@x.io", ["x"])


def history(service, uuid, asked="custom.plan,custom.seats"):
    return service.get_customer(uuid, False, asked)["historical_values"]["custom"]


def test_custom_attribute_values_are_kept_with_who_set_them_and_answered_when_asked(service):
    customer = create(service, attributes={"custom": [{"type": "String", "key": "plan", "value": "free"}]})
    uuid = customer["uuid"]
    assert "historical_values" not in service.get_customer(uuid)
    service.update_custom_attributes(uuid, {"plan": "pro"})
    service.update_custom_attributes(uuid, {"plan": "pro"})  # the same value: no change to remember
    service.add_custom_attributes(uuid, [{"type": "Integer", "key": "seats", "value": 4, "source": "Salesforce"}])
    service.remove_custom_attributes(uuid, ["plan"])

    found = history(service, uuid)
    assert [(v["value"], v["update_performed_by"], v["initial"]) for v in found["plan"]] == [
        ("free", "API", True), ("pro", "API", False), (None, "API", False)]
    assert [(v["value"], v["update_performed_by"], v["initial"]) for v in found["seats"]] == [(4, "Salesforce", True)]
    assert all(v["update_performed_at"].endswith("Z") for v in found["plan"])
    assert history(service, uuid, "custom.Plan") == {"Plan": []}  # keys are case-sensitive


def test_only_the_latest_values_are_answered_oldest_first(service, monkeypatch):
    from services.customers import domain

    monkeypatch.setattr(domain, "HISTORY_VALUES_MAX", 3)
    uuid = create(service)["uuid"]
    for n in range(6):
        service.update_custom_attributes(uuid, {"plan": f"v{n}"})
    assert [v["value"] for v in history(service, uuid, "custom.plan")["plan"]] == ["v3", "v4", "v5"]


@pytest.mark.parametrize("asked", ["", "tags", "custom.", "custom.a b", "stripe.plan", "custom.x,tags",
                                   ",".join(f"custom.k{n}" for n in range(51))])
def test_a_history_request_that_names_no_custom_attribute_is_a_422(service, asked):
    uuid = create(service)["uuid"]
    with pytest.raises(ValidationFailed) as refused:
        service.get_customer(uuid, False, asked)
    assert refused.value.param == "attributes_with_history"


# ---- rules enforced by the service itself (issue 6 item 6) --------------------------------

@pytest.mark.parametrize("fields, param", [
    ({"country": "GERMANY"}, "country"), ({"email": "not-an-email"}, "email"),
    ({"lead_created_at": "2999-01-01"}, "lead_created_at"), ({"owner": "o" * 321}, "owner"),
    ({"name": "nul\x00"}, "name"),
    ({"attributes": {"custom": [{"type": "Integer", "key": "n", "value": "100000000000000000000"}]}}, "custom.n"),
    ({"attributes": {"custom": [{"type": "Decimal", "key": "d", "value": "1e30"}]}}, "custom.d"),
    ({"attributes": {"custom": [{"type": "String", "key": "s", "value": "x" * 10_000}]}}, "custom.s"),
    ({"attributes": {"tags": [f"t{i}" for i in range(101)]}}, "tags"),
])
def test_create_over_rpc_enforces_every_rule_and_stores_nothing(service, fields, param):
    with pytest.raises(ValidationFailed) as failure:
        create(service, **fields)
    assert failure.value.param == param
    assert service.list_customers({})["entries"] == [] and events(service) == []


def test_offset_timestamps_are_stored_answered_and_published_in_utc(service):
    customer = create(service, lead_created_at="2024-01-02T10:00:00-04:00",
                      free_trial_started_at="2024-01-02T10:00:00+05:30")
    assert (customer["lead_created_at"], customer["free_trial_started_at"]) == (
        "2024-01-02T14:00:00Z", "2024-01-02T04:30:00Z")
    assert service.get_customer(customer["uuid"]) == customer
    assert events(service, "customer_created")[0]["customer"] == customer


def test_tag_and_attribute_commands_by_uuid_and_by_email_are_one_code_path(service):
    one = create(service, "a", email="team@x.io")
    create(service, "b", email="team@x.io")
    assert service.add_tags(one["uuid"], ["x"]) == ["x"]
    assert [c["attributes"]["tags"] for c in service.add_tags_by_email("TEAM@x.io", ["x", "y"])] == [
        ["x", "y"], ["x", "y"]]
    with pytest.raises(ValidationFailed) as failure:
        service.add_custom_attributes_by_email("team@x.io", [{"type": "Integer", "key": "n", "value": 2**64}])
    assert failure.value.param == "custom.n"
    assert service.add_custom_attributes(one["uuid"], [{"type": "Integer", "key": "n", "value": 1}]) == {"n": 1}
    assert [c["attributes"]["custom"] for c in service.update_custom_attributes_by_email("team@x.io", {"n": 2})] == [
        {"n": 2}, {"n": 2}]
    assert service.remove_custom_attributes(one["uuid"], ["n"]) == {}
    with pytest.raises(NotFound):
        service.add_tags("cus_\x00", ["x"])


def test_a_subscriber_keeps_its_billing_status_and_tag_changes_bump_updated_at(service):
    customer = create(service)
    tagged = service.update_customer(customer["uuid"], {"attributes": {"tags": ["a"]}})
    assert tagged["updated_at"] >= customer["updated_at"] and tagged["attributes"]["tags"] == ["a"]
    assert events(service, "customer_updated")[-1]["changes"] == {"attributes": tagged["attributes"]}


# ---- merges ---------------------------------------------------------------------------------

def test_the_survivor_keeps_its_own_external_id_first(service):
    older = create(service, "old-A")
    newer = create(service, "new-B")
    merge = service.merge_customers({"customer_uuid": older["uuid"]}, {"customer_uuid": newer["uuid"]})
    assert merge["into"]["external_id"] == "new-B" and merge["into"]["external_ids"] == ["new-B", "old-A"]
    assert service.get_customer(newer["uuid"]) == merge["into"]
    assert events(service, "customer_merged")[0]["into_external_id"] == "new-B"


def test_a_chain_of_merges_ends_with_every_id_tag_and_attribute_on_the_last(service):
    a = create(service, "a", attributes={"tags": ["ta"], "custom": [{"type": "String", "key": "ka", "value": "a"}]})
    b = create(service, "b", attributes={"tags": ["tb"]})
    c = create(service, "c")
    service.merge_customers({"customer_uuid": a["uuid"]}, {"customer_uuid": b["uuid"]})
    survivor = service.merge_customers({"customer_uuid": b["uuid"]}, {"customer_uuid": c["uuid"]})["into"]
    assert survivor["external_ids"] == ["c", "a", "b"]
    assert survivor["attributes"]["tags"] == ["tb", "ta"] and survivor["attributes"]["custom"] == {"ka": "a"}
    with pytest.raises(ValidationFailed) as failure:  # the opposite merge's loser: a 4xx
        service.merge_customers({"customer_uuid": c["uuid"]}, {"customer_uuid": a["uuid"]})
    assert failure.value.param == "into.customer_uuid"


# ---- consumers of billing_sync's events ----------------------------------------------------

def data_source_deleted(uuid=SOURCE):
    return {"event_id": "ev-ds", "occurred_at": "2024-01-01T00:00:00Z", "version": 1, "uuid": uuid,
            "name": "Imports", "system": "Import API"}


def test_a_deleted_data_source_deletes_its_only_customers_and_strips_merged_ones(tmp_path):
    uow = unit_of_work(Base, bookkeeping, tmp_path, unique_rules=UNIQUE_RULES)
    other = "ds_other"
    billing = FakeBilling()
    billing.get_data_source = lambda uuid: {"uuid": uuid, "system": "Import API"}
    only = commands.create_customer(uow, {"data_source_uuid": SOURCE, "external_id": "only"}, billing=billing)
    kept = commands.create_customer(uow, {"data_source_uuid": other, "external_id": "kept"}, billing=billing)
    gone = commands.create_customer(uow, {"data_source_uuid": SOURCE, "external_id": "merged"}, billing=billing)
    commands.merge_customers(uow, {"customer_uuid": gone["uuid"]}, {"customer_uuid": kept["uuid"]})

    commands.on_data_source_deleted(as_handler(uow, "handle_data_source_deleted", data_source_deleted()),
                                    data_source_deleted())

    assert [c["uuid"] for c in commands.list_customers(uow, {})["entries"]] == [kept["uuid"]]
    assert commands.get_customer(uow, kept["uuid"])["external_ids"] == ["kept"]
    deleted = recorded_fields(uow, "customer_deleted")
    assert deleted == [{"uuid": only["uuid"], "external_ids": ["only"], "data_source_uuids": [SOURCE],
                        "reason": "data_source_deleted"}]
    assert recorded_fields(uow, "customer_updated")[-1]["changes"]["data_source_uuids"] == [other]


def metrics(uuid, sequence, event_id=None, **fields):
    return {"event_id": event_id or f"ev-{sequence}", "occurred_at": "2024-01-01T00:00:00Z", "version": 1,
            "customer_uuid": uuid, "sequence": sequence, "mrr": 1000, "arr": 12000, "status": "Active",
            "customer_since": "2024-01-02T10:00:00-04:00", "net_payments": 2500, "currency": "EUR", **fields}


def project(uow, payload):
    commands.on_customer_metrics_changed(as_handler(uow, "handle_customer_metrics_changed", payload), payload)


def test_the_billing_projection_applies_newer_sequences_only_and_restores_the_lead_status(tmp_path):
    uow = unit_of_work(Base, bookkeeping, tmp_path, unique_rules=UNIQUE_RULES)
    customer = commands.create_customer(uow, {"data_source_uuid": SOURCE, "external_id": "m",
                                              "status": "Working Lead"}, billing=FakeBilling())
    uuid = customer["uuid"]

    project(uow, metrics(uuid, 2))
    active = commands.get_customer(uow, uuid)
    project(uow, metrics(uuid, 1, mrr=1, status="Cancelled"))  # older: ignored
    project(uow, metrics(uuid, 2, event_id="ev-again", mrr=1))  # not newer: ignored
    assert commands.get_customer(uow, uuid) == active
    assert (active["mrr"], active["arr"], active["net_payments"], active["currency"]) == (1000, 12000, 2500, "EUR")
    assert active["status"] == "Active" and active["customer_since"] == "2024-01-02T14:00:00Z"
    with pytest.raises(ValidationFailed):
        commands.update_customer(uow, uuid, {"status": "Qualified Lead"})

    project(uow, metrics(uuid, 3, status=None, mrr=0, arr=0))
    assert commands.get_customer(uow, uuid)["status"] == "Working Lead"
    assert len(recorded(uow, "customer_updated")) == 2


def test_the_projection_announces_the_metrics_alone_and_keeps_ids_tags_and_attributes(tmp_path):
    uow = unit_of_work(Base, bookkeeping, tmp_path, unique_rules=UNIQUE_RULES)
    uuid = commands.create_customer(uow, {"data_source_uuid": SOURCE, "external_id": "m", "attributes": {
        "tags": ["vip"], "custom": [{"type": "Integer", "key": "seats", "value": 4}]}}, billing=FakeBilling())["uuid"]
    project(uow, metrics(uuid, 1))
    [event] = recorded_fields(uow, "customer_updated")
    assert event["uuid"] == uuid and event["changes"] == {
        "mrr": 1000, "arr": 12000, "net_payments": 2500, "status": "Active",
        "customer_since": "2024-01-02T14:00:00Z", "currency": "EUR"}
    after = commands.get_customer(uow, uuid)
    assert (after["external_ids"], after["attributes"]["tags"], after["attributes"]["custom"]) == (
        ["m"], ["vip"], {"seats": 4})
    for unknown in ("cus_00000000-0000-4000-8000-000000000000", "not a uuid"):  # gone, or never was
        project(uow, metrics(unknown, 2, event_id=f"ev-{unknown}"))
    assert len(recorded(uow, "customer_updated")) == 1


def test_a_redelivered_projection_event_changes_nothing(tmp_path):
    uow = unit_of_work(Base, bookkeeping, tmp_path, unique_rules=UNIQUE_RULES)
    uuid = commands.create_customer(uow, {"data_source_uuid": SOURCE, "external_id": "m"}, billing=FakeBilling())["uuid"]
    first = metrics(uuid, 5)
    project(uow, first)
    applied = commands.get_customer(uow, uuid)
    project(uow, metrics(uuid, 6, event_id="ev-6", mrr=7))
    for _ in range(2):  # the same event_id twice more: the first application is not redone
        with pytest.raises(AlreadyHandled):
            project(uow, first)
    assert commands.get_customer(uow, uuid)["mrr"] == 7 and applied["mrr"] == 1000
    assert len(recorded(uow, "customer_updated")) == 2


def test_a_projection_event_that_can_never_apply_is_unprocessable(tmp_path):
    uow = unit_of_work(Base, bookkeeping, tmp_path, unique_rules=UNIQUE_RULES)
    uuid = commands.create_customer(uow, {"data_source_uuid": SOURCE, "external_id": "m"}, billing=FakeBilling())["uuid"]
    for bad in (metrics(uuid, 1, status="Sleeping"), metrics(uuid, "x"), metrics(uuid, 1, mrr=2**70)):
        with pytest.raises(UnprocessableEvent):
            project(uow, bad)


# ---- idempotency and the primary-contact compensation -------------------------------------

def test_a_create_retried_with_its_idempotency_key_is_answered_not_repeated(tmp_path):
    uow = unit_of_work(Base, bookkeeping, tmp_path, unique_rules=UNIQUE_RULES)
    data = {"data_source_uuid": SOURCE, "external_id": "idem"}
    first = commands.create_customer(with_idempotency_key(uow, "k1", "f1"), data, billing=FakeBilling())
    try:
        commands.create_customer(with_idempotency_key(uow, "k1", "f1"), data, billing=FakeBilling())
    except Replay as replay:
        assert replay.result == first
    else:
        raise AssertionError("the retry ran again")
    with pytest.raises(ValidationFailed) as failure:
        commands.create_customer(with_idempotency_key(uow, "k1", "other body"), data, billing=FakeBilling())
    assert failure.value.param == "Idempotency-Key"
    assert len(commands.list_customers(uow, {})["entries"]) == 1


def test_a_discarded_create_forgets_its_answer_so_the_retry_creates_again(tmp_path):
    uow = unit_of_work(Base, bookkeeping, tmp_path, unique_rules=UNIQUE_RULES)
    data = {"data_source_uuid": SOURCE, "external_id": "pc"}
    def keyed(command):
        return with_idempotency_key(uow, "k2", command=command)

    first = commands.create_customer(keyed("create_customer"), data, billing=FakeBilling())
    commands.discard_customer(keyed("discard_customer"), first["uuid"])
    again = commands.create_customer(keyed("create_customer"), data, billing=FakeBilling())
    assert again["uuid"] != first["uuid"] and again["external_id"] == "pc"
    assert recorded_fields(uow, "customer_deleted")[0]["reason"] == "create_abandoned"
    assert [c["uuid"] for c in commands.list_customers(uow, {})["entries"]] == [again["uuid"]]


# ---- pages stay within their byte budget ---------------------------------------------------

def test_a_page_stops_at_its_byte_budget_and_the_cursor_resumes_after_it(service, monkeypatch):
    big = [{"type": "String", "key": f"k{i}", "value": "v" * 255} for i in range(40)]
    made = [create(service, f"big{i}", attributes={"custom": big}) for i in range(5)]
    monkeypatch.setattr(pagination, "PAGE_BYTES", 25_000)  # about two of these customers

    seen, cursor, pages = [], None, 0
    while True:
        page = service.list_customers({}, cursor, 200)
        seen += [c["uuid"] for c in page["entries"]]
        pages += 1
        if not page["has_more"]:
            break
        cursor = page["cursor"]

    assert seen == [c["uuid"] for c in made] and pages >= 3


def test_q_finds_customers_by_part_of_their_name_company_or_email_ignoring_case_and_spacing(service):
    made = {
        "acme": create(service, "q1", name="The  Acme Corp"),
        "company": create(service, "q2", name="Jo", company="ACME corp Ltd"),
        "email": create(service, "q3", name="Jane", email="Jane@Acme-Corp.example"),
        "other": create(service, "q4", name="Wonka", company="Chocolate 100%_Co"),
    }
    found = service.list_customers({"q": "  acme   CORP "})["entries"]
    assert [c["uuid"] for c in found] == [made["acme"]["uuid"], made["company"]["uuid"]]
    assert [c["uuid"] for c in service.list_customers({"q": "jane@acme"})["entries"]] == [made["email"]["uuid"]]
    assert [c["uuid"] for c in service.list_customers({"q": "100%_"})["entries"]] == [made["other"]["uuid"]]
    assert service.list_customers({"q": "choc%co"})["entries"] == []  # LIKE wildcards are literal
    service.update_customer(made["other"]["uuid"], {"name": "Ümlaut Straße"})
    assert [c["uuid"] for c in service.list_customers({"q": "umlaut"})["entries"]] == []
    assert [c["uuid"] for c in service.list_customers({"q": "STRASSE"})["entries"]] == [made["other"]["uuid"]]
    with pytest.raises(ValidationFailed) as failure:
        service.list_customers({"q": "x" * 201})
    assert failure.value.param == "q"


def test_only_events_that_can_call_for_a_duplicate_merge_reach_the_merge_handler():
    assert commands.may_have_duplicate({"customer": {"uuid": "cus_1", "email": "a@example.com"}, "reason": "created"})
    assert not commands.may_have_duplicate({"customer": {"uuid": "cus_1", "email": ""}, "reason": "created"})
    assert not commands.may_have_duplicate({"customer": {"uuid": "cus_1", "email": "a@example.com"},
                                            "reason": "unmerged"})
    assert commands.may_have_duplicate({"uuid": "cus_1", "changes": {"email": "b@example.com"}})
    assert not commands.may_have_duplicate({"uuid": "cus_1", "changes": {"name": "B"}})
