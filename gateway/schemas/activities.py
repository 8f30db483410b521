"""Schemas and wire shapes of the activity routes: notes and call logs (EntityNote and the legacy
CustomerNote), tasks, opportunities, email threads, the feed and the MRR movement activities.

Request schemas check shapes and types only; the activities service owns the rules (types,
durations, emails, dates) and checks them again, so every RPC caller gets the same answers.
The `*_wire` functions render the service's neutral dicts in the contract's shapes; the `*Out`
schemas document them in the OpenAPI document.
"""
from marshmallow import Schema, fields

from gateway.schemas.customers import CURRENCY_SIGNS
from gateway.schemas.fields import Lenient, PerPage


class CursorQuery(Lenient):
    cursor = fields.String()
    per_page = PerPage()


class EmptyObjectOut(Schema):
    """`{}`: what DELETE answers where the official client expects a 200 with an empty object."""


# ---- notes and call logs ----------------------------------------------------------------------------

class AssociatedObjectIdentifier(Lenient):
    associated_object = fields.String(required=True, metadata={"description": "customer or contact"})
    method = fields.String(load_default="uuid", metadata={"description": "uuid"})
    value = fields.String(required=True)


class NoteFields(Lenient):
    text = fields.String(allow_none=True)
    author_email = fields.String(allow_none=True)
    call_duration = fields.Raw(allow_none=True, metadata={"description": "seconds, a whole number ≥ 0; calls only"})
    created_at = fields.Raw(allow_none=True, metadata={"description": "ISO-8601; not in the future"})


class NoteCreate(NoteFields):
    """`POST /v1/notes`: on a customer (`customer_uuid`) or a contact (`associated_object_identifier`)."""

    customer_uuid = fields.String(allow_none=True)
    associated_object_identifier = fields.Nested(AssociatedObjectIdentifier, allow_none=True)
    type = fields.String(required=True, metadata={"description": "note or call"})


class NoteUpdate(NoteFields):
    type = fields.String(metadata={"description": "note or call"})
    updated_at = fields.Raw(allow_none=True)


class CustomerNoteCreate(NoteFields):
    """`POST /v1/customer_notes` (legacy)."""

    customer_uuid = fields.String(required=True)
    type = fields.String(required=True, metadata={"description": "note or call"})


class NoteListQuery(CursorQuery):
    customer_uuid = fields.String()
    contact_uuid = fields.String()
    type = fields.String()
    author_email = fields.String()


class CustomerNoteListQuery(CursorQuery):
    customer_uuid = fields.String()
    type = fields.String()
    author_email = fields.String()


class CustomerNoteOut(Schema):
    """A note or call log in the legacy shape: every field non-null."""

    uuid = fields.String(metadata={"description": "note_ + UUID"})
    customer_uuid = fields.String()
    type = fields.String(metadata={"description": "note or call"})
    text = fields.String()
    author = fields.String(metadata={"description": "the author's email; \"\" when none was given"})
    call_duration = fields.Integer(metadata={"description": "seconds; 0 for notes"})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class EntityNoteOut(CustomerNoteOut):
    customer_uuid = fields.String(allow_none=True, metadata={"description": "null for a contact's note"})
    associated_object = fields.String(metadata={"description": "customer or contact"})
    associated_object_uuid = fields.String()


class EntityNotePage(Schema):
    entries = fields.List(fields.Nested(EntityNoteOut))
    has_more = fields.Boolean(required=True)
    cursor = fields.String(allow_none=True, required=True)


class CustomerNotePage(Schema):
    entries = fields.List(fields.Nested(CustomerNoteOut))
    has_more = fields.Boolean(required=True)
    cursor = fields.String(allow_none=True, required=True)


class NoteDeletedOut(Schema):
    message = fields.String(metadata={"description": "Note has been deleted."})


NOTE_FIELDS = ("uuid", "customer_uuid", "type", "text", "author", "call_duration", "created_at", "updated_at")


def customer_note_wire(note: dict) -> dict:
    return {field: note[field] for field in NOTE_FIELDS}


def entity_note_wire(note: dict) -> dict:
    wire = customer_note_wire(note)
    if note["associated_object"] == "contact":
        wire["customer_uuid"] = None
    wire["associated_object"] = note["associated_object"]
    wire["associated_object_uuid"] = note["associated_object_uuid"]
    return wire


# ---- tasks --------------------------------------------------------------------------------------------

class TaskFields(Lenient):
    task_details = fields.String(allow_none=True)
    assignee = fields.String(allow_none=True, metadata={"description": "the assignee's email"})
    due_date = fields.Raw(allow_none=True, metadata={"description": "ISO-8601"})
    completed_at = fields.Raw(allow_none=True, metadata={"description": "ISO-8601; null reopens the task"})


