"""Avatar rules: Clearbit domains, Gravatar hashes, the generated initial, the chain, refreshes."""
import hashlib
import logging
import re
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timedelta, timezone

import pytest

from services.avatars import domain
from services.avatars.domain import Avatar, Image

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
SVG_NS = "{http://www.w3.org/2000/svg}"


# --- website_domain -----------------------------------------------------------------------------

@pytest.mark.parametrize("website, expected", [
    ("https://acme.com", "acme.com"),
    ("acme.com", "acme.com"),
    ("http://acme.com/about?x=1#team", "acme.com"),
    ("HTTPS://WWW.Acme.COM:8443/", "acme.com"),
    ("https://www.acme.co.uk", "acme.co.uk"),
    ("https://shop.acme.com.", "shop.acme.com"),
    ("https://www2.acme.com", "www2.acme.com"),
    ("https://www.com", "www.com"),  # www. is only dropped when a domain remains
    ("https://münchen.de", "xn--mnchen-3ya.de"),
    ("https://Bücher.example.org/", "xn--bcher-kva.example.org"),
    ("https://пример.рф", "xn--e1afmkfd.xn--p1ai"),
    ("https://ＡＣＭＥ。com", "acme.com"),  # full-width letters and ideographic dot, mapped by UTS 46
    ("https://xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
    ("  https://acme.com  ", "acme.com"),
])
def test_website_domain_is_the_lowercase_ascii_host_without_www_or_port(website, expected):
    assert domain.website_domain(website) == expected


@pytest.mark.parametrize("website", [
    # IP addresses in every spelling a resolver or browser accepts
    "http://127.0.0.1/", "127.0.0.1", "http://127.0.0.1:8080", "http://2130706433/", "http://0x7f000001/",
    "http://0x7f.0.0.1/", "http://0177.0.0.1/", "http://127.1/", "http://10.0.0.1.", "http://169.254.169.254/",
    "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[fe80::1]:80/", "http://%31%32%37.0.0.1/",
    # names that are not public
    "http://localhost", "http://localhost:8000", "http://LOCALHOST.", "https://intranet", "http://server",
    "http://printer.local", "http://db.internal", "http://app.localhost", "http://shop.test",
    "http://x.invalid", "http://www.example", "http://router.lan", "http://ⓛocalhost", "http://xn--zz.com",
    # userinfo tricks: the host is what follows the last @
    "https://evil@127.0.0.1", "https://acme.com@127.0.0.1/", "https://user:pass@acme.com/",
    "https://acme.com\\@127.0.0.1/",
    # schemes that are not the web, and things that are not URLs
    "ftp://acme.com", "file:///etc/passwd", "javascript:alert(1)", "data:text/html,<b>x</b>",
    "mailto:bob@acme.com", "gopher://acme.com", "//acme.com", "https://", "http://acme.com:99999/",
    "http://acme.com:port/", "http://ac me.com", "http://acme\t.com", "http://acme.com\n/about", "http://[acme.com]/",
    "http://-acme.com", "http://acme_corp.com", "http://acme.c0m", "", "   ", None, 42,
])
def test_website_domain_refuses_what_is_not_a_public_host_name(website):
    assert domain.website_domain(website) is None


def test_is_public_host_name_wants_an_exact_name():
    assert domain.is_public_host_name("acme.com")
    for host in ("acme.com\n", "127.0.0.1", "acme", "acme.local", "a..com", 2130706433, None):
        assert not domain.is_public_host_name(host)


# --- gravatar_hash ------------------------------------------------------------------------------

def test_gravatar_hash_matches_gravatars_documented_example():
    # docs.gravatar.com "Creating identifier (hash)": trim, lower-case, SHA-256.
    assert domain.gravatar_hash("MyEmailAddress@example.com ") == (
        "84059b07d4be67b806386c0aad8070a23f18836bbaae342275dc0a83414c32ee")


def test_gravatar_hash_ignores_case_and_surrounding_space():
    expected = hashlib.sha256(b"bob@acme.com").hexdigest()
    assert domain.gravatar_hash("  Bob@ACME.com\t") == expected
    assert domain.gravatar_hash("bob@acme.com") == expected


@pytest.mark.parametrize("email", [
    None, "", "   ", "bob", "bob@", "@acme.com", "bob@acme", "bob@@acme.com", "b ob@acme.com", 42,
    "x" * 65 + "@acme.com",
])
def test_gravatar_hash_is_none_for_a_blank_or_invalid_email(email):
    assert domain.gravatar_hash(email) is None


# --- initial ------------------------------------------------------------------------------------

@pytest.mark.parametrize("company, name, expected", [
    ("acme", "Bob", "A"),
    ("", "bob", "B"),
    (None, "bob", "B"),
    ("   ", "bob", "B"),
    ("ωμέγα", "", "Ω"),  # Greek
    ("щука", "", "Щ"),  # Cyrillic
    ("東京電力", "", "東"),  # CJK has no case: itself
    ("삼성", "", "삼"),
    ("さくら", "", "さ"),
    ("شركة", "", "ش"),
    ("e\u0301cole", "", "É"),  # a combining accent stays on its letter
    ("ệ", "", "Ệ"),
    ("ßtraße", "", "ẞ"),  # one capital, not 'SS'
    ("İstanbul", "", "İ"),  # Turkish dotted capital I kept
    ("ısık", "", "I"),  # dotless i upper-cases to I
    ("ΐ", "", "Ϊ́"),  # upper-cases to several code points, one letter
    ("ǆungla", "", "D"),  # NFKC splits the digraph into d + ž
    ("ﬁne", "", "F"),  # ligature folded by NFKC
    ("Ａcme", "", "A"),  # full-width
    ("ʻOhana", "", "O"),  # modifier letters are not initials
    ("क्षत्रिय", "", "क"),  # no dangling virama
    ("किताब", "", "कि"),  # a vowel sign stays on its consonant
    ("3M", "", "3"),  # digits count
    ("1-800-Flowers", "", "1"),
    ("①Up", "", "1"),
    ("٣ نجوم", "", "٣"),
    ("(acme)", "", "A"),  # punctuation is skipped
    ("'s-Hertogenbosch", "", "S"),
    ("@home", "", "H"),
    ("🍕 Pizza Co", "", "P"),  # emoji are skipped, never shown
    ("👩‍💻", "bob", "B"),  # a company of emoji only: the name
    ("🇫🇷", "🎉", "?"),  # nothing to show: '?'
    ("", "", "?"),
    (None, None, "?"),
    ("!!!", "...", "?"),
])
def test_initial_is_the_first_letter_or_digit_upper_cased(company, name, expected):
    assert domain.initial(company, name) == expected


# --- background_colour --------------------------------------------------------------------------

def wcag_contrast(first: str, second: str) -> float:
    """The WCAG 2 formula, written out here so the test does not trust the code it checks."""
    def luminance(colour):
        red, green, blue = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (red, green, blue)]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


