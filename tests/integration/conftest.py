"""Integration tests: real nameko containers on the real broker, in a throwaway vhost."""
import os

import pytest

from tools.isolation import create_vhost, delete_vhost, drop_schemas, is_postgres, schema_prefix
from tools.stack import DEFAULT_AMQP_URI, StackError, ensure_rabbitmq


@pytest.fixture(scope="session")
def amqp_uri():
    base_uri = os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI
    try:
        ensure_rabbitmq(base_uri)
        vhost, uri = create_vhost(base_uri, prefix="roster_it")
    except StackError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield uri
    delete_vhost(vhost)


@pytest.fixture()
def own_database(tmp_path, monkeypatch):
    """Give the containers of one test their own SQLite folder or PostgreSQL schemas."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    prefix = schema_prefix()
    monkeypatch.setenv("DATABASE_SCHEMA_PREFIX", prefix)
    yield
    database_url = os.environ.get("DATABASE_URL")
    if is_postgres(database_url):
        drop_schemas(database_url, prefix)
