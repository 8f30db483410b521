"""What the contacts service returns over RPC: plain dicts, dumped by one schema."""
from marshmallow import Schema, fields

from roster.timestamps import render


class UtcDateTime(fields.DateTime):
    """A timestamp rendered the one way every service renders them (roster.timestamps)."""

    def _serialize(self, value, attr, obj, **kwargs):
        return render(value)


class ContactSchema(Schema):
    """A contact as the API shows it (§2.3 of the contract); `custom` is always a map."""

    uuid = fields.String()
    customer_uuid = fields.String()
    customer_external_id = fields.String(allow_none=True)
    data_source_uuid = fields.String()
    external_id = fields.String(allow_none=True)
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    position = fields.Integer(allow_none=True)
    title = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    linked_in = fields.String(allow_none=True)
    twitter = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    custom = fields.Function(lambda contact: dict(contact.custom or {}))
    last_seen = UtcDateTime(allow_none=True)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


contact_schema = ContactSchema()


def dump_contact(contact) -> dict:
    return contact_schema.dump(contact)


def dump_contacts(contacts) -> list[dict]:
    return contact_schema.dump(contacts, many=True)
