"""HTTP shapes of data sources (ChartMogul REST API v1 §2.6)."""
from marshmallow import Schema, fields, validate

from gateway.schemas.fields import Lenient, StrictString


class DataSourceCreate(Lenient):
    name = StrictString(required=True, validate=validate.Length(min=1, max=500))


class DataSourceListQuery(Lenient):
    name = fields.String()
    system = fields.String()


class DataSourceOut(Schema):
    uuid = fields.String()
    name = fields.String()
    created_at = fields.String()
    status = fields.String()
    system = fields.String()


class DataSourceList(Schema):
    data_sources = fields.List(fields.Nested(DataSourceOut))
