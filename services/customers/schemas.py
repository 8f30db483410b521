"""What the customers service returns over RPC: plain dicts, dumped by one schema."""
from datetime import datetime, timezone

from marshmallow import Schema, fields


class UtcDateTime(fields.DateTime):
    """ISO-8601 in UTC; SQLite hands back naive datetimes that are UTC by construction."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.isoformat()


class CustomerSchema(Schema):
    id = fields.Integer()
    uuid = fields.String()
    external_id = fields.Method("_external_id")
    external_ids = fields.Method("_external_ids")
    data_source_uuid = fields.Method("_data_source_uuid")
    data_source_uuids = fields.Method("_data_source_uuids")
    name = fields.String()
    email = fields.String()
    company = fields.String()
    status = fields.String()
    lead_created_at = UtcDateTime()
    free_trial_started_at = UtcDateTime()
    customer_since = UtcDateTime()
    owner = fields.String()
    city = fields.String()
    state = fields.String()
    country = fields.String()
    zip = fields.String()
    website_url = fields.String()
    mrr = fields.Integer()
    arr = fields.Method("_arr")
    currency = fields.String()
    billing_system_type = fields.String()
    attributes = fields.Method("_attributes")
    created_at = UtcDateTime()
    updated_at = UtcDateTime()

    def _external_id(self, customer):
        return customer.external_ids[0].external_id if customer.external_ids else ""

    def _external_ids(self, customer):
        return [row.external_id for row in customer.external_ids]

    def _data_source_uuid(self, customer):
        return customer.external_ids[0].data_source_uuid if customer.external_ids else ""

    def _data_source_uuids(self, customer):
        return list(dict.fromkeys(row.data_source_uuid for row in customer.external_ids))

    def _arr(self, customer):
        return (customer.mrr or 0) * 12

    def _attributes(self, customer):
        return {
            "tags": [row.tag for row in customer.tags],
            "stripe": {},
            "clearbit": {},
            "custom": custom_map(customer),
        }


def custom_map(customer) -> dict:
    return {row.key: row.value for row in customer.custom_attributes}


customer_schema = CustomerSchema()


def dump_customer(customer) -> dict:
    return customer_schema.dump(customer)


def dump_customers(customers) -> list[dict]:
    return customer_schema.dump(customers, many=True)
