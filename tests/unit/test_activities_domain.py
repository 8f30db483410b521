"""Activity rules (services/activities/domain.py): fields, associations, feed types, filters, billing events."""
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from roster.errors import BadRequest, UnprocessableEvent, ValidationFailed
from services.activities import domain


def fails(field, call, *args, **kwargs):
    with pytest.raises(ValidationFailed) as failure:
        call(*args, **kwargs)
    assert failure.value.param == field and failure.value.message.startswith(f"{field}: ")
    return failure.value.message


@pytest.mark.parametrize("value, expected", [(0, 0), (60, 60), (60.0, 60), (Decimal("7"), 7)])
def test_whole_numbers(value, expected):
    assert domain.whole_number(value, "n") == expected


@pytest.mark.parametrize("value", [-1, 1.5, "60", True, None, float("nan"), float("inf"), [1]])
def test_not_whole_numbers(value):
    fails("n", domain.whole_number, value, "n")


def test_whole_number_bounds():
    assert "at most 10" in fails("n", domain.whole_number, 11, "n", maximum=10)
    assert domain.whole_number(-5, "n", minimum=-10) == -5


def test_text_and_email():
    assert domain.text("  hi  ", "t") == "hi" and domain.text(None, "t") == ""
    fails("t", domain.text, None, "t", required=True)
    fails("t", domain.text, "   ", "t", required=True)
    fails("t", domain.text, 5, "t")
    fails("t", domain.text, "x" * 11, "t", maximum=10)
    fails("t", domain.text, "a\x00b", "t")
    assert domain.email(" a@b.co ", "e") == "a@b.co" and domain.email("", "e") is None
    fails("e", domain.email, "a@b", "e")
    fails("e", domain.email, None, "e", required=True)
    fails("e", domain.email, "a@b.co\n.org", "e")  # a newline inside the address


def test_a_custom_number_beyond_64_bits_is_refused_not_rounded():
    assert domain.custom_value(2.5, "custom.k") == "2.5"
    fails("custom.k", domain.custom_value, float(2**64), "custom.k")  # how JSON's parser reads 2**64 + 1
    fails("custom.k", domain.custom_value, -1e30, "custom.k")
    fails("custom.k", domain.custom_value, 2**63, "custom.k")


def test_a_calendar_date_refuses_date_times():
    assert domain.calendar_date("2023-12-22", "d") == date(2023, 12, 22)
    fails("d", domain.calendar_date, "2023-12-22T00:00:00Z", "d")
    fails("d", domain.calendar_date, "2023-02-30", "d")


def test_currencies_are_three_letters_upper_cased():
    assert domain.currency(" usd ") == "USD"
    fails("currency", domain.currency, "US")
    fails("currency", domain.currency, 840)


# ---- associations

def test_a_customer_uuid_or_an_associated_object_identifier_names_the_target():
    assert domain.association({"customer_uuid": "cus_1"}) == domain.Association("customer", "cus_1")
    contact = domain.association({"associated_object_identifier": {
        "associated_object": "contact", "method": "uuid", "value": "con_1"}})
    assert (contact.kind, contact.uuid, contact.field) == ("contact", "con_1", "associated_object_identifier.value")
    same = domain.association({"customer_uuid": "cus_1", "associated_object_identifier": {
        "associated_object": "customer", "value": "cus_1"}})
    assert (same.kind, same.uuid) == ("customer", "cus_1")


@pytest.mark.parametrize("data, field", [
    ({}, "customer_uuid"),
    ({"customer_uuid": ""}, "customer_uuid"),
    ({"customer_uuid": 5}, "customer_uuid"),
    ({"associated_object_identifier": "con_1"}, "associated_object_identifier"),
    ({"associated_object_identifier": {"associated_object": "deal", "value": "d"}},
     "associated_object_identifier.associated_object"),
    ({"associated_object_identifier": {"associated_object": "contact", "method": "email", "value": "x"}},
     "associated_object_identifier.method"),
    ({"associated_object_identifier": {"associated_object": "contact"}}, "associated_object_identifier.value"),
    ({"customer_uuid": "cus_1", "associated_object_identifier": {"associated_object": "contact", "value": "con_1"}},
     "customer_uuid"),
])
def test_a_bad_association_names_the_field(data, field):
    fails(field, domain.association, data)


