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
    "https://www.linkedin.com/in/ja\nne",
    "https://www.link\tedin.com/in/jane",
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
    "https://twitter.com/ja\nne",
    "https://x.\ncom/jane",
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

def test_a_merge_fills_only_the_survivors_empty_fields_and_keeps_its_position():
    into = {"first_name": "Jane", "last_name": "", "email": None, "position": 3, "phone": "+1 555"}
    merged_from = {"first_name": "Janet", "last_name": "Doe", "email": "jane@example.com", "position": 1,
                   "phone": "+44 20"}
    changes = domain.merged_contact(into, merged_from)
    assert changes == {"last_name": "Doe", "email": "jane@example.com"}


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


# --- odd input the database could not store ----------------------------------------------

@pytest.mark.parametrize("field", ["first_name", "notes", "external_id", "email", "linked_in", "twitter"])
def test_a_nul_character_is_refused_in_every_text_field(field):
    failure = failure_of(domain.clean_fields, {field: "jane\x00doe"})
    assert failure.param == field and "NUL" in failure.message


@pytest.mark.parametrize("field, value", [
    ("linked_in", "https://www.linkedin.com/in/" + "j" * 500),
    ("twitter", "https://twitter.com/jane/" + "x" * 500),
])
def test_profile_urls_are_bounded(field, value):
    assert failure_of(domain.clean_fields, {field: value}).param == field


@pytest.mark.parametrize("value, reason", [
    (2**63, "64 bits"), (-(2**63) - 1, "64 bits"), (float("nan"), "finite"), (float("inf"), "finite"),
    (float(2**64), "64 bits"), (-1e30, "64 bits"),  # integers beyond 64 bits arrive parsed as floats
    ("x" * 10_001, "at most"), ("a\x00", "NUL"),
])
def test_custom_values_are_bounded(value, reason):
    failure = failure_of(domain.clean_custom, {"seats": value})
    assert failure.param == "custom.seats" and reason in failure.message


def test_custom_values_at_the_bounds_are_kept():
    values = {"big": 2**63 - 1, "small": -(2**63), "text": "x" * 10_000, "ratio": 0.5, "flag": False}
    assert domain.clean_custom(values) == values


def test_a_custom_key_ending_in_a_newline_is_refused():
    assert failure_of(domain.clean_custom, {"key\n": 1}).param == "custom"


def test_custom_attributes_are_capped_in_number():
    assert failure_of(domain.clean_custom, {f"k{n}": n for n in range(201)}).param == "custom"
    full = {f"k{n}": n for n in range(200)}
    assert failure_of(domain.updated_custom, full, {"one_more": 1}).param == "custom"
    assert domain.updated_custom(full, {"k0": None}) == {f"k{n}": n for n in range(1, 200)}


def test_a_blank_external_id_is_none_other_blank_text_stays():
    assert domain.clean_fields({"external_id": "  ", "title": ""}) == {"external_id": None, "title": ""}


@pytest.mark.parametrize("value", ["cus_\x00", "c" * 101, 5, None])
def test_what_cannot_name_a_record_is_not_a_reference(value):
    assert domain.is_reference(value) is False
    if isinstance(value, str):
        assert failure_of(domain.required_reference, {"customer_uuid": value}, "customer_uuid").param == \
            "customer_uuid"


# --- updates and the primary contact -------------------------------------------------------

def test_an_update_ignores_a_null_position_but_not_a_bad_one():
    assert domain.clean_changes({"position": None, "title": "CTO"}) == {"title": "CTO"}
    assert failure_of(domain.clean_changes, {"position": 0}).param == "position"


def test_the_primary_contact_takes_its_eight_fields_and_names_errors_with_the_prefix():
    data = {"first_name": "Pat", "last_name": "Lee", "email": "pat@example.com", "title": "CFO", "phone": "1",
            "linked_in": "pat-lee", "twitter": "@pat", "notes": "n", "external_id": "x", "position": 4,
            "custom": {"a": 1}}
    assert set(domain.clean_primary_contact(data)) == set(domain.PRIMARY_CONTACT_FIELDS)
    assert failure_of(domain.clean_primary_contact, {"twitter": "no way"}).param == "primary_contact.twitter"
    assert failure_of(domain.clean_primary_contact, "Pat").param == "primary_contact"


# --- list filters --------------------------------------------------------------------------

def test_list_filters_keep_known_non_blank_filters_and_lower_the_email():
    query = {"customer_uuid": "cus_1", "email": " Jane@Example.COM ", "external_id": "", "cursor": "c", "x": "y"}
    assert domain.list_filters(query) == {"customer_uuid": "cus_1", "email": "jane@example.com"}
    assert domain.list_filters({}) == {}


@pytest.mark.parametrize("value", [5, ["a"], "a\x00"])
def test_a_filter_that_is_not_plain_text_is_named(value):
    assert failure_of(domain.list_filters, {"data_source_uuid": value}).param == "data_source_uuid"


# --- positions -----------------------------------------------------------------------------

def test_the_first_contact_is_the_primary_and_the_next_follow_the_highest():
    assert domain.next_position(None) == 1
    assert domain.next_position(1) == 2
    assert domain.next_position(7) == 8
    assert domain.next_position(domain.MAX_POSITION) == domain.MAX_POSITION


def test_contacts_joining_a_customer_follow_its_own():
    assert domain.positions_after(2, 3) == [3, 4, 5]
    assert domain.positions_after(None, 2) == [1, 2]
    assert domain.positions_after(4, 0) == []


# --- where a customer's contacts belong ----------------------------------------------------

def fates(**known):
    return lambda uuid: known.get(uuid)


def test_an_unknown_or_active_customer_holds_its_own_contacts():
    assert domain.survivor_of("a", fates()) == "a"
    assert domain.survivor_of("a", fates(a=("active", None))) == "a"


def test_merges_are_followed_to_the_last_survivor_and_a_deletion_ends_the_chain():
    chain = {"a": ("merged", "b"), "b": ("merged", "c")}
    assert domain.survivor_of("a", fates(**chain)) == "c"
    assert domain.survivor_of("a", fates(**chain, c=("deleted", None))) is None
    assert domain.survivor_of("a", fates(a=("merged", "b"), b=("merged", "a"))) is None  # never loops


def test_a_deleted_or_merged_customer_gets_no_new_contact():
    domain.check_can_hold_contacts("a", "active", None)
    assert "was deleted" in failure_of(domain.check_can_hold_contacts, "a", "deleted", None).message
    failure = failure_of(domain.check_can_hold_contacts, "a", "merged", "b")
    assert failure.param == "customer_uuid" and "merged into b" in failure.message
