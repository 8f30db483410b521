"""HTTP shapes of sync jobs (ours: re-sync, full source sync, CSV imports; docs/sync.md)."""
from marshmallow import Schema, fields


class JobCountsOut(Schema):
    processed = fields.Integer()
    failed = fields.Integer()
    total = fields.Integer(allow_none=True)


class JobErrorOut(Schema):
    object_id = fields.String(allow_none=True)
    field = fields.String(allow_none=True)
    message = fields.String()


class SyncJobOut(Schema):
    id = fields.String()
    job_id = fields.String()
    kind = fields.String(metadata={"description": "source_sync, customer_resync or csv_import"})
    data_source_uuid = fields.String()
    parent_id = fields.String(allow_none=True)
    customer_external_id = fields.String(allow_none=True)
    customer_uuid = fields.String(allow_none=True)
    state = fields.String(metadata={"description": "pending, running, succeeded, failed or cancelled"})
    counts = fields.Nested(JobCountsOut)
    errors = fields.List(fields.Nested(JobErrorOut))
    reason = fields.String(allow_none=True, metadata={"description": "why a failed job failed (or that it was cancelled)"})
    attempts = fields.Integer()
    created_at = fields.String()
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    progress_at = fields.String(allow_none=True)


class SyncJobStatsOut(Schema):
    pending = fields.Integer()
    running = fields.Integer()
    succeeded = fields.Integer()
    failed = fields.Integer()
    cancelled = fields.Integer()
    oldest_pending_age_seconds = fields.Float()