class TaskCreate(TaskFields):
    customer_uuid = fields.String(allow_none=True)
    associated_object_identifier = fields.Nested(AssociatedObjectIdentifier, allow_none=True)


class TaskListQuery(CursorQuery):
    customer_uuid = fields.String()
    contact_uuid = fields.String()
    assignee = fields.String()
    due_date_on_or_after = fields.String()
    due_date_on_or_before = fields.String()
    completed = fields.String(metadata={"description": "true or false"})


class TaskOut(Schema):
    task_uuid = fields.String()
    customer_uuid = fields.String(allow_none=True, metadata={"description": "null for a contact's task"})
    associated_object = fields.String()
    associated_object_uuid = fields.String()
    assignee = fields.String()
    task_details = fields.String()
    due_date = fields.DateTime()
    completed_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class TaskPage(Schema):
    entries = fields.List(fields.Nested(TaskOut))
    has_more = fields.Boolean(required=True)
    cursor = fields.String(allow_none=True, required=True)


TASK_FIELDS = ("task_uuid", "customer_uuid", "associated_object", "associated_object_uuid", "assignee",
               "task_details", "due_date", "completed_at", "created_at", "updated_at")


def task_wire(task: dict) -> dict:
    wire = {field: task[field] for field in TASK_FIELDS}
    if task["associated_object"] == "contact":
        wire["customer_uuid"] = None
    return wire


# ---- opportunities ------------------------------------------------------------------------------------

class OpportunityFields(Lenient):
    owner = fields.String(allow_none=True)
    pipeline = fields.String(allow_none=True)
    pipeline_stage = fields.String(allow_none=True)
    estimated_close_date = fields.Raw(allow_none=True, metadata={"description": "YYYY-MM-DD"})
    currency = fields.String(allow_none=True)
    amount_in_cents = fields.Raw(allow_none=True, metadata={"description": "a whole number of cents ≥ 0"})
    type = fields.String(allow_none=True, metadata={"description": "recurring (default) or one-time"})
    forecast_category = fields.String(allow_none=True,
                                      metadata={"description": "pipeline (default), best_case, committed, omitted"})
    win_likelihood = fields.Raw(allow_none=True, metadata={"description": "0 to 100"})
    custom = fields.Raw(allow_none=True, metadata={"description": "[{key, value}] or {key: value}"})


class OpportunityCreate(OpportunityFields):
    customer_uuid = fields.String(required=True)


class OpportunityUpdate(OpportunityFields):
    customer_uuid = fields.String(allow_none=True)


class OpportunityListQuery(CursorQuery):
    customer_uuid = fields.String()
    owner = fields.String()
    pipeline = fields.String()
    pipeline_stage = fields.String()
    estimated_close_date_on_or_after = fields.String()
    estimated_close_date_on_or_before = fields.String()


class OpportunityOut(Schema):
    uuid = fields.String()
    customer_uuid = fields.String()
    owner = fields.String()
    pipeline = fields.String()
    pipeline_stage = fields.String()
    estimated_close_date = fields.Date()
    currency = fields.String()
    amount_in_cents = fields.Integer()
    type = fields.String()
    forecast_category = fields.String()
    win_likelihood = fields.Integer(metadata={"description": "left out when not set"})
    custom = fields.Dict()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class OpportunityPage(Schema):
    entries = fields.List(fields.Nested(OpportunityOut))
    has_more = fields.Boolean(required=True)
    cursor = fields.String(allow_none=True, required=True)


def opportunity_wire(opportunity: dict) -> dict:
    wire = dict(opportunity)
    if wire.get("win_likelihood") is None:
        wire.pop("win_likelihood", None)  # the client refuses null here
    return wire


# ---- email threads ------------------------------------------------------------------------------------

class MessageIn(Lenient):
    direction = fields.String(required=True, metadata={"description": "inbound or outbound"})
    sender = fields.String(required=True, metadata={"description": "the sender's email"})
    sent_at = fields.Raw(required=True, metadata={"description": "ISO-8601; not in the future"})
    body = fields.String(allow_none=True)


class ThreadCreate(Lenient):
    subject = fields.String(required=True)
    participants = fields.Raw(required=True, metadata={"description": "the contacts' email addresses"})
    messages = fields.Raw(required=True, metadata={"description": "[message], at most 100 per request"})


class ThreadMessagesAdd(Lenient):
    messages = fields.Raw(required=True, metadata={"description": "[message], at most 100 per request"})


class MessageOut(Schema):
    uuid = fields.String()
    direction = fields.String()
    sender = fields.String()
    sent_at = fields.DateTime()
    body = fields.String()


