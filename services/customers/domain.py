"""Customer rules as plain functions on plain values: every field's validation and limits,
statuses, websites, tags, typed custom attributes, merges and the billing projection.

The customers service decides with these rules whoever calls it (the gateway, billing_sync,
a script over RPC); the gateway only checks shapes. No nameko, database or network here;
`tests/unit/test_customers_domain.py` covers it.

Limits (documented in README.md and docs/events.md), chosen so one customer record stays
under MAX_RECORD_BYTES encoded (see `tests/unit/test_customers_domain.py`):
text fields as in TEXT_LIMITS; emails 320; web addresses 2,000; `external_id` 500; tags 200
characters and MAX_TAGS per customer; custom attribute keys 200 characters, String values
255 (ChartMogul's documented limit), sources 100, MAX_CUSTOM_ATTRIBUTES per customer;
Integer values signed 64-bit; Decimal values at most 30 digits before the point and 10
after; MAX_EXTERNAL_IDS per customer (merges). No text may contain NUL.
"""
import re
from decimal import Decimal, InvalidOperation
from typing import NamedTuple
from urllib.parse import urlsplit

from iso3166 import countries_by_alpha2

from roster import timestamps
from roster.errors import UnprocessableEvent, ValidationFailed, invalid

LEAD_STATUSES = ("New Lead", "Working Lead", "Qualified Lead", "Unqualified Lead")
BILLING_STATUSES = ("Active", "Past Due", "Cancelled")
STATUS_ALIASES = {"lead": "New Lead"}  # the bare "Lead" of older API versions

TEXT_LIMITS = {"name": 500, "company": 500, "city": 200, "state": 200, "zip": 40}
EMAIL_FIELDS = ("email", "owner")
EMAIL_MAX = 320
URL_MAX = 2000
EXTERNAL_ID_MAX = 500
DATA_SOURCE_UUID_MAX = 40
SYSTEM_MAX = 100
TAG_MAX = 200
MAX_TAGS = 100
MAX_CUSTOM_ATTRIBUTES = 100
MAX_EXTERNAL_IDS = 100
CUSTOM_STRING_MAX = 255
CUSTOM_SOURCE_MAX = 100
MAX_RECORD_BYTES = 1024 * 1024  # one customer, JSON-encoded, in the worst case the limits allow

