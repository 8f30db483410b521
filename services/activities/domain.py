"""Activity rules as plain functions: what a valid note, call, thread, task or opportunity is,
which feed types exist, and how the billing events this service consumes are read.

No nameko, database or network here; `tests/unit/test_activities_domain.py` covers it.
Every `clean_*` function returns only the fields present in its input, cleaned, so a create
and a PATCH share one set of rules; a bad value is a 422 naming the field.
"""
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from roster import timestamps
from roster.errors import BadRequest, UnprocessableEvent, ValidationFailed, invalid

FEED_TYPES = ("event", "thread", "note", "call", "mrr_movement", "transaction")
NOTE_TYPES = ("note", "call")
MOVEMENT_TYPES = ("new_biz", "expansion", "contraction", "churn", "reactivation")
TRANSACTION_TYPES = ("payment", "refund")
TRANSACTION_RESULTS = ("successful", "failed")
OPPORTUNITY_TYPES = ("recurring", "one-time")
FORECAST_CATEGORIES = ("pipeline", "best_case", "committed", "omitted")
DIRECTIONS = ("inbound", "outbound")
ASSOCIATED_OBJECTS = ("customer", "contact")
ACTIVITY_ORDERS = ("date", "-date")

MAX_TEXT = 100_000
MAX_SHORT_TEXT = 200
MAX_SUBJECT = 1_000
MAX_CALL_SECONDS = 2**31 - 1
MAX_PARTICIPANTS = 100
MAX_MESSAGES = 100
INT64_MAX = 2**63 - 1
# An opportunity's custom fields, as the customers service limits a customer's custom attributes
# (README.md, "Activity limits"): at most MAX_CUSTOM_FIELDS keys and MAX_CUSTOM_BYTES of JSON in
# all, checked on create and on the merged result of every PATCH, so no record grows without end.
MAX_CUSTOM_FIELDS = 100
MAX_CUSTOM_BYTES = 64 * 1024

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# ---- small field rules --------------------------------------------------------------------------

