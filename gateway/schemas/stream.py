"""HTTP shapes of the live event stream routes (gateway/routes/stream.py)."""
from marshmallow import Schema, fields

from gateway.schemas.fields import Lenient


class TokenQuery(Lenient):
    token = fields.String(required=True, metadata={"description": "from POST /v1/customers/{uuid}/events/token"})


class StreamTokenOut(Schema):
    token = fields.String()
    expires_in = fields.Integer(metadata={"description": "seconds; enough to open the stream, not to keep it open"})
    url = fields.String(metadata={"description": "the stream's path with the token"})