CUSTOM_TYPES = ("String", "Integer", "Decimal", "Timestamp", "Boolean")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
DECIMAL_DIGITS = (30, 10)  # at most 30 digits before the point and 10 after
CUSTOM_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,199}$")
HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
TOP_LEVEL_DOMAIN = re.compile(r"^(xn--[a-z0-9-]+|[a-z]{2,63})$")
EMAIL_LOCAL_PART = re.compile(r"^[^\s@\"(),:;<>\[\]\\]{1,64}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
TIME_FIELDS = ("lead_created_at", "free_trial_started_at")


class Attribute(NamedTuple):
    """A typed custom attribute as stored: its type, value and where it came from."""

    type: str
    value: object
    source: str


# ---- text ---------------------------------------------------------------------------------

def text(value, field: str, *, max_length: int, required: bool = False) -> str | None:
    """Return `value` as text of at most `max_length` characters; None stays None unless required."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    if required and not value.strip():
        raise invalid(field, "must not be empty")
    if len(value) > max_length:
        raise invalid(field, f"may be at most {max_length} characters")
    if "\x00" in value:
        raise invalid(field, "may not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no database or JSON reader takes it
        raise invalid(field, "is not valid Unicode text")
    return value


HISTORY_KEYS_MAX = 50  # custom attributes one retrieve may ask the history of
HISTORY_VALUES_MAX = 100  # the latest values answered per attribute (all are kept)


def history_keys(value) -> list[str]:
    """The custom attribute keys `attributes_with_history` names ("custom.key,custom.other", keys
    case-sensitive); a 422 for anything else, naming it."""
    if not isinstance(value, str) or not value.strip():
        raise invalid("attributes_with_history", "must name custom attributes: custom.<key>[,custom.<key>]")
    keys = []
    for part in (piece.strip() for piece in value.split(",")):
        scope, _, key = part.partition(".")
        if scope != "custom" or not CUSTOM_KEY.fullmatch(key):
            raise invalid("attributes_with_history", f"{part[:210]!r} is not custom.<key> (only custom "
                                                     "attributes keep a history)")
        if key not in keys:
            keys.append(key)
    if len(keys) > HISTORY_KEYS_MAX:
        raise invalid("attributes_with_history", f"at most {HISTORY_KEYS_MAX} attributes")
    return keys


def findable(value, max_length: int = DATA_SOURCE_UUID_MAX) -> bool:
    """Return whether `value` could name a stored row (a uuid with NUL or too long never does)."""
    return isinstance(value, str) and 0 < len(value) <= max_length and "\x00" not in value


def email_address(value, field: str = "email") -> str:
    """Return an email address as given (trimmed); "" stays ""; anything else not an address is a 422."""
    address = (text(value, field, max_length=EMAIL_MAX) or "").strip()
    if not address:
        return ""
    local, at, host = address.rpartition("@")
    if not at or not EMAIL_LOCAL_PART.fullmatch(local) or not _is_host_name(_ascii_host(host)):
        raise invalid(field, f"{address!r} is not an email address")
    return address


def _ascii_host(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return ""


def country_code(value) -> str | None:
    """Return an ISO 3166-1 alpha-2 code upper-cased ("de" → "DE"); a non-code is a 422."""
    code = (text(value, "country", max_length=100) or "").strip().upper()
    if not code:
        return None
    if code not in countries_by_alpha2:
        raise invalid("country", f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return code


def normalise_website(value, field: str = "website_url") -> str | None:
    """Return the website as a URL: a bare domain gets `https://`; a non-host is a 422."""
    value = text(value, field, max_length=URL_MAX)
    if value is None or value.strip() == "":
        return None
    url = value.strip()
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in url):
        # urlsplit drops tabs and newlines (as browsers do), so they would pass the host check
        raise invalid(field, f"{value!r} is not a web address with a host name")
    if not re.match(r"^https?://", url, re.IGNORECASE):
        if "://" in url:
            raise invalid(field, "only http:// and https:// addresses are allowed")
        url = "https://" + url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # raises ValueError on a malformed port
    except ValueError:
        host = ""
    if not _is_host_name(host):
        raise invalid(field, f"{value!r} is not a web address with a host name")
    if len(url) > URL_MAX:
        raise invalid(field, f"may be at most {URL_MAX} characters")
    scheme, rest = url.split("://", 1)
    return f"{scheme.lower()}://{rest}"


def _is_host_name(host: str) -> bool:
    labels = host.lower().rstrip(".").split(".")
    if len(labels) < 2 or len(host) > 253:
        return False
    return all(HOST_LABEL.fullmatch(label) for label in labels) and bool(TOP_LEVEL_DOMAIN.fullmatch(labels[-1]))


# ---- statuses -----------------------------------------------------------------------------

def canonical_status(value: str) -> str | None:
    """Return the canonical spelling of any status (`past_due` → `Past Due`), or None."""
    words = value.replace("_", " ").strip().lower()
    if words in STATUS_ALIASES:
        return STATUS_ALIASES[words]
    for status in LEAD_STATUSES + BILLING_STATUSES:
        if status.lower() == words:
            return status
    return None


def settable_status(value, current: str | None = None) -> str:
    """Return the lead status a user may set; billing statuses and unknown words are a 422."""
    status = canonical_status(value) if isinstance(value, str) and len(value) <= 40 else None
    if status is None:
        raise invalid("status", f"must be one of {', '.join(LEAD_STATUSES)}")
    if status in BILLING_STATUSES:
        raise invalid("status", f"{status} is derived from billing data and cannot be set by hand")
    if current in BILLING_STATUSES:
        raise invalid("status", f"this customer is a subscriber ({current}); a lead status cannot replace it")
    return status


def status_filter(value) -> str:
    """Return the status a list filter asks for, accepting space and underscore forms."""
    status = canonical_status(value) if isinstance(value, str) and len(value) <= 40 else None
    if status is None:
        raise invalid("status", f"must be one of {', '.join(LEAD_STATUSES + BILLING_STATUSES)}")
    return status


# ---- a customer's own fields --------------------------------------------------------------

def profile(data: dict, *, current_status: str | None = None) -> dict:
    """Return the column values the profile fields present in `data` set, each checked and normalised.

    `name`, `email` and `company` are "" when cleared; the others None. Setting `status`
    sets the lead status (a customer with a billing status keeps it: a 422).
    """
    values = {}
    for field, limit in TEXT_LIMITS.items():
        if field in data:
            value = text(data[field], field, max_length=limit)
            values[field] = value if value is not None or field in ("city", "state", "zip") else ""
    for field in EMAIL_FIELDS:
        if field in data:
            values[field] = email_address(data[field], field) or ("" if field == "email" else None)
    if "email" in values:
        values["email_lower"] = values["email"].lower()
    if "country" in data:
        values["country"] = country_code(data["country"])
    for field in TIME_FIELDS:
        if field in data:
            values[field] = timestamps.parse(_time_text(data[field], field), field, not_in_future=True)
    if "website_url" in data:
        values["website_url"] = normalise_website(data["website_url"])
    if "billing_system_url" in data:
        values["billing_system_url"] = normalise_website(data["billing_system_url"], "billing_system_url")
    if data.get("status") is not None:
        values["status"] = values["lead_status"] = settable_status(data["status"], current=current_status)
    return values


def _time_text(value, field: str):
    return text(value, field, max_length=64) if isinstance(value, str) else value


class NewCustomer(NamedTuple):
    """A customer to create, every part checked."""

    data_source_uuid: str
    external_id: str
    billing_system_type: str | None
    profile: dict
    tags: list[str]
    custom: dict[str, Attribute]


def record_identity(data, attributes_reason: str) -> tuple[dict, str, str, str | None]:
    """Check a customer record's shape and identity; return its attributes object, data source
    uuid, external id and billing system type. A 422 names the first bad field."""
    if not isinstance(data, dict):
        raise ValidationFailed("the customer must be an object")
    attributes = data.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise invalid("attributes", attributes_reason)
    return (
        attributes,
        text(data.get("data_source_uuid"), "data_source_uuid", max_length=DATA_SOURCE_UUID_MAX, required=True),
        text(data.get("external_id"), "external_id", max_length=EXTERNAL_ID_MAX, required=True),
        text(data.get("billing_system_type"), "billing_system_type", max_length=SYSTEM_MAX),
    )


def new_customer(data: dict) -> NewCustomer:
    """Return the checked parts of a customer to create; a 422 names the first bad field."""
    attributes, source, external_id, system = record_identity(data, "must be an object with tags and custom")
    return NewCustomer(
        data_source_uuid=source,
        external_id=external_id,
        billing_system_type=system,
        profile=profile(data),
        tags=tags_to_add([], attributes.get("tags") or []),
        custom=added_attributes({}, attributes.get("custom") or []),
    )


SEARCH_MAX = 200


def search_text(*parts: str | None) -> str:
    """Return what a search by part of a name, company or email matches: the parts, case-folded,
    with runs of white space made one space (so "ACME  corp" finds "Acme Corp")."""
    return " ".join(" ".join(part.split()).casefold() for part in parts if part and part.strip())


def list_filters(filters) -> dict:
    """Return the list filters given, checked (`status` in its canonical spelling, `q` folded)."""
    if not isinstance(filters, dict):
        raise ValidationFailed("filters must be an object")
    limits = {"data_source_uuid": DATA_SOURCE_UUID_MAX, "external_id": EXTERNAL_ID_MAX, "email": EMAIL_MAX,
              "system": SYSTEM_MAX, "status": 40}
    checked = {}
    for name, limit in limits.items():
        value = filters.get(name)
        if value not in (None, ""):
            checked[name] = text(value, name, max_length=limit)
    if "status" in checked:
        checked["status"] = status_filter(checked["status"])
    if "email" in checked:
        checked["email"] = checked["email"].strip().lower()
        if not checked["email"]:  # blank would otherwise mean "no filter": every customer
            raise invalid("email", "give an email address to look for")
    if filters.get("q") not in (None, ""):
        query = search_text(text(filters["q"], "q", max_length=SEARCH_MAX))
        if not query:
            raise invalid("q", "give some text to look for")
        checked["q"] = query
    return checked


# ---- tags -----------------------------------------------------------------------------------

def clean_tags(tags, field: str = "tags") -> list[str]:
    """Return the tags trimmed and without repeats, in the order given; blank tags are a 422."""
    if not isinstance(tags, list):
        raise invalid(field, "must be a list of strings")
    cleaned: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise invalid(field, "every tag must be a non-empty string")
        tag = text(tag.strip(), field, max_length=TAG_MAX)
        if tag not in cleaned:
            cleaned.append(tag)
        if len(cleaned) > MAX_TAGS:
            raise invalid(field, f"a customer may have at most {MAX_TAGS} tags")
    return cleaned


def tags_to_add(current: list[str], tags) -> list[str]:
    """Return the tags of `tags` the customer does not have yet; more than MAX_TAGS in all is a 422."""
    new = [tag for tag in clean_tags(tags) if tag not in current]
    if len(current) + len(new) > MAX_TAGS:
        raise invalid("tags", f"a customer may have at most {MAX_TAGS} tags")
    return new


def tags_to_remove(current: list[str], tags) -> list[str]:
    """Return the tags of `tags` the customer has."""
    unwanted = clean_tags(tags)
    return [tag for tag in current if tag in unwanted]


def merged_tags(into_tags: list[str], from_tags: list[str]) -> list[str]:
    """Return the survivor's tags followed by the merged-away customer's new ones."""
    return into_tags + [tag for tag in from_tags if tag not in into_tags]


# ---- custom attributes --------------------------------------------------------------------

def check_custom_key(key, field: str = "custom") -> str:
    """Return the key if it is a simple name (letters, digits, `_`, `-`; at most 200)."""
    if not isinstance(key, str) or not CUSTOM_KEY.fullmatch(key):
        raise invalid(field, f"key {key!r} must be letters, digits, '_' or '-' (at most 200)")
    return key


def coerce_custom_value(type_name: str, value, key: str):
    """Return `value` stored as its declared type; a value of another type is a 422."""
    field = f"custom.{key}"
    if value is None:
        return None
    if type_name == "String":
        if isinstance(value, str):
            return text(value, field, max_length=CUSTOM_STRING_MAX)
    elif type_name == "Integer":
        number = _whole_number(value)
        if number is not None:
            if not INT64_MIN <= number <= INT64_MAX:
                raise invalid(field, "must fit in 64 bits (-2^63 to 2^63-1)")
            return number
    elif type_name == "Decimal":
        number = _decimal(value)
        if number is not None:
            return _decimal_text(number, field)
    elif type_name == "Timestamp":
        if isinstance(value, str):
            return timestamps.render(timestamps.parse(text(value, field, max_length=64), field))
    elif type_name == "Boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
    else:
        raise invalid(f"{field}.type", f"must be one of {', '.join(CUSTOM_TYPES)}")
    raise invalid(field, f"{_shown(value)} is not a valid {type_name}")


def _shown(value) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def infer_custom_type(value, key: str) -> str:
    """Return the type a new attribute gets when it is set without one (update by map)."""
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Decimal"
    if isinstance(value, str):
        return "String"
    raise invalid(f"custom.{key}", "must be a string, number or boolean")


def _whole_number(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,40}", value.strip()):
        return int(value)
    return None


def _decimal(value) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if isinstance(value, str) and len(value) > 100:
        return None
    try:
        number = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _decimal_text(number: Decimal, field: str) -> str:
    """Return the exact decimal as plain text ("12.50", never "1E+1"); too many digits is a 422."""
    whole, fraction = DECIMAL_DIGITS
    sign, digits, exponent = number.as_tuple()
    before = max(len(digits) + exponent, 0)
    after = max(-exponent, 0)
    if before > whole or after > fraction:
        raise invalid(field, f"at most {whole} digits before the point and {fraction} after")
    return format(number, "f")


def _source(value, key: str) -> str:
    return text(value, f"custom.{key}.source", max_length=CUSTOM_SOURCE_MAX) or "API"


def added_attributes(current: dict[str, Attribute], entries) -> dict[str, Attribute]:
    """Return key → attribute to store for typed entries `[{type, key, value, source}]`.

    A new key is added; re-adding a key with its own type sets its value; another type is a 422.
    """
    if not isinstance(entries, list):
        raise invalid("custom", "must be a list of {type, key, value} objects")
    written: dict[str, Attribute] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise invalid("custom", "every attribute must be an object with type, key and value")
        key = check_custom_key(entry.get("key"), field="custom.key")
        type_name = entry.get("type")
        if type_name not in CUSTOM_TYPES:
            raise invalid(f"custom.{key}.type", f"must be one of {', '.join(CUSTOM_TYPES)}")
        existing = current.get(key)
        if existing is not None and existing.type != type_name:
            raise invalid(f"custom.{key}", f"already exists with type {existing.type}, not {type_name}")
        value = coerce_custom_value(type_name, entry.get("value"), key)
        written[key] = Attribute(type_name, value, _source(entry.get("source"), key))
    _check_attribute_count(current, written)
    return written


def set_values(current: dict[str, Attribute], values) -> dict[str, Attribute]:
    """Return key → attribute to store for `{key: value}` (or `{key: {value, source}}`).

    An existing key keeps its type (and its source unless one is given); a new key's type is
    inferred from its value.
    """
    if not isinstance(values, dict):
        raise invalid("custom", "must be an object of key: value")
    written: dict[str, Attribute] = {}
    for key, given in values.items():
        check_custom_key(key)
        value, source = (given.get("value"), given.get("source")) if isinstance(given, dict) else (given, None)
        existing = current.get(key)
        type_name = existing.type if existing is not None else infer_custom_type(value, key)
        kept_source = existing.source if existing is not None and source is None else _source(source, key)
        written[key] = Attribute(type_name, coerce_custom_value(type_name, value, key), kept_source)
    _check_attribute_count(current, written)
    return written


def keys_to_remove(current: dict[str, Attribute], keys) -> list[str]:
    """Return the keys of `keys` the customer has."""
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise invalid("custom", "must be a list of attribute keys")
    return [key for key in current if key in set(keys)]


def _check_attribute_count(current: dict, written: dict) -> None:
    if len(current.keys() | written.keys()) > MAX_CUSTOM_ATTRIBUTES:
        raise invalid("custom", f"a customer may have at most {MAX_CUSTOM_ATTRIBUTES} custom attributes")


def merged_custom(into_custom: dict, from_custom: dict) -> dict:
    """Return the attributes the survivor gains: the merged-away ones it does not have.

    Each side maps key → attribute; the survivor's own values win.
    """
    return {key: attr for key, attr in from_custom.items() if key not in into_custom}


def check_merge(*, external_ids: int, tags: int, custom: int) -> None:
    """Refuse a merge whose survivor would exceed the per-customer limits (a 422 naming `from`)."""
    for what, count, limit in (("external ids", external_ids, MAX_EXTERNAL_IDS), ("tags", tags, MAX_TAGS),
                               ("custom attributes", custom, MAX_CUSTOM_ATTRIBUTES)):
        if count > limit:
            raise invalid("from", f"the merged customer would have {count} {what}; at most {limit} are allowed")


def changed_fields(before: dict, after: dict) -> dict:
    """Return {field: new value} for every field whose value differs."""
    return {key: value for key, value in after.items() if key not in before or before[key] != value}


# ---- the billing projection ---------------------------------------------------------------

def projected_metrics(payload: dict, *, last_sequence: int, lead_status: str) -> dict | None:
    """Return the columns a `customer_metrics_changed` event sets, or None if its sequence is not newer.

    The billing status replaces the lead status while it is not null; null restores the lead
    status. A payload that can never apply is UnprocessableEvent (it goes to the dead letters).
    """
    sequence = _event_int(payload, "sequence")
    if sequence <= last_sequence:
        return None
    status = payload.get("status")
    if status is not None and status not in BILLING_STATUSES:
        raise UnprocessableEvent(f"status: {status!r} is not one of {', '.join(BILLING_STATUSES)}", param="status")
    currency = payload.get("currency") or "USD"
    if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
        raise UnprocessableEvent(f"currency: {currency!r} is not an ISO 4217 code", param="currency")
    try:
        since = timestamps.parse(payload.get("customer_since"), "customer_since")
    except ValidationFailed as bad:
        raise UnprocessableEvent(bad.message, param=bad.param)
    return {
        "metrics_sequence": sequence,
        "mrr": _event_int(payload, "mrr"),
        "arr": _event_int(payload, "arr"),
        "net_payments": _event_int(payload, "net_payments"),
        "status": status or lead_status,
        "customer_since": since,
        "currency": currency,
    }


def _event_int(payload: dict, field: str) -> int:
    value = payload.get(field, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX:
        raise UnprocessableEvent(f"{field}: must be a 64-bit integer", param=field)
    return value