def whole_number(value, field: str, *, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """Return `value` as an int within [minimum, maximum]; a 422 for fractions, text, booleans."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise invalid(field, "must be a whole number")
    if isinstance(value, (float, Decimal)):
        if value != value or value in (float("inf"), float("-inf")) or value != int(value):
            raise invalid(field, "must be a whole number")
        value = int(value)
    if value < minimum:
        raise invalid(field, f"must be at least {minimum}")
    if value > maximum:
        raise invalid(field, f"must be at most {maximum}")
    return value


def text(value, field: str, *, maximum: int = MAX_TEXT, required: bool = False) -> str:
    """Return a string field trimmed at the ends; "" for None unless `required`."""
    if value is None:
        if required:
            raise invalid(field, "is required")
        return ""
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    cleaned = value.strip()
    if required and not cleaned:
        raise invalid(field, "must not be empty")
    if len(cleaned) > maximum:
        raise invalid(field, f"must be at most {maximum} characters")
    if "\x00" in cleaned:
        raise invalid(field, "must not contain NUL characters")
    return cleaned


def email(value, field: str, *, required: bool = False) -> str | None:
    """Return an email address trimmed; None for blank (a 422 when `required`)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise invalid(field, "is required")
        return None
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    address = value.strip()
    if len(address) > 320 or not EMAIL.fullmatch(address):
        raise invalid(field, f"{value!r} is not an email address")
    return address


def one_of(value, field: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise invalid(field, f"must be one of {', '.join(allowed)}")
    return value


def past_timestamp(value, field: str, *, required: bool = False) -> datetime | None:
    """Return an aware UTC timestamp that is not in the future; None when absent."""
    parsed = timestamps.parse(value, field, not_in_future=True)
    if parsed is None and required:
        raise invalid(field, "is required")
    return parsed


def calendar_date(value, field: str) -> date:
    """Return a `YYYY-MM-DD` date (the contract's date-only fields refuse date-times)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not ISO_DATE.fullmatch(value.strip()):
        raise invalid(field, "must be a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise invalid(field, f"{value!r} is not a calendar date")


def currency(value, field: str = "currency") -> str:
    if not isinstance(value, str) or not CURRENCY.fullmatch(value.strip().upper()):
        raise invalid(field, "must be a three-letter ISO 4217 code such as USD")
    return value.strip().upper()


# ---- associations ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Association:
    """What a note or task is attached to: a customer or a contact, by uuid."""

    kind: str  # customer | contact
    uuid: str
    field: str = "customer_uuid"  # the request field to blame when it does not exist


def association(data: dict) -> Association:
    """Return the customer or contact a create body names (`customer_uuid` or
    `associated_object_identifier`); a 422 when it names neither, or both differently."""
    identifier = data.get("associated_object_identifier")
    customer_uuid = data.get("customer_uuid")
    if customer_uuid is not None and (not isinstance(customer_uuid, str) or not customer_uuid.strip()):
        raise invalid("customer_uuid", "must be a customer uuid")
    if identifier is None:
        if not customer_uuid:
            raise invalid("customer_uuid", "is required (or give associated_object_identifier)")
        return Association("customer", customer_uuid.strip())
    if not isinstance(identifier, dict):
        raise invalid("associated_object_identifier", "must be an object")
    prefix = "associated_object_identifier."
    kind = one_of(identifier.get("associated_object"), prefix + "associated_object", ASSOCIATED_OBJECTS)
    if identifier.get("method", "uuid") != "uuid":
        raise invalid(prefix + "method", "must be uuid")
    value = identifier.get("value")
    if not isinstance(value, str) or not value.strip():
        raise invalid(prefix + "value", f"must be the {kind}'s uuid")
    named = Association(kind, value.strip(), field=prefix + "value")
    if customer_uuid and (kind != "customer" or named.uuid != customer_uuid.strip()):
        raise invalid("customer_uuid", "names another object than associated_object_identifier; give one of them")
    return named


# ---- notes and calls ------------------------------------------------------------------------------

NOTE_FIELDS = ("type", "text", "author_email", "call_duration", "created_at", "updated_at")


def clean_note(data: dict) -> dict:
    """Return the note fields present in `data`, cleaned (type, duration and type checked together
    by `note_duration`)."""
    cleaned = {}
    if "type" in data:
        cleaned["type"] = one_of(data["type"], "type", NOTE_TYPES)
    if "text" in data:
        cleaned["text"] = text(data["text"], "text")
    if "author_email" in data:
        cleaned["author_email"] = email(data["author_email"], "author_email")
    if "call_duration" in data and data["call_duration"] is not None:
        cleaned["call_duration"] = whole_number(data["call_duration"], "call_duration", maximum=MAX_CALL_SECONDS)
    for field in ("created_at", "updated_at"):
        if data.get(field) is not None:
            cleaned[field] = past_timestamp(data[field], field)
    return cleaned


def new_note(data: dict) -> dict:
    """Return the cleaned fields of a note to create: type required, duration 0 for a note."""
    if data.get("type") is None:
        raise invalid("type", "is required (note or call)")
    fields = clean_note(data)
    fields["call_duration"] = note_duration(fields["type"], fields.get("call_duration"))
    fields.setdefault("text", "")
    return fields


def note_duration(note_type: str, seconds: int | None) -> int:
    """Return the stored duration: a call's seconds (0 when not given); a note has none."""
    if note_type == "note":
        if seconds:
            raise invalid("call_duration", "only a call has a duration (type is note)")
        return 0
    return seconds or 0


# ---- email threads --------------------------------------------------------------------------------

def clean_thread(data: dict) -> dict:
    """Return a thread to create: subject, participants (emails) and at least one message."""
    subject = text(data.get("subject"), "subject", maximum=MAX_SUBJECT, required=True)
    return {"subject": subject, "participants": participants(data.get("participants")),
            "messages": clean_messages(data.get("messages"))}


def participants(value) -> list[str]:
    """Return the participants' email addresses in the order given, each once (ignoring case)."""
    if not isinstance(value, list) or not value:
        raise invalid("participants", "must be a non-empty list of email addresses")
    if len(value) > MAX_PARTICIPANTS:
        raise invalid("participants", f"must list at most {MAX_PARTICIPANTS} addresses")
    seen, result = set(), []
    for index, item in enumerate(value):
        address = email(item, f"participants.{index}", required=True)
        if address.lower() not in seen:
            seen.add(address.lower())
            result.append(address)
    return result


def clean_messages(value) -> list[dict]:
    """Return the messages of a thread, oldest first."""
    if not isinstance(value, list) or not value:
        raise invalid("messages", "must be a non-empty list of messages")
    if len(value) > MAX_MESSAGES:
        raise invalid("messages", f"must hold at most {MAX_MESSAGES} messages per request")
    messages = [clean_message(item, f"messages.{index}") for index, item in enumerate(value)]
    return sorted(messages, key=lambda message: message["sent_at"])


def clean_message(data, prefix: str) -> dict:
    if not isinstance(data, dict):
        raise invalid(prefix, "must be an object")
    return {
        "direction": one_of(data.get("direction"), f"{prefix}.direction", DIRECTIONS),
        "sender": email(data.get("sender"), f"{prefix}.sender", required=True),
        "sent_at": past_timestamp(data.get("sent_at"), f"{prefix}.sent_at", required=True),
        "body": text(data.get("body"), f"{prefix}.body"),
    }


# ---- tasks ----------------------------------------------------------------------------------------

TASK_FIELDS = ("task_details", "assignee", "due_date", "completed_at")


def clean_task(data: dict, *, creating: bool) -> dict:
    """Return the task fields present in `data`, cleaned; on create the first three are required."""
    cleaned = {}
    if creating or "task_details" in data:
        cleaned["task_details"] = text(data.get("task_details"), "task_details", required=True)
    if creating or "assignee" in data:
        cleaned["assignee"] = email(data.get("assignee"), "assignee", required=True)
    if creating or "due_date" in data:
        due = timestamps.parse(data.get("due_date"), "due_date")
        if due is None:
            raise invalid("due_date", "is required")
        cleaned["due_date"] = due
    if "completed_at" in data:
        cleaned["completed_at"] = past_timestamp(data["completed_at"], "completed_at")  # None reopens
    return cleaned


# ---- opportunities --------------------------------------------------------------------------------

OPPORTUNITY_REQUIRED = ("owner", "pipeline", "pipeline_stage", "estimated_close_date", "currency",
                        "amount_in_cents")


def clean_opportunity(data: dict, *, creating: bool) -> dict:
    """Return the opportunity fields present in `data`, cleaned; defaults filled on create."""
    if creating:
        for field in OPPORTUNITY_REQUIRED:
            if data.get(field) is None:
                raise invalid(field, "is required")
    cleaned = {}
    if "owner" in data:
        cleaned["owner"] = email(data["owner"], "owner", required=True)
    for field in ("pipeline", "pipeline_stage"):
        if field in data:
            cleaned[field] = text(data[field], field, maximum=MAX_SHORT_TEXT, required=True)
    if "estimated_close_date" in data:
        cleaned["estimated_close_date"] = calendar_date(data["estimated_close_date"], "estimated_close_date")
    if "currency" in data:
        cleaned["currency"] = currency(data["currency"])
    if "amount_in_cents" in data:
        cleaned["amount_in_cents"] = whole_number(data["amount_in_cents"], "amount_in_cents")
    if data.get("type") is not None:
        cleaned["type"] = one_of(data["type"], "type", OPPORTUNITY_TYPES)
    if data.get("forecast_category") is not None:
        cleaned["forecast_category"] = one_of(data["forecast_category"], "forecast_category", FORECAST_CATEGORIES)
    if "win_likelihood" in data:
        cleaned["win_likelihood"] = None if data["win_likelihood"] is None else whole_number(
            data["win_likelihood"], "win_likelihood", maximum=100)
    if data.get("custom") is not None:
        cleaned["custom"] = custom_fields(data["custom"])
    if creating:
        cleaned.setdefault("type", "recurring")
        cleaned.setdefault("forecast_category", "pipeline")
        cleaned["custom"] = checked_custom(cleaned.get("custom") or {})
    return cleaned


def custom_fields(value) -> dict:
    """Return custom fields as {key: value} from `[{key, value}, ...]` or a map; a null value removes a key."""
    if isinstance(value, list):
        pairs = []
        for index, item in enumerate(value):
            if not isinstance(item, dict) or "key" not in item:
                raise invalid(f"custom.{index}", "must be an object with key and value")
            pairs.append((item["key"], item.get("value"), f"custom.{index}.key"))
    elif isinstance(value, dict):
        pairs = [(key, item, f"custom.{key}") for key, item in value.items()]
    else:
        raise invalid("custom", "must be a list of {key, value} or an object")
    result = {}
    for key, item, field in pairs:
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_SHORT_TEXT:
            raise invalid(field, f"must be a non-empty string of at most {MAX_SHORT_TEXT} characters")
        result[key.strip()] = custom_value(item, f"custom.{key.strip()}")
    return result


def custom_value(value, field: str):
    """Return a custom field's value: text, a whole number, a boolean or null; a fraction as its decimal string."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return whole_number(value, field, minimum=-INT64_MAX)
    if isinstance(value, (float, Decimal)):
        if value != value or value in (float("inf"), float("-inf")):
            raise invalid(field, "must be a finite number")
        if abs(value) > INT64_MAX:  # the JSON parser reads an integer beyond 64 bits as a float: its digits are gone
            raise invalid(field, "must lie within ±2^63 (a whole number must fit in 64 bits)")
        return str(Decimal(str(value)))
    raise invalid(field, "must be a string, number, boolean or null")


def updated_custom(current: dict, changes: dict) -> dict:
    """Return `current` with `changes` applied: keys added or replaced, a None value removing one;
    a result over the limits (`checked_custom`) is a 422 naming `custom`."""
    result = dict(current or {})
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return checked_custom(result)


def checked_custom(custom: dict) -> dict:
    """Return an opportunity's whole set of custom fields if it is within MAX_CUSTOM_FIELDS keys and
    MAX_CUSTOM_BYTES of JSON (UTF-8); a 422 naming `custom` otherwise."""
    if len(custom) > MAX_CUSTOM_FIELDS:
        raise invalid("custom", f"an opportunity may have at most {MAX_CUSTOM_FIELDS} custom fields")
    size = len(json.dumps(custom, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_CUSTOM_BYTES:
        raise invalid("custom", f"an opportunity's custom fields may take at most {MAX_CUSTOM_BYTES} bytes "
                                f"as JSON ({size} given)")
    return custom


# ---- the feed and the activity lists --------------------------------------------------------------

def feed_types(value) -> tuple[str, ...] | None:
    """Return the feed types asked for (None: all); an unknown one is a 400 naming it."""
    if value is None:
        return None
    names = value if isinstance(value, (list, tuple)) else str(value).split(",")
    wanted = []
    for name in (str(item).strip() for item in names):
        if not name:
            continue
        if name not in FEED_TYPES:
            raise BadRequest(f"types: unknown type {name!r}; the types are {', '.join(FEED_TYPES)}", param="types")
        if name not in wanted:
            wanted.append(name)
    return tuple(wanted) or None


@dataclass(frozen=True)
class ActivityFilters:
    """What `/v1/activities` (and a customer's activities) may be narrowed to."""

    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    type: str | None = None
    newest_first: bool = True


def activity_filters(query: dict) -> ActivityFilters:
    """Return the filters of an activity listing; a bad value is a 400 naming the parameter.

    `end-date` given as a date alone covers that whole day.
    """
    start = _query_time(query.get("start-date"), "start-date")
    end = end_bound(query.get("end-date"), "end-date")
    kind = query.get("type") or None
    if kind is not None and kind not in MOVEMENT_TYPES:
        raise BadRequest(f"type: unknown activity type {kind!r}; the types are {', '.join(MOVEMENT_TYPES)}",
                         param="type")
    order = query.get("order") or "-date"
    if order not in ACTIVITY_ORDERS:
        raise BadRequest("order: must be date or -date", param="order")
    if start is not None and end is not None and start >= end:
        raise BadRequest("end-date: must not be before start-date", param="end-date")
    return ActivityFilters(start=start, end=end, type=kind, newest_first=order == "-date")


def end_bound(value, field: str) -> datetime | None:
    """Return the exclusive end of an inclusive upper bound given in a query: a date alone covers
    that whole day, a date-time ends just after it. None when there is none, or when the range
    runs to the end of time (9999-12-31 has no day after it); a bad value is a 400 naming `field`."""
    end = _query_time(value, field)
    if end is None:
        return None
    try:
        return end + (timedelta(days=1) if _is_date_only(value) else timedelta(microseconds=1))
    except OverflowError:
        return None


def _query_time(value, field: str) -> datetime | None:
    try:
        return timestamps.parse(value, field)
    except ValidationFailed as failure:
        raise BadRequest(failure.message, param=field)


def _is_date_only(value) -> bool:
    return isinstance(value, str) and bool(ISO_DATE.fullmatch(value.strip()))


# ---- the billing events this service consumes -----------------------------------------------------

def movement_from_event(payload: dict) -> dict:
    """Return the MRR movement an `mrr_movement_recorded` event carries, checked; a malformed one
    is an UnprocessableEvent (dead-lettered at once: retrying cannot fix it)."""
    movement = _event_object(payload, "movement")
    try:
        return {
            "customer_uuid": _event_text(payload, "customer_uuid", required=True),
            "uuid": _event_text(movement, "uuid", required=True),
            "type": one_of(movement.get("type"), "movement.type", MOVEMENT_TYPES),
            "date": timestamps.parse(movement.get("date"), "movement.date") or _missing("movement.date"),
            "mrr_movement": whole_number(movement.get("mrr_movement"), "movement.mrr_movement", minimum=-INT64_MAX),
            "mrr": whole_number(movement.get("mrr", 0), "movement.mrr", minimum=-INT64_MAX),
            "arr": whole_number(movement.get("arr", 0), "movement.arr", minimum=-INT64_MAX),
            "currency": currency(movement.get("currency"), "movement.currency"),
            "description": _event_text(movement, "description"),
            "subscription_external_id": _event_text(movement, "subscription_external_id"),
            "plan_external_id": _event_text(movement, "plan_external_id"),
            "data_source_uuid": _event_text(movement, "data_source_uuid"),
        }
    except ValidationFailed as failure:
        raise UnprocessableEvent(f"mrr_movement_recorded: {failure.message}", param=failure.param)


def transaction_from_event(payload: dict) -> dict:
    """Return the transaction a `transaction_recorded` event carries, checked (see movement_from_event)."""
    transaction = _event_object(payload, "transaction")
    try:
        return {
            "customer_uuid": _event_text(payload, "customer_uuid", required=True),
            "uuid": _event_text(transaction, "uuid", required=True),
            "type": one_of(transaction.get("type"), "transaction.type", TRANSACTION_TYPES),
            "result": one_of(transaction.get("result"), "transaction.result", TRANSACTION_RESULTS),
            "date": timestamps.parse(transaction.get("date"), "transaction.date") or _missing("transaction.date"),
            "amount_in_cents": whole_number(transaction.get("amount_in_cents"), "transaction.amount_in_cents",
                                            minimum=-INT64_MAX),
            "currency": currency(transaction.get("currency"), "transaction.currency"),
        }
    except ValidationFailed as failure:
        raise UnprocessableEvent(f"transaction_recorded: {failure.message}", param=failure.param)


def _event_object(payload: dict, name: str) -> dict:
    value = payload.get(name)
    if not isinstance(value, dict):
        raise UnprocessableEvent(f"{name}: the event carries no {name} object", param=name)
    return value


def _event_text(data: dict, field: str, *, required: bool = False) -> str:
    value = data.get(field)
    if value is None or value == "":
        if required:
            raise invalid(field, "is required")
        return ""
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    return value[:MAX_TEXT]


def _missing(field: str):
    raise invalid(field, "is required")


def display_name(customer: dict) -> str:
    """Return what to call a customer in a sentence: its name, else company, email, external id."""
    for field in ("name", "company", "email", "external_id", "uuid"):
        value = customer.get(field)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return "a customer"


# ---- unmerges ------------------------------------------------------------------------------------

# What `move_to_new_customer` may name (ChartMogul's unmerge); these records of the customer an
# unmerged external id came from follow it to the new customer only when named.
MOVABLE_KINDS = ("tasks", "opportunities", "notes")
# Feed entries that tell that customer's own history: they always follow it.
HISTORY_KINDS = ("customer_created", "customer_merged", "contact_created")


def follows_unmerge(kind: str, *, moved_kinds, of_contact: bool = False) -> bool:
    """Return whether a note, task or opportunity that came with an unmerged external id moves to
    the new customer: when its kind is named, or when it belongs to a contact (the contacts that
    came with the id always move, and a contact's notes and tasks stay with their contact)."""
    if kind not in MOVABLE_KINDS:
        raise ValueError(f"not a movable kind: {kind}")
    return kind in (moved_kinds or ()) or (of_contact and kind != "opportunities")


def entry_follows_unmerge(*, type: str, kind: str, source_id: str, moved_sources: set[str]) -> bool:
    """Return whether a feed entry that came with an unmerged external id moves to the new
    customer: the entry of a record that moved, an entry of the customer's own history, or a
    payment or refund (billing moves that id's invoices). MRR movements stay: billing retracts
    and records them again for both customers; threads stay, as their threads do."""
    return source_id in moved_sources or kind in HISTORY_KINDS or type == "transaction"
