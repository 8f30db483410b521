"""Contact rules as plain functions: what a valid contact is, where it sits among its
customer's contacts, how two contacts merge, and where a customer's contacts belong once
the customer is deleted or merged.

No nameko, database or network here; `tests/unit/test_contacts_domain.py` covers it.
"""
import math
import re
from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlsplit

from roster import timestamps
from roster.errors import ValidationFailed, invalid

# Free-text fields a contact carries, with their maximum length.
TEXT_FIELDS = {
    "first_name": 200,
    "last_name": 200,
    "title": 200,
    "phone": 100,
    "notes": 10_000,
    "external_id": 500,
}
# Everything a create or an update may set (besides customer_uuid and data_source_uuid).
EDITABLE_FIELDS = (
    "external_id", "first_name", "last_name", "position", "title", "email", "phone",
    "linked_in", "twitter", "notes", "custom", "last_seen",
)
# Fields a merge fills on the survivor when the survivor's own value is empty.
FILLABLE_FIELDS = (
    "external_id", "first_name", "last_name", "title", "email", "phone",
    "linked_in", "twitter", "notes", "last_seen",
)
# What `PATCH /v1/customers/{uuid}` may change on the customer's primary contact.
PRIMARY_CONTACT_FIELDS = ("first_name", "last_name", "email", "title", "phone", "linked_in", "twitter", "notes")
PRIMARY_CONTACT = "primary_contact."
# The primary contact is the first; the others follow in creation order unless a client says.
PRIMARY_POSITION = 1
MAX_POSITION = 2_147_483_647
# Filters of `GET /v1/contacts` (exact match; `email` ignores case).
LIST_FILTERS = ("customer_uuid", "data_source_uuid", "email", "customer_external_id", "external_id")
URL_FIELD_LENGTH = 500  # linked_in, twitter
MAX_REFERENCE_LENGTH = 100  # longer than any uuid this platform hands out
# Custom attributes: sane bounds so no contact (and no event about it) grows without limit.
MAX_CUSTOM_KEYS = 200
MAX_CUSTOM_TEXT = 10_000
INT64 = (-(2**63), 2**63 - 1)
# What became of a customer, as this service heard (see models.KnownCustomer).
ACTIVE, DELETED, MERGED = "active", "deleted", "merged"

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
LINKED_IN_HOST = re.compile(r"^([a-z]{2,3}\.|www\.)?linkedin\.com$")
LINKED_IN_HANDLE = re.compile(r"^(in/|company/|pub/|school/)?[A-Za-z0-9][A-Za-z0-9\-_%.]{1,99}/?$")
TWITTER_HOSTS = ("twitter.com", "www.twitter.com", "mobile.twitter.com", "x.com", "www.x.com")
TWITTER_HANDLE = re.compile(r"^@?[A-Za-z0-9_]{1,15}$")
CUSTOM_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,199}$")


def _fail(field: str, reason: str, prefix: str = ""):
    name = f"{prefix}{field}"
    raise ValidationFailed(f"{name}: {reason}", param=name)


def _text(field: str, value, prefix: str = "") -> str:
    """Return `value` if it is a string PostgreSQL can store (no NUL byte); else a 422."""
    if not isinstance(value, str):
        _fail(field, "must be a string", prefix)
    if "\x00" in value:
        _fail(field, "must not contain NUL characters", prefix)
    return value


def is_blank(value) -> bool:
    """True for the values a merge treats as empty: None, "" (or spaces), {}."""
    return value is None or (isinstance(value, str) and not value.strip()) or value == {}


def clean_email(value, prefix: str = "") -> str | None:
    """Return the email trimmed; None for blank; a 422 when it is not an email address."""
    if value is None:
        return None
    email = _text("email", value, prefix).strip()
    if not email:
        return None
    if len(email) > 320 or not EMAIL.fullmatch(email):
        _fail("email", f"{value!r} is not an email address", prefix)
    return email


def clean_linked_in(value, prefix: str = "") -> str | None:
    """Return a LinkedIn profile URL or handle as given (trimmed); anything else is a 422.

    Accepted: `https://www.linkedin.com/in/jane`, `linkedin.com/company/acme`,
    `uk.linkedin.com/in/jane`, or a bare handle such as `jane-doe` or `in/jane-doe`.
    """
    if value is None:
        return None
    text = _text("linked_in", value, prefix).strip()
    if not text:
        return None
    if len(text) > URL_FIELD_LENGTH:
        _fail("linked_in", f"may be at most {URL_FIELD_LENGTH} characters", prefix)
    if _one_word(text) and _looks_like_url(text):
        host, path = _host_and_path(text)
        if host is not None and LINKED_IN_HOST.fullmatch(host) and path.strip("/"):
            return text
    elif LINKED_IN_HANDLE.fullmatch(text):
        return text
    _fail("linked_in", f"{value!r} is not a LinkedIn URL (https://www.linkedin.com/in/...) or handle", prefix)