UUIDS = [f"cus_{hashlib.md5(str(n).encode()).hexdigest()}" for n in range(400)]


def test_background_colour_is_legible_under_the_text_colour_for_every_uuid():
    for customer_uuid in UUIDS:
        colour = domain.background_colour(customer_uuid)
        assert re.fullmatch(r"#[0-9a-f]{6}", colour)
        assert wcag_contrast(colour, domain.TEXT_COLOUR) >= 4.5, (customer_uuid, colour)


def test_background_colour_is_deterministic_and_varies_between_customers():
    first = [domain.background_colour(u) for u in UUIDS]
    assert first == [domain.background_colour(u) for u in UUIDS]
    assert domain.background_colour("CUS_ABC ") == domain.background_colour("cus_abc")
    assert len(set(first)) > 300


def test_background_colour_refuses_a_blank_uuid():
    for bad in ("", "  ", None):
        with pytest.raises(ValueError, match="customer_uuid"):
            domain.background_colour(bad)


def test_contrast_ratio_agrees_with_wcag():
    assert domain.contrast_ratio("#000000", "#ffffff") == pytest.approx(21)
    assert domain.contrast_ratio("#777777", "#ffffff") == pytest.approx(wcag_contrast("#777777", "#ffffff"))


# --- initials_svg -------------------------------------------------------------------------------

def parse_svg(body: bytes):
    root = ElementTree.fromstring(body)
    assert root.tag == SVG_NS + "svg"
    return root


