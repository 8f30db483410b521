"""Customer rules: statuses, websites, tags, typed custom attributes, merges."""
import pytest

from roster.errors import ValidationFailed
from services.customers import domain


@pytest.mark.parametrize("given, expected", [
    ("New Lead", "New Lead"), ("new_lead", "New Lead"), ("Working_Lead", "Working Lead"),
    ("Lead", "New Lead"), ("qualified lead", "Qualified Lead"), ("Unqualified_Lead", "Unqualified Lead"),
])
def test_settable_status_accepts_lead_statuses_in_every_spelling(given, expected):
    assert domain.settable_status(given) == expected


@pytest.mark.parametrize("billing_status", ["Active", "Past Due", "past_due", "Cancelled"])
def test_settable_status_refuses_billing_statuses(billing_status):
    with pytest.raises(ValidationFailed) as failure:
        domain.settable_status(billing_status)
    assert failure.value.param == "status"
    assert "derived from billing" in failure.value.message


def test_settable_status_refuses_unknown_words_and_non_strings():
    for value in ("Prospect", 3, None):
        with pytest.raises(ValidationFailed):
            domain.settable_status(value)


def test_a_subscriber_cannot_be_turned_back_into_a_lead():
    with pytest.raises(ValidationFailed, match="subscriber"):
        domain.settable_status("Working Lead", current="Active")
    assert domain.settable_status("Working Lead", current="New Lead") == "Working Lead"


def test_status_filter_accepts_space_and_underscore_forms():
    assert domain.status_filter("Past_Due") == "Past Due"
    assert domain.status_filter("Active") == "Active"
    with pytest.raises(ValidationFailed):
        domain.status_filter("Gone")


@pytest.mark.parametrize("given, expected", [
    ("example.com", "https://example.com"),
    ("http://example.com", "http://example.com"),
    ("https://www.example.co.uk/about?x=1", "https://www.example.co.uk/about?x=1"),
    ("HTTPS://Example.com", "https://Example.com"),
    ("shop.example.com:8443/path", "https://shop.example.com:8443/path"),
    ("", None),
    (None, None),
])
def test_normalise_website(given, expected):
    assert domain.normalise_website(given) == expected


@pytest.mark.parametrize("bad", [
    "not a website", "localhost", "ftp://example.com", "https://", "example", "-bad-.com", "exa mple.com",
    "http://example.c0m", "example.com:notaport",
])
def test_normalise_website_refuses_what_is_not_a_host(bad):
    with pytest.raises(ValidationFailed) as failure:
        domain.normalise_website(bad)
    assert failure.value.param == "website_url"


def test_clean_tags_trims_and_drops_repeats_keeping_order():
    assert domain.clean_tags([" vip ", "beta", "vip"]) == ["vip", "beta"]


@pytest.mark.parametrize("bad", [["", "x"], [3], "vip", [" "]])
def test_clean_tags_refuses_blank_or_non_string_tags(bad):
    with pytest.raises(ValidationFailed):
        domain.clean_tags(bad)


@pytest.mark.parametrize("type_name, value, stored", [
    ("String", "Twitter", "Twitter"),
    ("Integer", 20, 20),
    ("Integer", "20", 20),
    ("Integer", 20.0, 20),
    ("Decimal", 12.5, "12.5"),
    ("Decimal", "12.50", "12.50"),
    ("Decimal", 7, "7"),
    ("Decimal", "1e3", "1000"),
    ("Integer", "9223372036854775807", 2**63 - 1),
    ("Boolean", True, True),
    ("Boolean", "false", False),
    ("Timestamp", "2024-01-02 03:04:05", "2024-01-02T03:04:05Z"),
    ("Timestamp", "2024-01-02", "2024-01-02T00:00:00Z"),
    ("Timestamp", "2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
    ("String", None, None),
])
def test_coerce_custom_value_stores_each_type(type_name, value, stored):
    assert domain.coerce_custom_value(type_name, value, "k") == stored


@pytest.mark.parametrize("type_name, value", [
    ("String", 5), ("Integer", "twenty"), ("Integer", 2.5), ("Integer", True), ("Decimal", "abc"),
    ("Decimal", "nan"), ("Decimal", "1e30"), ("Decimal", "0.00000000001"), ("Integer", 2**63),
    ("Integer", "-9223372036854775809"), ("Integer", "100000000000000000000"), ("Boolean", "yes"), ("Boolean", 1), ("Timestamp", "yesterday"), ("Timestamp", 5),
])
def test_coerce_custom_value_refuses_values_of_another_type(type_name, value):
    with pytest.raises(ValidationFailed) as failure:
        domain.coerce_custom_value(type_name, value, "seats")
    assert failure.value.param == "custom.seats"


def test_infer_custom_type():
    assert [domain.infer_custom_type(v, "k") for v in (True, 3, 2.5, "x")] == [
        "Boolean", "Integer", "Decimal", "String"]
    with pytest.raises(ValidationFailed):
        domain.infer_custom_type([1], "k")


def test_custom_keys_must_be_simple_names():
    assert domain.check_custom_key("sales_rep") == "sales_rep"
    for bad in ("", "has space", "ü", None):
        with pytest.raises(ValidationFailed):
            domain.check_custom_key(bad)


def test_merge_keeps_survivor_tags_first_and_adds_new_ones():
    assert domain.merged_tags(["a", "b"], ["b", "c"]) == ["a", "b", "c"]


def test_merge_survivor_custom_values_win():
    into = {"seats": ("Integer", 5, "API")}
    merged = {"seats": ("Integer", 9, "API"), "channel": ("String", "ads", "API")}
    assert domain.merged_custom(into, merged) == {"channel": ("String", "ads", "API")}


def test_changed_fields_lists_only_differences():
    assert domain.changed_fields({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": None}) == {"b": 3, "c": None}
