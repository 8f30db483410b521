"""Sync job rows under concurrency, on the configured database (SQLite, or PostgreSQL with
DATABASE_URL): racing claims of one job make one runner, children finishing at once leave their
parent's counts exact and finish it exactly once."""
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.orm import sessionmaker

from roster import config, migrations
from roster.database import make_engine
from roster.testing import recorded_fields
from roster.uow import UnitOfWork
from services.billing_sync import commands, sync_jobs
from services.billing_sync.models import UNIQUE_RULES, Base, bookkeeping


@pytest.fixture()
def uow(own_database):
    engine = make_engine(config.database_url("billing_sync"), config.database_schema("billing_sync"))
    migrations.upgrade(engine, "billing_sync", Base.metadata)
    yield UnitOfWork(sessionmaker(engine, expire_on_commit=False), bookkeeping, unique_rules=UNIQUE_RULES)
    engine.dispose()


@pytest.fixture()
def source(uow):
    return commands.create_data_source(uow, {"name": "S", "system": "Stripe",
                                             "connection": {"base_url": "http://127.0.0.1:9", "api_key": "k"}})


def test_racing_claims_of_one_job_make_one_runner(uow, source):
    for _ in range(3):
        job = sync_jobs.request_customer_resync(uow, {"uuid": "c", "data_source_uuid": source["uuid"],
                                                      "external_id": "A"})
        with ThreadPoolExecutor(8) as pool:
            tickets = list(pool.map(lambda _: sync_jobs.claim(uow, job["id"], taking_over=False), range(8)))
        assert sum(ticket is not None for ticket in tickets) == 1


def test_children_finishing_together_finish_their_parent_once_with_exact_counts(uow, source):
    parent = sync_jobs.request_source_sync(uow, source["uuid"])
    sync_jobs.claim(uow, parent["id"], taking_over=False)
    children = sync_jobs.add_children(uow, parent["id"], [f"cus_{n}" for n in range(24)])
    sync_jobs.mark_listed(uow, parent["id"])

    def run(index_and_child):
        index, child = index_and_child
        sync_jobs.claim(uow, child, taking_over=False)
        return sync_jobs.finish(uow, child, reason="broken" if index % 4 == 0 else None,
                                counts={"processed": 1, "total": 1})

    with ThreadPoolExecutor(8) as pool:
        states = list(pool.map(run, enumerate(children)))
    assert states.count("failed") == 6
    done = sync_jobs.get_job(uow, parent["id"])
    assert done["state"] == "succeeded" and done["counts"] == {"processed": 18, "failed": 6, "total": 24}
    finished = [event for event in recorded_fields(uow, "sync_job_finished") if event["job_id"] == parent["id"]]
    assert len(finished) == 1


def test_a_source_sync_cancelled_while_its_children_finish_ends_once_without_a_deadlock(uow, source):
    for _ in range(3):
        parent = sync_jobs.request_source_sync(uow, source["uuid"])
        sync_jobs.claim(uow, parent["id"], taking_over=False)
        children = sync_jobs.add_children(uow, parent["id"], [f"cus_{n}" for n in range(16)])
        sync_jobs.mark_listed(uow, parent["id"])
        for child in children:
            sync_jobs.claim(uow, child, taking_over=False)

        def finish(child):
            return sync_jobs.finish(uow, child, counts={"processed": 1, "total": 1})

        with ThreadPoolExecutor(8) as pool:
            finishing = [pool.submit(finish, child) for child in children]
            cancelled = pool.submit(sync_jobs.cancel, uow, parent["id"])
            states = [future.result() for future in finishing]
            try:
                assert cancelled.result()["state"] == "cancelled"
            except Exception as error:  # every child finished first: the parent had ended
                assert "has ended (succeeded)" in str(error) and states.count("succeeded") == 16
        shown = {sync_jobs.get_job(uow, child)["state"] for child in children}
        assert shown <= {"succeeded", "cancelled"}
        finished = [event for event in recorded_fields(uow, "sync_job_finished") if event["job_id"] == parent["id"]]
        assert len(finished) == 1
