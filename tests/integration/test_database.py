"""The database layer under eventlet: a slow query must not stop the other green threads."""
import os
import time

import eventlet
import pytest
from sqlalchemy import text

from roster.database import make_engine
from tools.isolation import is_postgres

DATABASE_URL = os.environ.get("DATABASE_URL")


@pytest.mark.skipif(not is_postgres(DATABASE_URL), reason="needs DATABASE_URL pointing at PostgreSQL")
def test_a_slow_postgres_query_lets_other_green_threads_run():
    engine = make_engine(DATABASE_URL)
    ticks = []

    def ticker():
        started = time.monotonic()
        while time.monotonic() - started < 0.6:
            eventlet.sleep(0.05)
            ticks.append(time.monotonic())

    thread = eventlet.spawn(ticker)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_sleep(0.5)"))
    thread.wait()
    engine.dispose()

    assert len(ticks) >= 8  # a blocking driver would let the ticker run only after the query
