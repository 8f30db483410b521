"""HTTP shapes of data sources (ChartMogul REST API v1 §2.6)."""
from marshmallow import Schema, fields, validate

from gateway.schemas.fields import Lenient, StrictString


class DataSourceCreate(Lenient):
    name = StrictString(required=True, validate=validate.Length(min=1, max=500))
    system = StrictString(metadata={"description": "Import API (default) or a connector: Stripe"})
    connection = fields.Dict(metadata={"description": "A connector's settings {base_url, api_key}; the key is "
                                                      "stored and never returned"})


class DataSourceOptions(Lenient):
    """The `with_*` flags (the client sends `true`/`false`; any case is accepted)."""

    with_processing_status = fields.Boolean()
    with_auto_churn_subscription_setting = fields.Boolean()
    with_invoice_handling_setting = fields.Boolean()


class DataSourceListQuery(DataSourceOptions):
    name = fields.String()
    system = fields.String()


class ProcessingStatusOut(Schema):
    processed = fields.Integer()
    pending = fields.Integer()
    failed = fields.Integer()


class AutoChurnSettingOut(Schema):
    enabled = fields.Boolean()
    interval = fields.Integer(allow_none=True)


class ConnectionOut(Schema):
    base_url = fields.String()
    api_key_set = fields.Boolean()


class DataSourceOut(Schema):
    uuid = fields.String()
    name = fields.String()
    created_at = fields.String()
    status = fields.String()
    system = fields.String()
    processing_status = fields.Nested(ProcessingStatusOut, metadata={"description": "with_processing_status"})
    auto_churn_subscription_setting = fields.Nested(AutoChurnSettingOut)
    invoice_handling_setting = fields.Dict()
    connection = fields.Nested(ConnectionOut)


class DataSourceList(Schema):
    data_sources = fields.List(fields.Nested(DataSourceOut))