def test_initials_svg_is_valid_svg_with_the_initial_on_the_uuids_colour():
    body = domain.initials_svg("cus_1", "Ωmega", "bob")
    root = parse_svg(body)
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("200", "200", "0 0 200 200")
    assert root.find(SVG_NS + "rect").get("fill") == domain.background_colour("cus_1")
    text = root.find(SVG_NS + "text")
    assert text.text == "Ω"
    assert text.get("fill") == domain.TEXT_COLOUR


def test_initials_svg_is_the_same_bytes_every_time_and_scales():
    assert domain.initials_svg("cus_1", "Acme", "") == domain.initials_svg("cus_1", "Acme", "")
    assert domain.initials_svg("cus_1", "Acme", "") != domain.initials_svg("cus_2", "Acme", "")
    assert parse_svg(domain.initials_svg("cus_1", "Acme", "", size=64)).get("width") == "64"


def test_initials_svg_has_no_scripts_or_external_references():
    body = domain.initials_svg("cus_1", "<script>alert(1)</script>", "javascript:x")
    lowered = body.lower()
    for forbidden in (b"<script", b"href", b"url(", b"<!", b"<?", b"foreignobject", b"onload", b"@import"):
        assert forbidden not in lowered
    elements = {element.tag for element in parse_svg(body).iter()}
    assert elements == {SVG_NS + "svg", SVG_NS + "rect", SVG_NS + "text"}


def test_initials_svg_escapes_its_text(monkeypatch):
    monkeypatch.setattr(domain, "initial", lambda company, name: '<&">')
    root = parse_svg(domain.initials_svg("cus_1", "x", "y"))
    assert root.find(SVG_NS + "text").text == '<&">'
    assert root.get("aria-label") == '<&">'


@pytest.mark.parametrize("size", [0, 15, 2049, 100.0, True, "200"])
def test_initials_svg_refuses_an_odd_size(size):
    with pytest.raises(ValueError, match="size"):
        domain.initials_svg("cus_1", "Acme", "", size=size)


# --- the chain ----------------------------------------------------------------------------------

CUSTOMER = {"uuid": "cus_1", "company": "Acme", "name": "Bob", "email": "Bob@Acme.com",
            "website_url": "https://www.acme.com/about"}
BOB_HASH = hashlib.sha256(b"bob@acme.com").hexdigest()


class FakeSource:
    """A source that answers from a table and records what it was asked."""

    def __init__(self, answer=None):
        self.answer = answer
        self.asked = []

    def __call__(self, key):
        self.asked.append(key)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class Reports(list):
    def __call__(self, source, error):
        self.append((source, error))


def test_resolution_order_is_clearbit_then_gravatar_when_both_apply():
    assert domain.resolution_order(CUSTOMER) == (
        domain.Lookup("clearbit", "acme.com"), domain.Lookup("gravatar", BOB_HASH))


def test_resolution_order_skips_what_the_customer_does_not_allow():
    assert domain.resolution_order({**CUSTOMER, "website_url": "http://127.0.0.1"}) == (
        domain.Lookup("gravatar", BOB_HASH),)
    assert domain.resolution_order({**CUSTOMER, "email": ""}) == (domain.Lookup("clearbit", "acme.com"),)
    assert domain.resolution_order({"uuid": "cus_1"}) == ()


def test_resolve_takes_the_clearbit_logo_first():
    clearbit, gravatar = FakeSource(Image("image/png", PNG)), FakeSource(Image("image/png", PNG + b"g"))
    avatar = domain.resolve(CUSTOMER, {"clearbit": clearbit, "gravatar": gravatar})
    assert avatar == Avatar("clearbit", "image/png", PNG, '"' + hashlib.sha256(PNG).hexdigest() + '"')
    assert clearbit.asked == ["acme.com"]
    assert gravatar.asked == []


def test_resolve_takes_gravatar_when_clearbit_has_no_logo():
    clearbit, gravatar = FakeSource(None), FakeSource(Image("image/jpeg", b"\xff\xd8\xff-jpeg"))
    avatar = domain.resolve(CUSTOMER, {"clearbit": clearbit, "gravatar": gravatar})
    assert (avatar.source, avatar.content_type, avatar.body) == ("gravatar", "image/jpeg", b"\xff\xd8\xff-jpeg")
    assert gravatar.asked == [BOB_HASH]


