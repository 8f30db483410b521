"""Avatar rules as plain functions: what to look up, in which order, and the generated initial.

The chain is Clearbit logo (by the website's domain) → Gravatar (by the email's hash) → an SVG
initial that is always computable from the customer record alone. Nothing here fetches, stores or
logs except `resolve`'s default failure report; `tests/unit/test_avatars_domain.py` covers it.

A customer is any mapping with the customers service's keys: `uuid`, `company`, `name`, `email`,
`website_url` (missing keys count as not set).
"""
import colorsys
import hashlib
import ipaddress
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Mapping
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import idna

CLEARBIT = "clearbit"
GRAVATAR = "gravatar"
INITIALS = "initials"

# Raster types only: a remote SVG is a document that can carry script, so it is never accepted.
REMOTE_IMAGE_TYPES = frozenset({
    "image/png", "image/jpeg", "image/gif", "image/webp", "image/x-icon", "image/vnd.microsoft.icon",
})
INITIALS_CONTENT_TYPE = "image/svg+xml"
TEXT_COLOUR = "#ffffff"
MIN_CONTRAST = 4.5  # WCAG 2 AA for normal text
FALLBACK_INITIAL = "?"
REFRESH_FIELDS = ("website_url", "email", "name", "company")
DEFAULT_MAX_AGE = timedelta(days=7)
OUTAGE_RETRY = timedelta(minutes=10)  # a source that could not answer is asked again this soon
MAX_CHECK_INTERVAL = 60.0  # seconds between looks for stale avatars, at most
DURATION = re.compile(r"([0-9]{1,9})([smhd]?)")
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
TOP_LEVEL_DOMAIN = re.compile(r"xn--[a-z0-9-]+|[a-z]{2,63}")  # never numeric: no 0x7f.1, 127.1
SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
# Special-use and private-use names (RFC 2606, 6761, 6762, 8375, 9476, ICANN's .internal) and the
# common intranet suffixes that never name a public company website.
PRIVATE_SUFFIXES = frozenset({
    "localhost", "local", "internal", "test", "invalid", "example", "onion", "arpa", "alt",
    "localdomain", "lan", "home", "corp", "intranet", "private",
})
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
# Upper-casing that would turn one letter into two ('ß' → 'SS'): the single capital instead.
SINGLE_CAPITALS = {"ß": "ẞ"}
INITIAL_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lo", "Nd"})  # not Lm: 'ʻOhana' starts with O
COMBINING_CATEGORIES = frozenset({"Mn", "Mc", "Me"})
VIRAMA = 9  # canonical combining class of a virama: 'क्ष' shows as 'क', not a half form
SVG_FONTS = "-apple-system, 'Segoe UI', Roboto, 'Noto Sans', 'Helvetica Neue', Arial, sans-serif"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Image:
    """An image as a remote source answered it."""

    content_type: str
    body: bytes


@dataclass(frozen=True)
class Avatar:
    """A customer's avatar: where it came from, its bytes, and a strong ETag (quoted, header-ready)."""

    source: str
    content_type: str
    body: bytes
    etag: str

    @classmethod
    def of(cls, *, source: str, content_type: str, body: bytes) -> "Avatar":
        """Return the avatar with its ETag computed from the body."""
        return cls(source=source, content_type=content_type, body=body, etag=etag_of(body))


@dataclass(frozen=True)
class Lookup:
    """One remote step of the chain: the source to ask and what to ask it for."""

    source: str
    key: str


Fetcher = Callable[[str], Image | None]
Report = Callable[[str, Exception], None]


def etag_of(body: bytes) -> str:
    """Return a strong ETag for the body: its SHA-256, quoted as the header wants it."""
    return f'"{hashlib.sha256(body).hexdigest()}"'


# --- Clearbit: the website's domain -------------------------------------------------------------

