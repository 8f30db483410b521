"""billing_sync's metric days in parts: concurrent imports add to a day without waiting for
each other's commit, and a day reads as the sum of its parts."""
import os
from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from roster.database import make_engine
from services.billing_sync import store
from services.billing_sync.metrics import MetricDay
from services.billing_sync.models import Base
from tools.isolation import drop_schemas, is_postgres, schema_prefix

DATABASE_URL = os.environ.get("DATABASE_URL")
DAY = date(2024, 3, 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request, tmp_path):
    yield from _sessions(request.param, tmp_path)


@pytest.fixture()
def pg_sessions(tmp_path):
    yield from _sessions("postgresql", tmp_path)


def _sessions(backend, tmp_path):
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'billing.db'}")
    elif is_postgres(DATABASE_URL):
        prefix = schema_prefix()
        engine = make_engine(DATABASE_URL, f"{prefix}billing")
    else:
        pytest.skip("needs DATABASE_URL pointing at PostgreSQL")
    Base.metadata.create_all(engine)
    yield sessionmaker(engine)
    engine.dispose()
    if backend == "postgresql":
        drop_schemas(DATABASE_URL, prefix)


def test_a_day_reads_as_the_sum_of_its_parts(sessions):
    with sessions.begin() as session:
        session.execute(text("INSERT INTO metric_day_parts (day, part, new_business, expansion, contraction, churn,"
                             " reactivation, customers) VALUES (:day, 0, 100, 0, 0, 0, 0, 1),"
                             " (:day, 7, 50, 20, -5, 0, 0, 1), ('2024-02-01', 3, 30, 0, 0, 0, 0, 1)"),
                        {"day": DAY})
    with sessions.begin() as session:
        store.add_metric_days(session, [MetricDay(DAY, churn=-40, customers=-1)])
    with sessions() as session:
        assert store.metric_days(session, DAY, DAY) == [MetricDay(DAY, 150, 20, -5, -40, 0, 1)]
        assert store.metric_days(session, date(2024, 1, 1), date(2024, 12, 31))[0] == MetricDay(date(2024, 2, 1),
                                                                                                 30, customers=1)
        assert store.metric_opening(session, date(2024, 3, 2)) == (155, 2)


def test_two_open_transactions_of_one_process_add_to_the_same_day_without_waiting(pg_sessions):
    sessions = pg_sessions
    first = sessions()
    store.add_metric_days(first, [MetricDay(DAY, new_business=100, customers=1)])  # its row stays locked
    others = []
    try:
        second = sessions()
        while store.metric_part(second) == store.metric_part(first):  # pids a multiple of 16 apart: another
            others.append(second)
            assert len(others) < 5, "every connection adds to the same part"
            second = sessions()
        second.execute(text("SET LOCAL lock_timeout = '2s'"))  # one row per day would wait for `first`
        store.add_metric_days(second, [MetricDay(DAY, expansion=30)])
        second.commit()
        first.commit()
    finally:
        for session in (first, second, *others):
            session.close()
    with sessions() as session:
        assert store.metric_days(session, DAY, DAY) == [MetricDay(DAY, new_business=100, expansion=30, customers=1)]
