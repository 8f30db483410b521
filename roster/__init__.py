"""Roster's shared library: configuration, database access, event envelope and
outbox, pagination, error types and bounded RPC. No business rules live here."""