def test_resolve_falls_back_to_the_generated_initial():
    avatar = domain.resolve(CUSTOMER, {"clearbit": FakeSource(None), "gravatar": FakeSource(None)})
    assert avatar == domain.generated_avatar(CUSTOMER)
    assert (avatar.source, avatar.content_type) == ("initials", "image/svg+xml")
    assert parse_svg(avatar.body).find(SVG_NS + "text").text == "A"


def test_a_failing_source_counts_as_none_and_is_reported():
    outage = ConnectionError("clearbit is down")
    reports = Reports()
    avatar = domain.resolve(CUSTOMER, {"clearbit": FakeSource(outage), "gravatar": FakeSource(Image("image/png", PNG))},
                            report=reports)
    assert avatar.source == "gravatar"
    assert reports == [("clearbit", outage)]


def test_every_source_failing_still_gives_the_initial():
    reports = Reports()
    avatar = domain.resolve(CUSTOMER, {"clearbit": FakeSource(RuntimeError("bug")),
                                       "gravatar": FakeSource(TimeoutError())}, report=reports)
    assert avatar.source == "initials"
    assert [source for source, _ in reports] == ["clearbit", "gravatar"]


def test_failures_go_to_the_log_by_default(caplog):
    with caplog.at_level(logging.WARNING, logger="services.avatars.domain"):
        domain.resolve(CUSTOMER, {"clearbit": FakeSource(RuntimeError("boom"))})
    assert "clearbit" in caplog.text and "boom" in caplog.text


@pytest.mark.parametrize("answer", [
    Image("image/svg+xml", b"<svg onload='alert(1)'/>"), Image("text/html", b"<html>"), Image("image/png", b""),
    "not an image",
])
def test_the_chain_refuses_what_it_must_not_serve_from_a_source(answer):
    reports = Reports()
    avatar = domain.resolve(CUSTOMER, {"clearbit": FakeSource(answer)}, report=reports)
    assert avatar.source == "initials"
    assert isinstance(reports[0][1], domain.UnsafeImage)


def test_a_source_without_a_fetcher_is_skipped():
    gravatar = FakeSource(Image("image/png", PNG))
    assert domain.resolve(CUSTOMER, {"gravatar": gravatar}).source == "gravatar"
    assert domain.resolve(CUSTOMER, {}).source == "initials"


def test_a_website_on_a_private_address_never_reaches_the_clearbit_fetcher():
    clearbit = FakeSource(Image("image/png", PNG))
    for website in ("http://127.0.0.1:8080/", "https://evil@127.0.0.1", "http://2130706433/", "http://localhost"):
        avatar = domain.resolve({**CUSTOMER, "website_url": website, "email": ""}, {"clearbit": clearbit})
        assert avatar.source == "initials"
    assert clearbit.asked == []


def test_interruptions_are_not_swallowed():
    class Stop(BaseException):
        pass
    with pytest.raises(Stop):
        domain.resolve(CUSTOMER, {"clearbit": FakeSource(Stop())})


def test_etag_is_a_strong_hash_of_the_body():
    first = Avatar.of(source="gravatar", content_type="image/png", body=PNG)
    assert first.etag == '"%s"' % hashlib.sha256(PNG).hexdigest()
    assert Avatar.of(source="clearbit", content_type="image/png", body=PNG + b"x").etag != first.etag
    assert not first.etag.startswith("W/")


# --- needs_refresh ------------------------------------------------------------------------------

@pytest.mark.parametrize("changes", [
    {"website_url": "https://other.com"}, {"email": "new@acme.com"}, {"name": "Robert"}, {"company": "Acme 2"},
    {"website_url": None}, {"city": "Paris", "company": ""},
])
def test_needs_refresh_when_an_avatar_input_changes(changes):
    assert domain.needs_refresh(CUSTOMER, changes) is True


@pytest.mark.parametrize("changes", [
    {}, {"city": "Paris"}, {"attributes": {"tags": ["vip"]}}, {"name": "Bob"}, {"company": "Acme", "zip": "1"},
])
def test_no_refresh_when_nothing_the_avatar_uses_changed(changes):
    assert domain.needs_refresh(CUSTOMER, changes) is False


