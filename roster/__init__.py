"""Roster's shared library: settings, database access and migrations, the unit of work,
events (envelope, outbox relay, durable handlers), bounded RPC, cursors, timestamps and
error types. No business rules live here.

Importing `roster` loads nothing else: the pure modules (errors, timestamps, pagination,
uow, events) import no framework, and only roster.rpc, roster.handlers and
roster.dependencies touch nameko.
"""
