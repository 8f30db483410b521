"""What can go wrong when reading a billing system or a CSV file, as types the sync can tell apart."""


class ConnectorError(Exception):
    """Any failure of a connector; `str()` is a message for a job's error list."""


class UpstreamUnavailable(ConnectorError):
    """The billing system could not be reached or kept failing (5xx, 429, timeouts) after every retry."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class UpstreamRejected(ConnectorError):
    """The billing system refused the request (4xx): a wrong key, a bad parameter; retrying will not help."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class UpstreamNotFound(UpstreamRejected):
    """The billing system has no such object (404)."""


class MalformedObject(ConnectorError):
    """One object from the billing system (or one CSV record) lacks a field or has a wrong one.

    Only that object is lost: the sync records the error and goes on with the next one.
    """

    def __init__(self, object_id: str, field: str, reason: str):
        super().__init__(f"{object_id}: {field}: {reason}")
        self.object_id = object_id
        self.field = field
        self.reason = reason


class UnknownPlan(MalformedObject):
    """A subscription line item names a plan that has not been imported into the data source."""
