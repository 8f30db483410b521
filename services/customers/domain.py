"""Customer rules as plain functions: statuses, websites, tags, typed custom attributes, merges.

No nameko, database or network here; `tests/unit/test_customers_domain.py` covers it.
"""
import re
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from roster import timestamps
from roster.errors import ValidationFailed

LEAD_STATUSES = ("New Lead", "Working Lead", "Qualified Lead", "Unqualified Lead")
BILLING_STATUSES = ("Active", "Past Due", "Cancelled")
DEFAULT_STATUS = "New Lead"
STATUS_ALIASES = {"lead": "New Lead"}  # the bare "Lead" of older API versions

CUSTOM_TYPES = ("String", "Integer", "Decimal", "Timestamp", "Boolean")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
DECIMAL_DIGITS = (30, 10)  # at most 30 digits before the point and 10 after
CUSTOM_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,199}$")
HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
TOP_LEVEL_DOMAIN = re.compile(r"^(xn--[a-z0-9-]+|[a-z]{2,63})$")


def canonical_status(value: str) -> str | None:
    """Return the canonical spelling of any status (`past_due` → `Past Due`), or None."""
    words = value.replace("_", " ").strip().lower()
    if words in STATUS_ALIASES:
        return STATUS_ALIASES[words]
    for status in LEAD_STATUSES + BILLING_STATUSES:
        if status.lower() == words:
            return status
    return None


def settable_status(value: str, current: str | None = None) -> str:
    """Return the lead status a user may set; billing statuses and unknown words are a 422."""
    status = canonical_status(value) if isinstance(value, str) else None
    if status is None:
        raise ValidationFailed(
            f"status: must be one of {', '.join(LEAD_STATUSES)}", param="status"
        )
    if status in BILLING_STATUSES:
        raise ValidationFailed(
            f"status: {status} is derived from billing data and cannot be set by hand", param="status"
        )
    if current in BILLING_STATUSES:
        raise ValidationFailed(
            f"status: this customer is a subscriber ({current}); a lead status cannot replace it",
            param="status",
        )
    return status


def status_filter(value: str) -> str:
    """Return the status a list filter asks for, accepting space and underscore forms."""
    status = canonical_status(value)
    if status is None:
        raise ValidationFailed(
            f"status: must be one of {', '.join(LEAD_STATUSES + BILLING_STATUSES)}", param="status"
        )
    return status


def normalise_website(value: str | None) -> str | None:
    """Return the website as a URL: a bare domain gets `https://`; a non-host is a 422."""
    if value is None or value.strip() == "":
        return None
    url = value.strip()
    if not re.match(r"^https?://", url, re.IGNORECASE):
        if "://" in url:
            raise ValidationFailed("website_url: only http:// and https:// addresses are allowed",
                                   param="website_url")
        url = "https://" + url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # raises ValueError on a malformed port
    except ValueError:
        host = ""
    if not _is_host_name(host) or " " in url:
        raise ValidationFailed(f"website_url: {value!r} is not a web address with a host name",
                               param="website_url")
    scheme, rest = url.split("://", 1)
    return f"{scheme.lower()}://{rest}"


def _is_host_name(host: str) -> bool:
    labels = host.lower().rstrip(".").split(".")
    if len(labels) < 2 or len(host) > 253:
        return False
    return all(HOST_LABEL.match(label) for label in labels) and bool(TOP_LEVEL_DOMAIN.match(labels[-1]))


def clean_tags(tags, field: str = "tags") -> list[str]:
    """Return the tags trimmed and without repeats, in the order given; blank tags are a 422."""
    if not isinstance(tags, list):
        raise ValidationFailed(f"{field}: must be a list of strings", param=field)
    cleaned: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise ValidationFailed(f"{field}: every tag must be a non-empty string", param=field)
        tag = tag.strip()
        if len(tag) > 200:
            raise ValidationFailed(f"{field}: a tag may be at most 200 characters", param=field)
        if tag not in cleaned:
            cleaned.append(tag)
    return cleaned


def check_custom_key(key, field: str = "custom") -> str:
    if not isinstance(key, str) or not CUSTOM_KEY.match(key):
        raise ValidationFailed(
            f"{field}: key {key!r} must be letters, digits, '_' or '-' (at most 200)", param=field
        )
    return key


def coerce_custom_value(type_name: str, value, key: str):
    """Return `value` stored as its declared type; a value of another type is a 422."""
    field = f"custom.{key}"
    if value is None:
        return None
    if type_name == "String":
        if isinstance(value, str):
            return value
    elif type_name == "Integer":
        number = _whole_number(value)
        if number is not None:
            if not INT64_MIN <= number <= INT64_MAX:
                raise ValidationFailed(f"{field}: must fit in 64 bits (-2^63 to 2^63-1)", param=field)
            return number
    elif type_name == "Decimal":
        number = _decimal(value)
        if number is not None:
            return _decimal_text(number, field)
    elif type_name == "Timestamp":
        if isinstance(value, str):
            return timestamps.render(timestamps.parse(value, field))
    elif type_name == "Boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
    else:
        raise ValidationFailed(f"{field}: type must be one of {', '.join(CUSTOM_TYPES)}", param=field)
    raise ValidationFailed(f"{field}: {value!r} is not a valid {type_name}", param=field)


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
    raise ValidationFailed(f"custom.{key}: must be a string, number or boolean", param=f"custom.{key}")


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
        raise ValidationFailed(f"{field}: at most {whole} digits before the point and {fraction} after",
                               param=field)
    return format(number, "f")


def merged_tags(into_tags: list[str], from_tags: list[str]) -> list[str]:
    """Return the survivor's tags followed by the merged-away customer's new ones."""
    return into_tags + [tag for tag in from_tags if tag not in into_tags]


def merged_custom(into_custom: dict, from_custom: dict) -> dict:
    """Return the attributes the survivor gains: the merged-away ones it does not have.

    Each side maps key → (type, value, source); the survivor's own values win.
    """
    return {key: attr for key, attr in from_custom.items() if key not in into_custom}


def changed_fields(before: dict, after: dict) -> dict:
    """Return {field: new value} for every field whose value differs."""
    return {key: value for key, value in after.items() if key not in before or before[key] != value}
