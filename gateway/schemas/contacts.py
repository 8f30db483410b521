"""Request schemas of the contact routes: shapes and types only.

The contacts service owns the rules (email, LinkedIn, Twitter, position, custom
attributes) and checks them again, so any RPC caller gets the same answers.
"""
from marshmallow import INCLUDE, Schema, fields

from gateway.schemas.fields import Lenient, PerPage


class ContactFieldsSchema(Lenient):
    """The fields a contact carries, all optional (a PATCH sets only what it sends)."""

    external_id = fields.String(allow_none=True)
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    position = fields.Raw(allow_none=True)  # the service says "must be a positive integer"
    title = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    linked_in = fields.String(allow_none=True)
    twitter = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    custom = fields.Raw(allow_none=True)  # [{"key", "value"}, ...] or {key: value}
    overrides = fields.Dict(allow_none=True, metadata={
        "description": 'fields protected from billing-system syncs, e.g. {"email": true}; false un-marks one'})


class CustomerContactSchema(ContactFieldsSchema):
    """`POST /v1/customers/{uuid}/contacts`: the customer comes from the path."""

    data_source_uuid = fields.String(required=True)


class CreateContactSchema(CustomerContactSchema):
    """`POST /v1/contacts`."""

    customer_uuid = fields.String(required=True)


class UpdateContactSchema(ContactFieldsSchema):
    """`PATCH /v1/contacts/{uuid}`."""

    last_seen = fields.String(allow_none=True)  # ISO-8601; the service parses it


class ListContactsQuery(Lenient):
    """`GET /v1/contacts`: paging here; every other parameter goes to the contacts service, which owns the
    filters (customer_uuid, data_source_uuid, email, customer_external_id, external_id) and ignores others."""

    class Meta:
        unknown = INCLUDE

    cursor = fields.String()
    per_page = PerPage()


class RetrieveContactQuery(Lenient):
    with_overrides = fields.Boolean(metadata={"description": "add the top-level `overrides`"})
    attributes_with_history = fields.String(metadata={"description": "accepted; no history is kept"})


class PageQuery(Lenient):
    cursor = fields.String()
    per_page = PerPage()


class ContactOut(Schema):
    """A contact on the wire (documents the answer; the contacts service renders it, and
    tests/unit/test_contacts_wire.py keeps the two in step)."""

    uuid = fields.String(required=True, metadata={"description": "con_ + UUID"})
    customer_uuid = fields.String(required=True)
    customer_external_id = fields.String(allow_none=True)
    data_source_uuid = fields.String(required=True)
    external_id = fields.String(allow_none=True)
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    position = fields.Integer(required=True, metadata={"description": "1 for the primary contact"})
    title = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    linked_in = fields.String(allow_none=True)
    twitter = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    custom = fields.Dict(required=True, metadata={"description": "custom attributes, key → value; {} when none"})
    last_seen = fields.DateTime(allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class ContactWithOverridesOut(ContactOut):
    """A retrieved contact; `overrides` only with `with_overrides=true`."""

    overrides = fields.Dict(metadata={"description": "only with with_overrides=true"})


class ContactListOut(Schema):
    entries = fields.List(fields.Nested(ContactOut))
    has_more = fields.Boolean(required=True)
    cursor = fields.String(allow_none=True, required=True, metadata={"description": "null on the last page"})


class EmptyOut(Schema):
    """`{}`: what DELETE answers (the official client expects a 200 with an empty object)."""
