"""HTTP shapes of the operators' routes (gateway/routes/ops.py, docs/operations.md)."""
from marshmallow import Schema, fields


class HealthOut(Schema):
    status = fields.String(metadata={"description": "always ok while the process serves HTTP"})


class ReadyOut(Schema):
    status = fields.String(metadata={"description": "ok (a part failing answers 503 with the error body)"})
    checks = fields.Dict(keys=fields.String(), values=fields.String(),
                         metadata={"description": "each service, and broker: ok or why not"})
