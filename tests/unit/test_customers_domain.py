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
    "http://example.c0m", "example.com:notaport", "https://exa\nmple.com", "https://example.com/\tx",
    "example.com\x7f", "https://example.com\x00",
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
    for bad in ("", "has space", "ü", None, "nl\n", "\nnl"):
        with pytest.raises(ValidationFailed):
            domain.check_custom_key(bad)


@pytest.mark.parametrize("bad", ["bob\n@example.com", "bob@example\n.com", "bob@example.com\n.org",
                                 "bob@exa\nmple.com"])
def test_a_newline_inside_an_email_address_is_refused(bad):
    with pytest.raises(ValidationFailed) as failure:
        domain.email_address(bad, "owner")
    assert failure.value.param == "owner"


def test_merge_keeps_survivor_tags_first_and_adds_new_ones():
    assert domain.merged_tags(["a", "b"], ["b", "c"]) == ["a", "b", "c"]


def test_merge_survivor_custom_values_win():
    into = {"seats": ("Integer", 5, "API")}
    merged = {"seats": ("Integer", 9, "API"), "channel": ("String", "ads", "API")}
    assert domain.merged_custom(into, merged) == {"channel": ("String", "ads", "API")}


def test_changed_fields_lists_only_differences():
    assert domain.changed_fields({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": None}) == {"b": 3, "c": None}


# ---- every field's rule, and the limits ----------------------------------------------------

@pytest.mark.parametrize("data, param", [
    ({"country": "GERMANY"}, "country"), ({"country": "XX"}, "country"), ({"country": 49}, "country"),
    ({"email": "not-an-email"}, "email"), ({"email": "a@" + "b" * 320 + ".com"}, "email"),
    ({"owner": "x@localhost"}, "owner"), ({"name": "n" * 501}, "name"), ({"company": "c" * 501}, "company"),
    ({"city": "c" * 201}, "city"), ({"state": "s" * 201}, "state"), ({"zip": "z" * 41}, "zip"),
    ({"name": "a\x00b"}, "name"), ({"city": "\ud800"}, "city"),
    ({"lead_created_at": "2999-01-01"}, "lead_created_at"),
    ({"free_trial_started_at": "0001-01-01T00:00:00+14:00"}, "free_trial_started_at"),
    ({"lead_created_at": "2024-01-01\x00"}, "lead_created_at"),
    ({"website_url": "https://" + "a" * 1990 + ".com"}, "website_url"),
    ({"billing_system_url": "ftp://billing.example"}, "billing_system_url"),
])
def test_profile_refuses_each_bad_field_naming_it(data, param):
    with pytest.raises(ValidationFailed) as failure:
        domain.profile(data)
    assert failure.value.param == param


def test_profile_normalises_country_email_and_offset_timestamps_to_utc():
    values = domain.profile({"country": "de", "email": " Bob@Example.COM ", "lead_created_at": "2024-01-02T10:00:00-04:00",
                             "free_trial_started_at": "2024-01-02T10:00:00+05:30", "name": None, "city": None})
    assert values["country"] == "DE" and values["email"] == "Bob@Example.COM"
    assert values["email_lower"] == "bob@example.com"
    assert values["lead_created_at"].isoformat() == "2024-01-02T14:00:00+00:00"
    assert values["free_trial_started_at"].isoformat() == "2024-01-02T04:30:00+00:00"
    assert values["name"] == "" and values["city"] is None


def test_new_customer_checks_its_ids_tags_and_custom_attributes():
    for data, param in [({"external_id": "x" * 501}, "external_id"), ({"external_id": ""}, "external_id"),
                        ({"data_source_uuid": None}, "data_source_uuid"),
                        ({"attributes": {"tags": ["t\x00"]}}, "tags"),
                        ({"attributes": {"custom": [{"type": "String", "key": "k", "value": "v" * 256}]}}, "custom.k"),
                        ({"attributes": {"custom": [{"type": "Colour", "key": "k", "value": 1}]}}, "custom.k.type"),
                        ({"attributes": {"custom": [{"type": "String", "key": "k", "value": "v",
                                                     "source": "s" * 101}]}}, "custom.k.source")]:
        with pytest.raises(ValidationFailed) as failure:
            domain.new_customer({"data_source_uuid": "ds", "external_id": "e", **data})
        assert failure.value.param == param, data


def test_a_customer_has_at_most_max_tags_and_max_custom_attributes():
    full_tags = [f"t{i}" for i in range(domain.MAX_TAGS)]
    assert domain.tags_to_add(full_tags[:-1], ["t0", full_tags[-1]]) == [full_tags[-1]]
    with pytest.raises(ValidationFailed, match="at most"):
        domain.tags_to_add(full_tags, ["one-more"])
    full = {f"k{i}": domain.Attribute("Integer", i, "API") for i in range(domain.MAX_CUSTOM_ATTRIBUTES)}
    assert domain.set_values(full, {"k0": 5}) == {"k0": domain.Attribute("Integer", 5, "API")}
    with pytest.raises(ValidationFailed, match="at most") as failure:
        domain.set_values(full, {"new": 1})
    assert failure.value.param == "custom"
    with pytest.raises(ValidationFailed, match="at most"):
        domain.check_merge(external_ids=domain.MAX_EXTERNAL_IDS + 1, tags=0, custom=0)


def test_added_attributes_sets_values_of_its_own_type_and_refuses_another():
    current = {"seats": domain.Attribute("Integer", 3, "API")}
    added = domain.added_attributes(current, [{"type": "Integer", "key": "seats", "value": "4", "source": "crm"},
                                              {"type": "Decimal", "key": "cac", "value": "1.50"}])
    assert added == {"seats": domain.Attribute("Integer", 4, "crm"), "cac": domain.Attribute("Decimal", "1.50", "API")}
    with pytest.raises(ValidationFailed) as failure:
        domain.added_attributes(current, [{"type": "String", "key": "seats", "value": "x"}])
    assert failure.value.param == "custom.seats"


def test_set_values_keeps_an_existing_type_and_source_and_infers_new_ones():
    current = {"seats": domain.Attribute("Integer", 3, "crm")}
    assert domain.set_values(current, {"seats": "7", "pro": True}) == {
        "seats": domain.Attribute("Integer", 7, "crm"), "pro": domain.Attribute("Boolean", True, "API")}


def test_list_filters_are_checked_and_normalised():
    assert domain.list_filters({"status": "past_due", "email": " A@B.co ", "system": ""}) == {
        "status": "Past Due", "email": "a@b.co"}
    with pytest.raises(ValidationFailed) as failure:
        domain.list_filters({"external_id": "a\x00"})
    assert failure.value.param == "external_id"
    for blank in (" ", "\t \n"):  # not "no filter", which would list every customer
        with pytest.raises(ValidationFailed) as failure:
            domain.list_filters({"email": blank})
        assert failure.value.param == "email"


def test_findable_refuses_what_can_name_no_row():
    assert domain.findable("cus_1") and not domain.findable("cus\x00") and not domain.findable("x" * 41)
    assert not domain.findable(None) and not domain.findable("")


def test_the_largest_record_the_limits_allow_stays_under_max_record_bytes():
    """The worst case: every field full of characters JSON escapes to 6 bytes each."""
    import orjson

    from services.customers.schemas import PROFILE_FIELDS, TIME_FIELDS, customer_dict

    worst = "\x01"
    columns = {field: 0 for field in PROFILE_FIELDS} | {field: None for field in TIME_FIELDS}
    columns |= {field: worst * limit for field, limit in domain.TEXT_LIMITS.items()}
    columns |= {"email": worst * domain.EMAIL_MAX, "owner": worst * domain.EMAIL_MAX, "uuid": worst * 40,
                "website_url": worst * domain.URL_MAX, "billing_system_url": worst * domain.URL_MAX,
                "status": worst * 40, "country": "DE", "currency": "USD", "billing_system_type": worst * 100,
                "mrr": domain.INT64_MIN, "arr": domain.INT64_MIN, "net_payments": domain.INT64_MIN}
    external_ids = [(worst * 40, f"{i:03}" + worst * (domain.EXTERNAL_ID_MAX - 3))
                    for i in range(domain.MAX_EXTERNAL_IDS)]
    tags = [f"{i:03}" + worst * (domain.TAG_MAX - 3) for i in range(domain.MAX_TAGS)]
    custom = {f"{i:03}" + "k" * 197: worst * domain.CUSTOM_STRING_MAX for i in range(domain.MAX_CUSTOM_ATTRIBUTES)}
    record = customer_dict(columns, external_ids, tags, custom)

    size = len(orjson.dumps(record))

    assert 600_000 < size <= domain.MAX_RECORD_BYTES
