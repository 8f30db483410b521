"""What the activities service answers over RPC: plain dicts of one shape each.

Snake_case and neutral; the gateway picks the fields of each wire shape (EntityNote or the
legacy CustomerNote, the hyphenated activity keys).
"""
from roster.timestamps import render, render_date


def dump_note(note) -> dict:
    """A note or call; `customer_uuid` is the customer whose feed it is in, also for a contact's note."""
    return {
        "uuid": note.uuid,
        "customer_uuid": note.customer_uuid,
        "contact_uuid": note.contact_uuid,
        "associated_object": "contact" if note.contact_uuid else "customer",
        "associated_object_uuid": note.contact_uuid or note.customer_uuid,
        "type": note.type,
        "text": note.text or "",
        "author": note.author_email or "",
        "author_email": note.author_email,
        "call_duration": note.call_duration or 0,
        "created_at": render(note.created_at),
        "updated_at": render(note.updated_at),
    }


def dump_task(task) -> dict:
    return {
        "task_uuid": task.uuid,
        "customer_uuid": task.customer_uuid,
        "contact_uuid": task.contact_uuid,
        "associated_object": "contact" if task.contact_uuid else "customer",
        "associated_object_uuid": task.contact_uuid or task.customer_uuid,
        "assignee": task.assignee,
        "task_details": task.task_details,
        "due_date": render(task.due_date),
        "completed_at": render(task.completed_at),
        "created_at": render(task.created_at),
        "updated_at": render(task.updated_at),
    }


def dump_opportunity(opportunity) -> dict:
    return {
        "uuid": opportunity.uuid,
        "customer_uuid": opportunity.customer_uuid,
        "owner": opportunity.owner,
        "pipeline": opportunity.pipeline,
        "pipeline_stage": opportunity.pipeline_stage,
        "estimated_close_date": render_date(opportunity.estimated_close_date),
        "currency": opportunity.currency,
        "amount_in_cents": opportunity.amount_in_cents,
        "type": opportunity.type,
        "forecast_category": opportunity.forecast_category,
        "win_likelihood": opportunity.win_likelihood,
        "custom": dict(opportunity.custom or {}),
        "created_at": render(opportunity.created_at),
        "updated_at": render(opportunity.updated_at),
    }


def dump_message(message) -> dict:
    return {
        "uuid": message.uuid,
        "direction": message.direction,
        "sender": message.sender,
        "sent_at": render(message.sent_at),
        "body": message.body or "",
    }


def dump_thread(thread) -> dict:
    """A thread with its messages, oldest first."""
    messages = [dump_message(message) for message in thread.messages]
    return {
        "uuid": thread.uuid,
        "customer_uuid": thread.customer_uuid,
        "subject": thread.subject,
        "participants": list(thread.participants or []),
        "message_count": len(messages),
        "last_message_at": messages[-1]["sent_at"] if messages else None,
        "messages": messages,
        "created_at": render(thread.created_at),
        "updated_at": render(thread.updated_at),
    }


def dump_entry(entry) -> dict:
    """A feed entry; `source_id` is the uuid of what it tells about (note, task, movement, ...)."""
    return {
        "uuid": entry.uuid,
        "customer_uuid": entry.customer_uuid,
        "type": entry.type,
        "kind": entry.kind,
        "date": render(entry.date),
        "description": entry.description,
        "source_id": entry.source_id,
    }


def dump_mrr_activity(activity, customer=None) -> dict:
    """An MRR movement activity; `customer` (the known customer row, if any) names it."""
    return {
        "id": activity.id,
        "uuid": activity.uuid,
        "customer_uuid": activity.customer_uuid,
        "customer_name": (customer.name if customer is not None else "") or "",
        "customer_external_id": (customer.external_id if customer is not None else "") or "",
        "date": render(activity.date),
        "type": activity.type,
        "mrr_movement": activity.mrr_movement,
        "mrr": activity.mrr,
        "arr": activity.arr,
        "currency": activity.currency,
        "description": activity.description or "",
        "subscription_external_id": activity.subscription_external_id or "",
        "plan_external_id": activity.plan_external_id or "",
        "data_source_uuid": activity.data_source_uuid or "",
    }
