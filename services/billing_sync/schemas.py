"""What the billing_sync service returns over RPC: plain dicts, dumped by schemas."""
from datetime import timezone

from marshmallow import Schema, fields


class DataSourceSchema(Schema):
    uuid = fields.String()
    name = fields.String()
    system = fields.String()
    status = fields.String()
    created_at = fields.Function(
        lambda source: (source.created_at if source.created_at.tzinfo else
                        source.created_at.replace(tzinfo=timezone.utc)).isoformat()
    )


data_source_schema = DataSourceSchema()