def website_domain(website_url: str | None) -> str | None:
    """Return the public host name of a website for Clearbit (ASCII, lower-case, no www.), else None."""
    if not isinstance(website_url, str):
        return None
    url = website_url.strip()
    if not url or any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in url):
        return None
    scheme = SCHEME.match(url)
    if scheme is None:
        url = "https://" + url  # a bare "example.com"; "javascript:x" then fails on its port
    elif scheme.group(1).lower() not in ("http", "https"):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # a malformed port raises ValueError
    except ValueError:
        return None
    if "@" in parts.netloc or "\\" in parts.netloc:
        return None  # userinfo: "https://acme.com@127.0.0.1" names 127.0.0.1, not acme.com
    host = _ascii_host(parts.hostname or "")
    if host is None or not is_public_host_name(host):
        return None
    if host.startswith("www.") and host.count(".") >= 2:
        host = host[len("www."):]
    return host


def _ascii_host(host: str) -> str | None:
    host = host.rstrip(".")
    try:
        if not host.isascii():
            # UTS 46 maps case, full-width letters and ideographic dots before encoding.
            host = idna.encode(host, uts46=True).decode("ascii")
        host = host.lower()
        for label in host.split("."):
            if label.startswith("xn--"):
                idna.decode(label)  # refuses punycode that decodes to nothing valid
    except (UnicodeError, ValueError):
        return None
    return host


def is_public_host_name(host: str) -> bool:
    """Return True for a lower-case ASCII host name that could name a public website (not an IP)."""
    if not isinstance(host, str):
        return False
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        pass
    labels = host.split(".")
    if len(labels) < 2 or len(host) > 253 or labels[-1] in PRIVATE_SUFFIXES:
        return False
    return all(HOST_LABEL.fullmatch(label) for label in labels) \
        and TOP_LEVEL_DOMAIN.fullmatch(labels[-1]) is not None


# --- Gravatar: the email's hash -----------------------------------------------------------------

def gravatar_hash(email: str | None) -> str | None:
    """Return Gravatar's identifier for an email (SHA-256 hex of it trimmed and lower-cased), else None."""
    if not isinstance(email, str):
        return None
    address = email.strip().lower()
    if len(address) > 254 or not EMAIL.fullmatch(address):
        return None
    return hashlib.sha256(address.encode("utf-8")).hexdigest()


# --- The generated initial ----------------------------------------------------------------------

def initial(company: str | None, name: str | None) -> str:
    """Return the upper-cased first letter or digit of the company, else of the name, else '?'."""
    for text in (company, name):
        found = _first_letter_or_digit(text)
        if found is not None:
            return found
    return FALLBACK_INITIAL


def _first_letter_or_digit(text: str | None) -> str | None:
    if not isinstance(text, str):
        return None
    # NFKC folds full-width forms, ligatures and circled digits into plain letters and digits.
    text = unicodedata.normalize("NFKC", text)
    for index, char in enumerate(text):
        if unicodedata.category(char) not in INITIAL_CATEGORIES:
            continue  # punctuation, spaces, symbols and emoji are skipped, never shown
        marks = ""
        for follower in text[index + 1:]:
            if unicodedata.category(follower) not in COMBINING_CATEGORIES:
                break
            marks += follower
        while marks and unicodedata.combining(marks[-1]) == VIRAMA:
            marks = marks[:-1]
        return unicodedata.normalize("NFC", _upper(char) + marks)
    return None


def _upper(char: str) -> str:
    if char in SINGLE_CAPITALS:
        return SINGLE_CAPITALS[char]
    upper = char.upper()
    letters = [c for c in upper if unicodedata.category(c) not in COMBINING_CATEGORIES]
    return upper if len(letters) == 1 else char  # 'ŉ' → 'ʼN' would be two letters: keep it


def background_colour(customer_uuid: str) -> str:
    """Return a '#rrggbb' colour derived from the uuid on which TEXT_COLOUR has contrast ≥ 4.5."""
    if not isinstance(customer_uuid, str) or not customer_uuid.strip():
        raise ValueError("customer_uuid: must be a non-blank string")
    digest = hashlib.sha256(customer_uuid.strip().lower().encode("utf-8")).digest()
    hue = int.from_bytes(digest[:2], "big") % 360 / 360
    saturation = 0.45 + digest[2] / 255 * 0.25
    lightness = 0.30 + digest[3] / 255 * 0.15
    colour = _hex(hue, lightness, saturation)
    while contrast_ratio(colour, TEXT_COLOUR) < MIN_CONTRAST:
        lightness -= 0.01  # darker until legible; at 0 it is black, contrast 21
        colour = _hex(hue, max(lightness, 0.0), saturation)
    return colour


