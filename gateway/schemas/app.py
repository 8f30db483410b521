"""HTTP shapes of the routes of ours the web page uses (gateway/routes/app.py)."""
from marshmallow import Schema, fields

from gateway.schemas.customers import CustomerPage
from gateway.schemas.fields import Lenient, PerPage


class MeOut(Schema):
    role = fields.String(metadata={"description": "read_only, staff, admin or owner"})
    can_read = fields.Boolean()
    can_write = fields.Boolean(metadata={"description": "may change customer data (staff, admin, owner)"})
    can_admin = fields.Boolean(metadata={"description": "may delete customers and manage data sources"})


class CustomerMetricsOut(Schema):
    customer_uuid = fields.String()
    status = fields.String(allow_none=True)
    mrr = fields.Integer(metadata={"description": "cents"})
    arr = fields.Integer(metadata={"description": "cents"})
    net_payments = fields.Integer(metadata={"description": "successful payments minus refunds, cents"})
    currency = fields.String()
    currency_sign = fields.String(data_key="currency-sign")
    customer_since = fields.String(data_key="customer-since", allow_none=True)


class FindQuery(Lenient):
    q = fields.String(required=True, metadata={"description": "part of a name, company or email"})
    status = fields.String()
    cursor = fields.String()
    per_page = PerPage()


class FindPage(CustomerPage):
    """A page of customers found by `q` (the same envelope as the customer list)."""
