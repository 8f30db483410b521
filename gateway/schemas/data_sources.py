"""HTTP shapes of data sources (ChartMogul REST API v1 §2.6)."""
from marshmallow import EXCLUDE, Schema, fields, validate

from gateway.schemas.fields import StrictString


class DataSourceCreate(Schema):
    class Meta:
        unknown = EXCLUDE

    name = StrictString(required=True, validate=validate.Length(min=1, max=500))


class DataSourceListQuery(Schema):
    class Meta:
        unknown = EXCLUDE

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