def test_needs_refresh_treats_empty_and_missing_alike_and_an_unknown_customer_as_new():
    assert domain.needs_refresh({"website_url": None, "email": ""}, {"website_url": "", "email": None}) is False
    assert domain.needs_refresh(None, {"email": "bob@acme.com"}) is True
    assert domain.needs_refresh(None, {"city": "Paris"}) is False


# --- refresh_kind -------------------------------------------------------------------------------

SHOWN_INITIAL = domain.generated_avatar(CUSTOMER).etag  # "A" on cus_1's colour


@pytest.mark.parametrize("changes, kind", [
    ({"name": "Robert"}, "remember"),  # the company's letter is drawn, not the name's
    ({"company": "Apex"}, "remember"),  # another company, the same letter
    ({"company": "apex", "name": "Zed"}, "remember"),  # upper-cased: still "A"
    ({"company": "Zeta"}, "initial"),
    ({"company": None}, "initial"),  # the name's "B" now
    ({"company": "Acme", "name": "Bob"}, None),
    ({"email": "new@acme.com", "name": "Robert"}, "fetch"),
])
def test_a_shown_initial_is_redrawn_only_when_the_change_draws_another(changes, kind):
    assert domain.refresh_kind(CUSTOMER, changes, "initials", SHOWN_INITIAL) == kind


def test_a_name_change_redraws_an_initial_it_cannot_compare_and_never_a_logo():
    assert domain.refresh_kind(CUSTOMER, {"name": "Robert"}, "initials") == "initial"  # ETag unknown
    assert domain.refresh_kind(CUSTOMER, {"name": "Robert"}, "initials", '"other"') == "initial"
    assert domain.refresh_kind(CUSTOMER, {"company": "Zeta"}, "clearbit", SHOWN_INITIAL) == "remember"
    assert domain.refresh_kind(None, {"name": "Robert"}, None) == "fetch"


# --- out-of-order events and the cache's freshness ----------------------------------------------

def test_avatar_inputs_and_changes_keep_only_what_the_avatar_uses():
    inputs = domain.avatar_inputs({**CUSTOMER, "city": "Paris"})
    assert inputs == {"uuid": "cus_1", "website_url": "https://www.acme.com/about", "email": "Bob@Acme.com",
                      "name": "Bob", "company": "Acme"}
    assert domain.with_changes(inputs, {"name": "Robert", "city": "Lyon", "website_url": None}) == {
        **inputs, "name": "Robert", "website_url": None}


def test_an_avatar_from_an_older_customer_record_never_replaces_a_newer_one():
    older, newer = datetime(2024, 5, 1, tzinfo=timezone.utc), datetime(2024, 5, 2, tzinfo=timezone.utc)
    assert domain.supersedes(newer, older) and domain.supersedes(newer, newer) and domain.supersedes(older, None)
    assert not domain.supersedes(older, newer)
    assert not domain.supersedes(None, newer)


@pytest.mark.parametrize("value, expected", [
    (None, timedelta(days=7)), ("", timedelta(days=7)), ("  ", timedelta(days=7)), ("3600", timedelta(hours=1)),
    ("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)), ("12h", timedelta(hours=12)),
    ("7d", timedelta(days=7)), (" 2D ", timedelta(days=2)),
])
def test_max_age_reads_seconds_or_a_unit(value, expected):
    assert domain.max_age(value) == expected


@pytest.mark.parametrize("value", ["0", "-5", "1.5h", "7 days", "d", "1w", "99999999999"])
def test_max_age_refuses_what_is_not_a_positive_duration(value):
    with pytest.raises(ValueError, match="AVATAR_MAX_AGE"):
        domain.max_age(value)


def test_stale_avatars_are_looked_for_often_enough_but_at_most_every_minute():
    assert domain.refresh_check_interval(timedelta(seconds=2)) == 0.5
    assert domain.refresh_check_interval(timedelta(days=7)) == 60


def test_incomplete_avatars_go_stale_sooner_never_later_than_complete_ones():
    now = datetime(2024, 5, 10, tzinfo=timezone.utc)
    assert domain.stale_before(now, timedelta(days=7)) == (now - timedelta(days=7), now - domain.OUTAGE_RETRY)
    assert domain.stale_before(now, timedelta(minutes=1)) == (now - timedelta(minutes=1),) * 2