def clean_twitter(value, prefix: str = "") -> str | None:
    """Return a Twitter/X profile URL or handle as given (trimmed); anything else is a 422.

    Accepted: `https://twitter.com/jane`, `x.com/jane`, `@jane`, `jane`.
    """
    if value is None:
        return None
    text = _text("twitter", value, prefix).strip()
    if not text:
        return None
    if len(text) > URL_FIELD_LENGTH:
        _fail("twitter", f"may be at most {URL_FIELD_LENGTH} characters", prefix)
    if _one_word(text) and _looks_like_url(text):
        host, path = _host_and_path(text)
        handle = path.strip("/").split("/")[0] if path else ""
        if host in TWITTER_HOSTS and TWITTER_HANDLE.fullmatch(handle) and not handle.startswith("@"):
            return text
    elif TWITTER_HANDLE.fullmatch(text):
        return text
    _fail("twitter", f"{value!r} is not a Twitter/X URL (https://twitter.com/...) or @handle", prefix)


def _one_word(text: str) -> bool:
    # urlsplit drops tabs and newlines (as browsers do), so a URL holding one would pass the checks
    return not any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in text)


def _looks_like_url(text: str) -> bool:
    return "://" in text or "." in text.split("/")[0]


def _host_and_path(text: str) -> tuple[str | None, str]:
    url = text if "://" in text else "https://" + text
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError on a malformed port
    except ValueError:
        return None, ""
    if parts.scheme.lower() not in ("http", "https") or " " in text:
        return None, ""
    return (parts.hostname or "").lower(), parts.path