def _hex(hue: float, lightness: float, saturation: float) -> str:
    red, green, blue = colorsys.hls_to_rgb(hue, lightness, saturation)
    return "#" + "".join(f"{round(channel * 255):02x}" for channel in (red, green, blue))


def contrast_ratio(first: str, second: str) -> float:
    """Return the WCAG 2 contrast ratio of two '#rrggbb' colours (1 to 21)."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def initials_svg(customer_uuid: str, company: str | None, name: str | None, size: int = 200) -> bytes:
    """Return a self-contained SVG (no scripts, no external references) of the customer's initial."""
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 2048:
        raise ValueError("size: must be an integer from 16 to 2048")
    letter = escape(initial(company, name), {'"': "&quot;"})
    half = size // 2
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'viewBox="0 0 {size} {size}" role="img" aria-label="{letter}">'
        f'<rect width="{size}" height="{size}" fill="{background_colour(customer_uuid)}"/>'
        f'<text x="{half}" y="{half}" dy="0.35em" text-anchor="middle" font-family="{SVG_FONTS}" '
        f'font-size="{size // 2}" font-weight="600" fill="{TEXT_COLOUR}">{letter}</text></svg>'
    ).encode("utf-8")


def generated_avatar(customer: Mapping, size: int = 200) -> Avatar:
    """Return the always-available last step of the chain: the customer's initial as SVG."""
    body = initials_svg(customer.get("uuid"), customer.get("company"), customer.get("name"), size)
    return Avatar.of(source=INITIALS, content_type=INITIALS_CONTENT_TYPE, body=body)


# --- The chain ----------------------------------------------------------------------------------

def resolution_order(customer: Mapping) -> tuple[Lookup, ...]:
    """Return the remote lookups worth trying for this customer, best first (the initial follows)."""
    lookups = []
    domain = website_domain(customer.get("website_url"))
    if domain is not None:
        lookups.append(Lookup(CLEARBIT, domain))
    email_hash = gravatar_hash(customer.get("email"))
    if email_hash is not None:
        lookups.append(Lookup(GRAVATAR, email_hash))
    return tuple(lookups)


class UnsafeImage(Exception):
    """A fetcher answered something the chain refuses to serve (empty, or not a raster image)."""


def resolve(customer: Mapping, fetchers: Mapping[str, Fetcher], *, report: Report | None = None) -> Avatar:
    """Return the first avatar a source has, falling back to the generated initial.

    `fetchers` maps a source (CLEARBIT, GRAVATAR) to a function of the lookup key returning an
    Image or None; a source without a fetcher is skipped. A fetcher that raises counts as "none"
    and the error goes to `report(source, error)` (default: a warning in the log).
    """
    report = _log_failure if report is None else report
    for lookup in resolution_order(customer):
        fetch = fetchers.get(lookup.source)
        if fetch is None:
            continue
        try:
            image = fetch(lookup.key)
            if image is None:
                continue
            _check_remote(image)
        except Exception as error:  # any fetcher bug or outage must leave the fallback reachable
            report(lookup.source, error)
            continue
        return Avatar.of(source=lookup.source, content_type=image.content_type, body=image.body)
    return generated_avatar(customer)


def _check_remote(image) -> None:
    if not isinstance(image, Image) or not isinstance(image.body, bytes) or not image.body:
        raise UnsafeImage("the fetcher returned no image bytes")
    if image.content_type not in REMOTE_IMAGE_TYPES:
        raise UnsafeImage(f"content type {image.content_type!r} is not an accepted raster image type")


def _log_failure(source: str, error: Exception) -> None:
    log.warning("avatar source %s failed: %s: %s", source, type(error).__name__, error)


FETCH_FIELDS = ("website_url", "email")  # what the Clearbit and Gravatar lookups depend on
INITIAL_FIELDS = ("name", "company")  # what only the generated initial depends on