class ThreadOut(Schema):
    uuid = fields.String(metadata={"description": "thr_ + UUID"})
    customer_uuid = fields.String()
    subject = fields.String()
    participants = fields.List(fields.String())
    message_count = fields.Integer()
    last_message_at = fields.DateTime()
    messages = fields.List(fields.Nested(MessageOut), metadata={"description": "oldest first"})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class ThreadPage(Schema):
    entries = fields.List(fields.Nested(ThreadOut))
    has_more = fields.Boolean(required=True)
    cursor = fields.String(allow_none=True, required=True)


# ---- the feed -----------------------------------------------------------------------------------------

class FeedQuery(CursorQuery):
    types = fields.String(metadata={"description": "comma-separated: event, thread, note, call, mrr_movement, "
                                                  "transaction (default: all)"})


class FeedEntryOut(Schema):
    uuid = fields.String(metadata={"description": "act_ + UUID"})
    customer_uuid = fields.String()
    type = fields.String(metadata={"description": "event, thread, note, call, mrr_movement or transaction"})
    kind = fields.String(metadata={"description": "what happened, e.g. task_completed, new_biz, payment"})
    date = fields.DateTime()
    description = fields.String()
    source_id = fields.String(metadata={"description": "the id of what the entry tells about"})


class FeedPage(Schema):
    entries = fields.List(fields.Nested(FeedEntryOut), metadata={"description": "newest first"})
    has_more = fields.Boolean(required=True)
    cursor = fields.String(allow_none=True, required=True)


# ---- MRR movement activities --------------------------------------------------------------------------

class ActivityQuery(CursorQuery):
    start_date = fields.String(data_key="start-date")
    end_date = fields.String(data_key="end-date")
    type = fields.String(metadata={"description": "new_biz, expansion, contraction, churn or reactivation"})
    order = fields.String(metadata={"description": "-date (default, newest first) or date"})


class CustomerActivityOut(Schema):
    id = fields.Integer()
    date = fields.DateTime()
    activity_arr = fields.Integer(data_key="activity-arr")
    activity_mrr = fields.Integer(data_key="activity-mrr")
    activity_mrr_movement = fields.Integer(data_key="activity-mrr-movement")
    currency = fields.String()
    currency_sign = fields.String(data_key="currency-sign")
    description = fields.String()
    type = fields.String()
    subscription_external_id = fields.String(data_key="subscription-external-id")


class ActivityOut(Schema):
    uuid = fields.String()
    date = fields.DateTime()
    activity_arr = fields.Integer(data_key="activity-arr")
    activity_mrr = fields.Integer(data_key="activity-mrr")
    activity_mrr_movement = fields.Integer(data_key="activity-mrr-movement")
    currency = fields.String()
    description = fields.String()
    type = fields.String()
    subscription_external_id = fields.String(data_key="subscription-external-id")
    subscription_set_external_id = fields.String(data_key="subscription-set-external-id")
    plan_external_id = fields.String(data_key="plan-external-id")
    customer_name = fields.String(data_key="customer-name")
    customer_uuid = fields.String(data_key="customer-uuid")
    customer_external_id = fields.String(data_key="customer-external-id")
    billing_connector_uuid = fields.String(data_key="billing-connector-uuid")


class CustomerActivityPage(Schema):
    entries = fields.List(fields.Nested(CustomerActivityOut))
    has_more = fields.Boolean()
    cursor = fields.String(allow_none=True)
    per_page = PerPage()


class ActivityPage(Schema):
    entries = fields.List(fields.Nested(ActivityOut))
    has_more = fields.Boolean()
    cursor = fields.String(allow_none=True)
    per_page = PerPage()


def _movement(activity: dict) -> dict:
    return {
        "date": activity["date"],
        "activity-arr": activity["arr"],
        "activity-mrr": activity["mrr"],
        "activity-mrr-movement": activity["mrr_movement"],
        "currency": activity["currency"],
        "description": activity["description"],
        "type": activity["type"],
        "subscription-external-id": activity["subscription_external_id"],
    }


def customer_activity_wire(activity: dict) -> dict:
    return {"id": activity["id"], **_movement(activity),
            "currency-sign": CURRENCY_SIGNS.get(activity["currency"], activity["currency"])}


def activity_wire(activity: dict) -> dict:
    return {
        "uuid": activity["uuid"],
        **_movement(activity),
        "subscription-set-external-id": "",
        "plan-external-id": activity["plan_external_id"],
        "customer-name": activity["customer_name"],
        "customer-uuid": activity["customer_uuid"],
        "customer-external-id": activity["customer_external_id"],
        "billing-connector-uuid": activity["data_source_uuid"],
    }
