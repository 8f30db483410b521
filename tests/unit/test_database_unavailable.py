"""Which database errors are an outage (503, retried) and which are a wrong statement (a bug, 500)."""
import sqlite3

import psycopg
from sqlalchemy import exc

from roster.database import database_unavailable


def wrapped(error_class, dbapi_error, invalidated=False):
    return error_class("SELECT 1", {}, dbapi_error, connection_invalidated=invalidated)


def test_a_lost_or_refused_connection_is_an_outage():
    assert database_unavailable(wrapped(exc.OperationalError, psycopg.OperationalError("server closed the connection")))
    assert database_unavailable(wrapped(exc.OperationalError, sqlite3.OperationalError("database is locked")))
    assert database_unavailable(wrapped(exc.OperationalError, sqlite3.OperationalError("unable to open database file")))
    assert database_unavailable(wrapped(exc.InterfaceError, sqlite3.InterfaceError("connection already closed")))
    assert database_unavailable(exc.TimeoutError("QueuePool limit reached"))
    assert database_unavailable(wrapped(exc.DBAPIError, sqlite3.DatabaseError("gone"), invalidated=True))


def test_a_wrong_statement_or_a_broken_rule_is_not():
    assert not database_unavailable(wrapped(exc.ProgrammingError, sqlite3.ProgrammingError("no such column")))
    # SQLite reports a missing table as an OperationalError: still a bug, a 500
    assert not database_unavailable(wrapped(exc.OperationalError, sqlite3.OperationalError("no such table: customers")))
    assert not database_unavailable(wrapped(exc.IntegrityError, sqlite3.IntegrityError("UNIQUE failed")))
    assert not database_unavailable(ValueError("not a database error"))
