"""Roster's shared library: configuration, database access, event envelope and
outbox, pagination, error types and bounded RPC. No business rules live here."""

from roster import serialization  # noqa: E402,F401  (registers the bus JSON codec on import)
