"""What the contacts service answers over RPC and carries in its events: plain dicts of one shape.

`FIELDS` is the contact's wire shape; the gateway's `ContactOut` documents the same fields
(tests/unit/test_contacts_wire.py keeps the two, and docs/events.md, in step).
"""
from roster.timestamps import render

FIELDS = (
    "uuid", "customer_uuid", "customer_external_id", "data_source_uuid", "external_id",
    "first_name", "last_name", "position", "title", "email", "phone", "linked_in", "twitter", "notes",
    "custom", "last_seen", "created_at", "updated_at",
)
TIME_FIELDS = ("last_seen", "created_at", "updated_at")


def dump_contact(contact) -> dict:
    """Return a contact as the API shows it (§2.3 of the contract); `custom` is always a map."""
    values = {field: getattr(contact, field) for field in FIELDS}
    values["custom"] = dict(contact.custom or {})
    for field in TIME_FIELDS:
        values[field] = render(values[field])
    return values


def dump_contacts(contacts) -> list[dict]:
    return [dump_contact(contact) for contact in contacts]