def refresh_kind(old_customer: Mapping | None, changes: Mapping, shown_source: str | None,
                 shown_etag: str | None = None) -> str | None:
    """Return what a customer change calls for: "fetch" (look the image up again), "initial" (draw the
    generated initial again), "remember" (keep the new name or company for later, nothing to
    redraw), or None (nothing the avatar depends on changed).

    A name or company change cannot change a logo or a Gravatar, so no lookup is made for it;
    nor does it redraw a shown initial (ETag `shown_etag`) it draws the same, e.g. "n1" → "n2".
    With no avatar known yet, everything is looked up.
    """
    if shown_source is None:
        return "fetch" if needs_refresh(old_customer, changes) or old_customer is None else None
    if _changed(old_customer, changes, FETCH_FIELDS):
        return "fetch"
    if _changed(old_customer, changes, INITIAL_FIELDS):
        if shown_source == INITIALS and _draws_another_initial(old_customer, changes, shown_etag):
            return "initial"
        return "remember"
    return None


def _draws_another_initial(old_customer: Mapping | None, changes: Mapping, shown_etag: str | None) -> bool:
    """Whether the changed customer's generated initial differs from the shown one (True when unknown)."""
    if shown_etag is None or not (old_customer or {}).get("uuid"):
        return True
    return generated_avatar(with_changes(old_customer, changes)).etag != shown_etag


def _changed(old_customer: Mapping | None, changes: Mapping, fields: tuple[str, ...]) -> bool:
    old_customer = old_customer or {}
    return any(field in changes and (changes[field] or None) != (old_customer.get(field) or None)
               for field in fields)


def needs_refresh(old_customer: Mapping | None, changes: Mapping) -> bool:
    """Return True when the changes touch a field the avatar depends on (website, email, name, company)."""
    old_customer = old_customer or {}
    return any(
        field in changes and (changes[field] or None) != (old_customer.get(field) or None)
        for field in REFRESH_FIELDS
    )


def avatar_inputs(customer: Mapping) -> dict:
    """Return the customer fields an avatar is resolved from (uuid, website_url, email, name, company)."""
    return {field: customer.get(field) for field in ("uuid",) + REFRESH_FIELDS}


def with_changes(inputs: Mapping, changes: Mapping) -> dict:
    """Return the avatar inputs with a customer_updated event's changes applied."""
    return {**inputs, **{field: changes[field] for field in REFRESH_FIELDS if field in changes}}


def supersedes(incoming: datetime | None, stored: datetime | None) -> bool:
    """Return True when an avatar resolved from the customer as of `incoming` may replace one as of `stored`.

    Events arrive out of order: an avatar resolved from an older version of the customer never
    replaces one resolved from a newer version.
    """
    return stored is None or (incoming is not None and incoming >= stored)


# --- Keeping the cache fresh --------------------------------------------------------------------

def max_age(value: str | None) -> timedelta:
    """Return AVATAR_MAX_AGE as a timedelta: whole seconds, or a number ending in s, m, h or d."""
    if value is None or not value.strip():
        return DEFAULT_MAX_AGE
    found = DURATION.fullmatch(value.strip().lower())
    if found is None or int(found.group(1)) == 0:
        raise ValueError(f"AVATAR_MAX_AGE: {value!r} must be a positive duration, e.g. '604800', '12h' or '7d'")
    return timedelta(seconds=int(found.group(1)) * DURATION_UNITS[found.group(2)])


def refresh_check_interval(age: timedelta) -> float:
    """Return the seconds between looks for stale avatars: a quarter of the max age, at most a minute."""
    return min(age.total_seconds() / 4, MAX_CHECK_INTERVAL)


def stale_before(now: datetime, age: timedelta) -> tuple[datetime, datetime]:
    """Return the cut-offs (complete, incomplete): avatars fetched before them are refreshed.

    An avatar resolved while a source could not answer is incomplete and is asked again
    after OUTAGE_RETRY (or the max age, if that is shorter).
    """
    return now - age, now - min(age, OUTAGE_RETRY)