def clean_position(value, prefix: str = "") -> int | None:
    """Return the position as an int ≥ 1 (digit strings accepted); None when absent; else a 422."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        _fail("position", "must be a positive integer", prefix)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*\+?\d+\s*", value):
        value = int(value)
    if not isinstance(value, int) or value < 1:
        _fail("position", f"must be a positive integer, not {value!r}", prefix)
    if value > MAX_POSITION:
        _fail("position", "is too large", prefix)
    return value


def clean_text(field: str, value, prefix: str = "") -> str | None:
    """Return a free-text field; numbers are not silently turned into text.

    A blank external id is no external id (it names nothing, and many contacts have none).
    """
    if value is None:
        return None
    _text(field, value, prefix)
    if len(value) > TEXT_FIELDS[field]:
        _fail(field, f"may be at most {TEXT_FIELDS[field]} characters", prefix)
    if field == "external_id" and not value.strip():
        return None
    return value


def parse_timestamp(value, field: str = "last_seen", prefix: str = "") -> datetime | None:
    """Return an aware UTC datetime from ISO-8601 (T or space, with or without zone, or a date)."""
    return timestamps.parse(value, f"{prefix}{field}")


def clean_custom(value, prefix: str = "") -> dict:
    """Return custom attributes as a map; accepts `[{"key", "value"}, ...]` or `{key: value}`.

    Values are scalars (string, number, boolean) or null; strings up to MAX_CUSTOM_TEXT
    characters, integers within 64 bits, numbers finite.
    """
    if value is None:
        return {}
    if isinstance(value, list):
        pairs = []
        for item in value:
            if not isinstance(item, dict) or "key" not in item:
                _fail("custom", 'must be a list of {"key": ..., "value": ...} objects', prefix)
            pairs.append((item["key"], item.get("value")))
    elif isinstance(value, dict):
        pairs = list(value.items())
    else:
        _fail("custom", 'must be a list of {"key": ..., "value": ...} objects or a map', prefix)
    custom = {}
    for key, item_value in pairs:
        if not isinstance(key, str) or not CUSTOM_KEY.fullmatch(key):
            _fail("custom", f"key {key!r} must be letters, digits, '_' or '-' (at most 200)", prefix)
        if isinstance(item_value, dict) and "value" in item_value:  # {"value": .., "source": ..}
            item_value = item_value["value"]
        custom[key] = clean_custom_value(key, item_value, prefix)
    if len(custom) > MAX_CUSTOM_KEYS:
        _fail("custom", f"may hold at most {MAX_CUSTOM_KEYS} keys", prefix)
    return custom


def clean_custom_value(key: str, value, prefix: str = ""):
    """Return one custom attribute value if it is a storable scalar; else a 422 naming `custom.<key>`."""
    field = f"custom.{key}"
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if len(_text(field, value, prefix)) > MAX_CUSTOM_TEXT:
            _fail(field, f"may be at most {MAX_CUSTOM_TEXT} characters", prefix)
        return value
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            _fail(field, "must fit in 64 bits (a signed integer)", prefix)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            _fail(field, "must be a finite number", prefix)
        if abs(value) >= 2**63:  # the JSON parser reads an integer beyond 64 bits as a float: its digits are gone
            _fail(field, "must lie within ±2^63 (an integer must fit in 64 bits)", prefix)
        return value
    _fail(field, "must be a string, number, boolean or null", prefix)


def clean_fields(data: dict, prefix: str = "") -> dict:
    """Return the editable fields present in `data`, each checked and normalised; a 422 names the field.

    Fields absent from `data` are absent from the result (an update leaves them alone);
    `prefix` is put in front of field names in errors (e.g. `primary_contact.`).
    """
    if not isinstance(data, dict):
        raise ValidationFailed(f"{prefix.rstrip('.') or 'body'}: must be an object",
                               param=prefix.rstrip(".") or None)
    cleaned = {}
    for field in EDITABLE_FIELDS:
        if field not in data:
            continue
        value = data[field]
        if field == "email":
            cleaned[field] = clean_email(value, prefix)
        elif field == "linked_in":
            cleaned[field] = clean_linked_in(value, prefix)
        elif field == "twitter":
            cleaned[field] = clean_twitter(value, prefix)
        elif field == "position":
            cleaned[field] = clean_position(value, prefix)
        elif field == "custom":
            cleaned[field] = clean_custom(value, prefix)
        elif field == "last_seen":
            cleaned[field] = parse_timestamp(value, "last_seen", prefix)
        else:
            cleaned[field] = clean_text(field, value, prefix)
    return cleaned


def clean_changes(data: dict) -> dict:
    """Return the fields an update sets, checked; a null position leaves the position as it is."""
    fields = clean_fields(data)
    if "position" in fields and fields["position"] is None:
        del fields["position"]
    return fields


def clean_primary_contact(data) -> dict:
    """Return the primary-contact fields of a customer update, checked; a 422 names `primary_contact.<field>`.

    Only PRIMARY_CONTACT_FIELDS are taken; other keys are ignored, as unknown keys are everywhere.
    """
    if not isinstance(data, dict):
        raise invalid(PRIMARY_CONTACT.rstrip("."), "must be an object")
    return clean_fields({field: data[field] for field in PRIMARY_CONTACT_FIELDS if field in data}, PRIMARY_CONTACT)


def required_reference(data: dict, field: str) -> str:
    """Return a required uuid reference (customer_uuid, data_source_uuid); a 422 when missing or malformed."""
    value = data.get(field)
    if not isinstance(value, str) or not value.strip():
        raise invalid(field, "is required")
    if not is_reference(value.strip()):
        raise invalid(field, f"must be a uuid of at most {MAX_REFERENCE_LENGTH} characters")
    return value.strip()


def is_reference(value) -> bool:
    """True when `value` could name a record: a short string without NUL (others name nothing)."""
    return isinstance(value, str) and len(value) <= MAX_REFERENCE_LENGTH and "\x00" not in value


def list_filters(query: dict) -> dict:
    """Return the contact filters in `query` (other keys ignored, blanks dropped, email lower-cased).

    A filter that is not a string, or holds a NUL, is a 422 naming it.
    """
    filters = {}
    for name in LIST_FILTERS:
        value = (query or {}).get(name)
        if value is None:
            continue
        value = _text(name, value).strip()
        if value:
            filters[name] = value.lower() if name == "email" else value
    return filters


def next_position(highest: int | None) -> int:
    """Return the position of a customer's next contact: 1 (the primary) for its first, else after the highest."""
    return PRIMARY_POSITION if highest is None else min(highest + 1, MAX_POSITION)


def positions_after(highest: int | None, count: int) -> list[int]:
    """Return the positions of `count` contacts joining a customer whose highest position is `highest`."""
    first = next_position(highest)
    return [min(first + n, MAX_POSITION) for n in range(count)]


def updated_custom(current: dict, changes: dict) -> dict:
    """Return custom attributes after an update: given keys are set, a null value removes its key."""
    result = dict(current or {})
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    if len(result) > MAX_CUSTOM_KEYS and len(result) > len(current or {}):
        raise invalid("custom", f"a contact may hold at most {MAX_CUSTOM_KEYS} keys")
    return result