# ---- notes

def test_a_new_note_has_no_duration_and_a_call_defaults_to_zero():
    assert domain.new_note({"type": "note", "text": " hi "}) == {"type": "note", "text": "hi", "call_duration": 0}
    assert domain.new_note({"type": "call"})["call_duration"] == 0
    assert domain.new_note({"type": "call", "call_duration": 90})["call_duration"] == 90
    assert domain.new_note({"type": "note", "call_duration": 0})["call_duration"] == 0
    fails("call_duration", domain.new_note, {"type": "note", "call_duration": 5})
    fails("type", domain.new_note, {"text": "x"})


def test_a_note_edit_cleans_only_what_it_sends():
    cleaned = domain.clean_note({"text": "x", "created_at": "2024-01-02 03:04:05"})
    assert cleaned == {"text": "x", "created_at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)}
    assert domain.clean_note({"author_email": ""}) == {"author_email": None}
    fails("created_at", domain.clean_note, {"created_at": "2999-01-01"})


# ---- threads, tasks, opportunities

def test_participants_are_emails_once_each_in_order():
    assert domain.participants(["a@x.io", "b@x.io", "A@X.IO"]) == ["a@x.io", "b@x.io"]
    fails("participants", domain.participants, "a@x.io")
    fails("participants", domain.participants, ["a@x.io"] * 101)
    fails("participants.1", domain.participants, ["a@x.io", "nope"])


def test_messages_are_sorted_oldest_first_and_named_by_position():
    messages = domain.clean_messages([
        {"direction": "inbound", "sender": "a@x.io", "sent_at": "2024-01-02"},
        {"direction": "outbound", "sender": "b@x.io", "sent_at": "2024-01-01", "body": "first"}])
    assert [m["body"] for m in messages] == ["first", ""]
    fails("messages.1.sender", domain.clean_messages, [
        {"direction": "inbound", "sender": "a@x.io", "sent_at": "2024-01-02"}, {"direction": "inbound"}])
    fails("messages.0", domain.clean_messages, ["hello"])


def test_tasks_need_details_an_assignee_and_a_due_date_on_create_only():
    fails("task_details", domain.clean_task, {}, creating=True)
    fails("assignee", domain.clean_task, {"task_details": "x", "assignee": "sam"}, creating=True)
    fails("due_date", domain.clean_task, {"task_details": "x", "assignee": "a@x.io"}, creating=True)
    assert domain.clean_task({"completed_at": None}, creating=False) == {"completed_at": None}
    fails("completed_at", domain.clean_task, {"completed_at": "2999-01-01"}, creating=False)


def test_an_opportunity_gets_its_defaults_and_custom_fields_as_a_map():
    cleaned = domain.clean_opportunity({
        "owner": "a@x.io", "pipeline": "P", "pipeline_stage": "S", "estimated_close_date": "2024-01-01",
        "currency": "eur", "amount_in_cents": 0, "custom": {"score": 1.5, "ok": True}}, creating=True)
    assert (cleaned["type"], cleaned["forecast_category"], cleaned["currency"]) == ("recurring", "pipeline", "EUR")
    assert cleaned["custom"] == {"score": "1.5", "ok": True}  # a fraction travels as its decimal string
    assert "type" not in domain.clean_opportunity({"pipeline": "Q"}, creating=False)
    fails("custom.0", domain.custom_fields, [{"value": 1}])
    fails("custom.k", domain.custom_fields, {"k": {"nested": 1}})
    assert domain.updated_custom({"a": 1, "b": 2}, {"a": None, "c": 3}) == {"b": 2, "c": 3}


# ---- feed types and activity filters

def test_feed_types():
    assert domain.feed_types(None) is None and domain.feed_types("") is None
    assert domain.feed_types("note, call,note") == ("note", "call")
    assert domain.feed_types(["event"]) == ("event",)
    with pytest.raises(BadRequest) as failure:
        domain.feed_types("note,emails")
    assert failure.value.param == "types" and "'emails'" in failure.value.message


def test_activity_filters():
    filters = domain.activity_filters({"start-date": "2024-01-01", "end-date": "2024-01-31", "type": "churn",
                                       "order": "date"})
    assert filters.start == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert filters.end == datetime(2024, 2, 1, tzinfo=timezone.utc)  # the whole last day
    assert (filters.type, filters.newest_first) == ("churn", False)
    assert domain.activity_filters({}) == domain.ActivityFilters()
    with pytest.raises(BadRequest):
        domain.activity_filters({"type": "upsell"})


# ---- billing events

MOVEMENT = {"uuid": "m1", "type": "expansion", "date": "2024-03-01", "mrr_movement": 500, "mrr": 1500,
            "arr": 18000, "currency": "usd", "description": "upgraded", "subscription_external_id": "s",
            "plan_external_id": "p", "data_source_uuid": "ds", "causes": []}


def test_a_movement_event_is_read_and_checked():
    movement = domain.movement_from_event({"customer_uuid": "cus_1", "movement": MOVEMENT})
    assert movement["date"] == datetime(2024, 3, 1, tzinfo=timezone.utc) and movement["currency"] == "USD"
    assert (movement["mrr_movement"], movement["mrr"], movement["arr"]) == (500, 1500, 18000)
    for broken in ({**MOVEMENT, "type": "upsell"}, {**MOVEMENT, "mrr_movement": "5.00"},
                   {**MOVEMENT, "date": None}, {**MOVEMENT, "uuid": ""}):
        with pytest.raises(UnprocessableEvent):
            domain.movement_from_event({"customer_uuid": "cus_1", "movement": broken})
    with pytest.raises(UnprocessableEvent):
        domain.movement_from_event({"movement": MOVEMENT})


def test_display_names_fall_back_in_order():
    assert domain.display_name({"name": " ", "company": "Acme", "email": "a@x.io"}) == "Acme"
    assert domain.display_name({"external_id": "e-1"}) == "e-1"
    assert domain.display_name({}) == "a customer"


# ---- limits and calendar ends (reviewer's findings)

def test_opportunity_custom_fields_are_limited_in_count_and_size():
    base = {"owner": "a@x.io", "pipeline": "P", "pipeline_stage": "S", "estimated_close_date": "2024-01-01",
            "currency": "USD", "amount_in_cents": 0}
    too_many = {f"k{i}": 1 for i in range(domain.MAX_CUSTOM_FIELDS + 1)}
    fails("custom", domain.clean_opportunity, {**base, "custom": too_many}, creating=True)
    too_big = {f"k{i}": "x" * (domain.MAX_CUSTOM_BYTES // 4) for i in range(5)}
    fails("custom", domain.clean_opportunity, {**base, "custom": too_big}, creating=True)
    at_most = {f"k{i}": 1 for i in range(domain.MAX_CUSTOM_FIELDS)}
    assert len(domain.clean_opportunity({**base, "custom": at_most}, creating=True)["custom"]) == 100
    fails("custom", domain.checked_custom, {**at_most, "one_more": 1})


@pytest.mark.parametrize("end", ["9999-12-31", "9999-12-31T23:59:59.999999", "9999-12-31T23:59:59.999999Z"])
def test_an_end_date_at_the_end_of_time_ends_the_range_there(end):
    filters = domain.activity_filters({"start-date": "2024-01-01", "end-date": end})
    assert filters.end is None and filters.start == datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_a_date_only_upper_bound_covers_the_whole_day():
    assert domain.end_bound("2024-03-10", "due_date_on_or_before") == datetime(2024, 3, 11, tzinfo=timezone.utc)
    assert domain.end_bound("2024-03-10T12:00:00Z", "x") == datetime(2024, 3, 10, 12, 0, 0, 1, tzinfo=timezone.utc)
    assert domain.end_bound("9999-12-31", "x") is None
