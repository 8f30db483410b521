"""What the billing_sync service answers over RPC: plain dicts of one shape."""
from roster.timestamps import render
from services.billing_sync.models import DataSource


def dump_data_source(source: DataSource) -> dict:
    return {
        "uuid": source.uuid,
        "name": source.name,
        "system": source.system,
        "status": source.status,
        "created_at": render(source.created_at),
    }
