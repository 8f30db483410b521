"""The contact rules: what a valid contact is, and how two contacts merge."""
from datetime import datetime, timezone

import pytest

from roster.errors import ValidationFailed
from services.contacts import domain


def failure_of(call, *args, **kwargs) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        call(*args, **kwargs)
    return caught.value


# --- email -------------------------------------------------------------------------------

@pytest.mark.parametrize("email", ["jane@example.com", "j.doe+crm@sub.example.co.uk", "  jane@example.com "])
def test_an_email_address_is_accepted_trimmed(email):
    assert domain.clean_email(email) == email.strip()


@pytest.mark.parametrize("email", ["jane", "jane@", "@example.com", "jane@example", "jane doe@example.com",
                                   "jane@@example.com", "jane@example."])
def test_anything_else_is_not_an_email(email):
    failure = failure_of(domain.clean_email, email)
    assert failure.param == "email"
    assert "not an email address" in failure.message


def test_a_blank_email_means_no_email():
    assert domain.clean_email("") is None
    assert domain.clean_email(None) is None


def test_an_email_must_be_a_string():
    assert failure_of(domain.clean_email, 42).param == "email"


# --- LinkedIn ----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "https://www.linkedin.com/in/jane-doe",
    "http://linkedin.com/in/jane-doe/",
    "linkedin.com/company/acme",
    "https://uk.linkedin.com/in/jane",
    "jane-doe",
    "in/jane-doe",
])
def test_linked_in_urls_and_handles_are_accepted(value):
    assert domain.clean_linked_in(value) == value


@pytest.mark.parametrize("value", [
    "https://twitter.com/jane",
    "https://example.com/in/jane",
    "https://www.linkedin.com/",
    "https://linkedin.com.evil.example/in/jane",
    "ftp://linkedin.com/in/jane",
    "not a handle",
    "j",
])
def test_other_sites_and_junk_are_not_linked_in(value):
    failure = failure_of(domain.clean_linked_in, value)
    assert failure.param == "linked_in"
    assert "LinkedIn" in failure.message


# --- Twitter -----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "https://twitter.com/jane_doe",
    "http://www.twitter.com/jane",
    "twitter.com/jane",
    "https://x.com/jane",
    "@jane_doe",
    "jane",
])
def test_twitter_urls_and_handles_are_accepted(value):
    assert domain.clean_twitter(value) == value


@pytest.mark.parametrize("value", [
    "https://www.linkedin.com/in/jane",
    "https://twitter.com/",
    "https://twitter.com/this_handle_is_far_too_long",
    "@jane doe",
    "@",
    "jane!",
])
def test_other_sites_and_junk_are_not_twitter(value):
    failure = failure_of(domain.clean_twitter, value)
    assert failure.param == "twitter"
    assert "Twitter" in failure.message


# --- position ----------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [(1, 1), (7, 7), ("3", 3), (2.0, 2), (None, None)])
def test_a_position_is_a_positive_integer(value, expected):
    assert domain.clean_position(value) == expected


@pytest.mark.parametrize("value", [0, -1, 1.5, "first", True, [1], 2**40])
def test_anything_else_is_not_a_position(value):
    failure = failure_of(domain.clean_position, value)
    assert failure.param == "position"


# --- custom attributes and timestamps ----------------------------------------------------

def test_custom_attributes_come_as_a_list_of_pairs_or_a_map():
    as_list = domain.clean_custom([{"key": "Facebook", "value": "https://fb.com/jane"}, {"key": "age", "value": 40}])
    as_map = domain.clean_custom({"Facebook": "https://fb.com/jane", "age": 40})
    assert as_list == as_map == {"Facebook": "https://fb.com/jane", "age": 40}


@pytest.mark.parametrize("value, param", [
    ("Facebook", "custom"),
    ([{"value": 1}], "custom"),
    ({"bad key": 1}, "custom"),
    ({"nested": {"a": 1}}, "custom.nested"),
])
def test_malformed_custom_attributes_are_refused(value, param):
    assert failure_of(domain.clean_custom, value).param == param


@pytest.mark.parametrize("value", ["2024-05-01T10:00:00Z", "2024-05-01T12:00:00+02:00", "2024-05-01 10:00:00"])
def test_last_seen_accepts_iso_times_in_any_zone_as_utc(value):
    assert domain.parse_timestamp(value) == datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)


def test_last_seen_accepts_a_date():
    assert domain.parse_timestamp("2024-05-01") == datetime(2024, 5, 1, tzinfo=timezone.utc)


def test_last_seen_refuses_what_is_not_a_time():
    assert failure_of(domain.parse_timestamp, "yesterday").param == "last_seen"


# --- a whole contact ---------------------------------------------------------------------

def test_clean_fields_keeps_only_what_was_sent():
    assert domain.clean_fields({"first_name": "Jane", "unknown": 1}) == {"first_name": "Jane"}


def test_clean_fields_names_the_field_with_a_prefix():
    failure = failure_of(domain.clean_fields, {"email": "nope"}, "primary_contact.")
    assert failure.param == "primary_contact.email"
    assert failure.message.startswith("primary_contact.email: ")


def test_a_text_field_must_be_text():
    assert failure_of(domain.clean_fields, {"first_name": 5}).param == "first_name"


@pytest.mark.parametrize("field", ["customer_uuid", "data_source_uuid"])
def test_references_are_required(field):
    failure = failure_of(domain.required_reference, {field: "  "}, field)
    assert failure.param == field
    assert domain.required_reference({field: "cus_1"}, field) == "cus_1"


def test_an_update_of_custom_attributes_sets_keys_and_null_removes_one():
    assert domain.updated_custom({"a": 1, "b": 2}, {"b": None, "c": 3}) == {"a": 1, "c": 3}


# --- merging two contacts ----------------------------------------------------------------

def test_a_merge_fills_only_the_survivors_empty_fields():
    into = {"first_name": "Jane", "last_name": "", "email": None, "position": None, "phone": "+1 555"}
    merged_from = {"first_name": "Janet", "last_name": "Doe", "email": "jane@example.com", "position": 2,
                   "phone": "+44 20"}
    changes = domain.merged_contact(into, merged_from)
    assert changes == {"last_name": "Doe", "email": "jane@example.com", "position": 2}


def test_a_merge_unions_custom_attributes_and_the_survivor_wins():
    into = {"custom": {"plan": "pro", "seats": 5}}
    merged_from = {"custom": {"plan": "free", "channel": "Twitter"}}
    assert domain.merged_contact(into, merged_from) == {
        "custom": {"plan": "pro", "seats": 5, "channel": "Twitter"}
    }


def test_a_merge_keeps_the_later_last_seen():
    early, late = datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 6, 1, tzinfo=timezone.utc)
    assert domain.merged_contact({"last_seen": early}, {"last_seen": late}) == {"last_seen": late}
    assert domain.merged_contact({"last_seen": late}, {"last_seen": early}) == {}
    assert domain.merged_contact({"last_seen": None}, {"last_seen": early}) == {"last_seen": early}


def test_merging_a_contact_with_nothing_new_changes_nothing():
    into = {"first_name": "Jane", "custom": {"a": 1}}
    assert domain.merged_contact(into, {"first_name": "", "custom": {}}) == {}