def merged_contact(into: dict, merged_from: dict) -> dict:
    """Return the changes that make `into` the merge of both contacts.

    The survivor keeps every value it has (its position included); each of its empty fields
    is filled from the other contact; `last_seen` becomes the later of the two; custom
    attributes are the union, the survivor's value winning on a shared key. Only changed
    fields are returned.
    """
    changes = {}
    for field in FILLABLE_FIELDS:
        if is_blank(into.get(field)) and not is_blank(merged_from.get(field)):
            changes[field] = merged_from[field]
    into_seen, from_seen = into.get("last_seen"), merged_from.get("last_seen")
    if into_seen is not None and from_seen is not None and from_seen > into_seen:
        changes["last_seen"] = from_seen
    into_custom = into.get("custom") or {}
    union = {**(merged_from.get("custom") or {}), **into_custom}
    if union != into_custom:
        changes["custom"] = union
    return changes


# --- customers, as this service knows them ---------------------------------------------------

def survivor_of(customer_uuid: str, fate: Callable[[str], tuple[str, str | None] | None]) -> str | None:
    """Return the customer that now holds `customer_uuid`'s contacts, following merges; None once deleted.

    `fate(uuid)` gives `(state, merged_into)` of a customer this service heard about, or
    None for one it knows nothing against (it is taken to exist).
    """
    seen = set()
    current = customer_uuid
    while current not in seen:
        seen.add(current)
        known = fate(current)
        if known is None or known[0] == ACTIVE:
            return current
        state, merged_into = known
        if state != MERGED or merged_into is None:
            return None
        current = merged_into
    return None  # a merge cycle cannot happen; treat it as gone rather than loop


def check_can_hold_contacts(customer_uuid: str, state: str, merged_into: str | None) -> None:
    """Refuse (422 naming customer_uuid) a new contact for a customer known to be deleted or merged away."""
    if state == DELETED:
        raise invalid("customer_uuid", f"customer {customer_uuid} was deleted")
    if state == MERGED:
        raise invalid("customer_uuid", f"customer {customer_uuid} was merged into {merged_into}")


# --- billing-system syncs and overrides -------------------------------------------------------

# What a sync sets on a contact (when given), and what a user may protect from it.
SYNCED_FIELDS = ("first_name", "last_name", "email", "phone", "title", "position")
OVERRIDABLE_FIELDS = ("first_name", "last_name", "position", "title", "email", "phone", "linked_in", "twitter",
                      "notes")


def contact_overrides(current: dict | None, given) -> dict:
    """Return a contact's overrides once `given` (`{field: true | false}`) is applied; a 422 names a bad key."""
    result = dict(current or {})
    if given is None:
        return result
    if not isinstance(given, dict):
        raise invalid("overrides", "must be an object of field: true or false")
    for key, marked in given.items():
        if key not in OVERRIDABLE_FIELDS:
            raise invalid(f"overrides.{str(key)[:100]}",
                          f"is not a field that can be overridden; one of {', '.join(OVERRIDABLE_FIELDS)}")
        if not isinstance(marked, bool):
            raise invalid(f"overrides.{key}", "must be true or false")
        if marked:
            result[key] = True
        else:
            result.pop(key, None)
    return result


def synced_contacts(contacts) -> list[dict]:
    """Return the checked fields of a connector's contacts; each needs an external id. A 422 names
    `contacts[i].<field>`."""
    if not isinstance(contacts, list):
        raise invalid("contacts", "must be a list of contacts")
    checked, seen = [], set()
    for index, data in enumerate(contacts):
        prefix = f"contacts[{index}]."
        if not isinstance(data, dict):
            raise invalid(f"contacts[{index}]", "must be an object")
        fields = clean_fields({field: data[field] for field in ("external_id",) + SYNCED_FIELDS if field in data},
                              prefix)
        if not fields.get("external_id"):
            _fail("external_id", "is required to sync a contact", prefix)
        if fields["external_id"] in seen:
            _fail("external_id", "appears twice in one sync", prefix)
        seen.add(fields["external_id"])
        checked.append(fields)
    return checked


def synced_changes(fields: dict, overrides: dict | None) -> dict:
    """Return what a sync sets on an existing contact: the fields given but its external id, its
    position (its place among the customer's contacts is Roster's) and overridden fields."""
    protected = set(overrides or {}) | {"external_id", "position"}
    return {field: value for field, value in fields.items() if field not in protected}
