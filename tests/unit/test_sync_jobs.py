"""Sync jobs without a broker: the rules (jobs.py), the job rows (sync_jobs.py) on a scratch database,
the work queue's pure parts, and connection settings."""
from datetime import UTC, datetime, timedelta

import pytest

from roster.errors import NotFound, ValidationFailed
from roster.testing import recorded_fields, unit_of_work
from roster.work_queue import ATTEMPT_HEADER, attempt_of, retry_delay
from services.billing_sync import commands, domain, jobs, sync_jobs
from services.billing_sync.models import Base, bookkeeping

T0 = datetime(2026, 1, 1, tzinfo=UTC)


# ---- rules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("state, redelivered, decision", [
    ("pending", False, jobs.RUN), ("pending", True, jobs.RUN),
    ("running", True, jobs.RUN),  # the worker holding it died: resume
    ("running", False, jobs.SKIP),  # a duplicate message while another worker holds it
    ("succeeded", True, jobs.SKIP), ("failed", False, jobs.SKIP),
])
def test_who_may_run_a_job(state, redelivered, decision):
    assert jobs.claim_decision(state, redelivered=redelivered) == decision


def test_errors_are_bounded_and_messages_cut():
    many = [jobs.error_entry(f"in_{n}", "currency", "bad") for n in range(150)]
    kept = jobs.with_errors(many[:60], many[60:])
    assert len(kept) == jobs.MAX_ERRORS and kept[0]["object_id"] == "in_0" and kept[-1]["object_id"] == "in_99"
    long = jobs.error_entry("x", "f", "y" * 1000)
    assert len(long["message"]) == jobs.MAX_MESSAGE and long["message"].endswith("…")


def test_a_parent_is_done_only_once_listed_and_every_child_finished():
    assert not jobs.parent_done(listed=False, total=2, processed=2, failed=0)
    assert not jobs.parent_done(listed=True, total=3, processed=1, failed=1)
    assert jobs.parent_done(listed=True, total=3, processed=2, failed=1)
    assert jobs.parent_outcome(total=3, failed=1) is None
    assert "all 3 customers failed" in jobs.parent_outcome(total=3, failed=3)
    assert jobs.parent_outcome(total=0, failed=0) is None


def test_progress_line_shows_done_of_total_and_rate():
    line = jobs.Progress(processed=90, failed=10, total=400, elapsed=4.0).line("source_sync j1")
    assert line == "source_sync j1: 100/400 done (90 processed, 10 failed), 25.0/s"
    assert "?/" not in jobs.Progress(1, 0, None, 0).line("x") and "1/? done" in jobs.Progress(1, 0, None, 0).line("x")
    assert [n for n in range(1, 301) if jobs.should_log_progress(n)] == [100, 200, 300]


def test_stats_count_states_and_age_the_oldest_pending():
    rows = [("pending", 3, T0), ("running", 2, T0 - timedelta(hours=1)), ("failed", 1, T0)]
    assert jobs.stats(rows, T0 + timedelta(seconds=90)) == {
        "pending": 3, "running": 2, "succeeded": 0, "failed": 1, "cancelled": 0, "oldest_pending_age_seconds": 90.0}
    assert jobs.stats([], T0)["oldest_pending_age_seconds"] == 0.0


def test_processing_status_sums_objects_and_counts_what_is_left():
    rows = [("succeeded", 5, 1, 6), ("running", 2, 0, 10), ("pending", 0, 0, None)]
    assert jobs.processing_status(rows) == {"processed": 7, "failed": 1, "pending": 8 + 1}


def test_work_queue_backoff_and_attempts():
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay(30) == 60.0
    assert attempt_of(None) == 1 and attempt_of({ATTEMPT_HEADER: 3}) == 3 and attempt_of({ATTEMPT_HEADER: "x"}) == 1


@pytest.mark.parametrize("connection, param", [
    (None, "connection"), ({}, "connection.base_url"), ({"base_url": "ftp://x", "api_key": "k"}, "connection.base_url"),
    ({"base_url": "https://api.example.com"}, "connection.api_key"),
    ({"base_url": "https://api.example.com", "api_key": "a b"}, "connection.api_key"),
    ({"base_url": "https://api.example.com", "api_key": "k", "secret": 1}, "connection.secret"),
])
def test_connection_settings_are_checked_by_field(connection, param):
    with pytest.raises(ValidationFailed) as refused:
        domain.clean_connection("Stripe", connection)
    assert refused.value.param == param
    assert "sk_" not in refused.value.message


STRIPE = frozenset({"api.stripe.com"})


@pytest.mark.parametrize("base_url", [
    "http://169.254.169.254/latest", "http://127.0.0.1:8080", "https://api.stripe.com.evil.example",
    "https://evil.example/api.stripe.com", "https://user:pw@api.stripe.com", "https://api.stripe.com:x",
    "https://[::1]/v1",
])
def test_a_connection_may_only_name_an_allowed_host(base_url):
    with pytest.raises(ValidationFailed) as refused:
        domain.clean_connection("Stripe", {"base_url": base_url, "api_key": "sk_test"}, STRIPE)
    assert refused.value.param == "connection.base_url"


def test_an_allowed_host_in_any_case_and_port_is_taken_and_star_allows_any():
    for base_url in ("https://api.stripe.com", "https://API.Stripe.com:443/v1/"):
        assert domain.clean_connection("Stripe", {"base_url": base_url, "api_key": "k"}, STRIPE)["api_key"] == "k"
    assert domain.clean_connection("Stripe", {"base_url": "http://10.0.0.7:12111", "api_key": "k"},
                                   frozenset({"*"}))["base_url"] == "http://10.0.0.7:12111"
    refused = domain.connector_host_problem("http://10.0.0.7", frozenset())
    assert "CONNECTOR_ALLOWED_HOSTS: none" in refused


def test_the_allowed_hosts_come_from_the_environment(monkeypatch):
    from services.billing_sync import settings

    monkeypatch.delenv("CONNECTOR_ALLOWED_HOSTS", raising=False)
    assert settings.connector_hosts() == {"api.stripe.com"}
    monkeypatch.setenv("CONNECTOR_ALLOWED_HOSTS", " Stripe-Mock , 127.0.0.1,")
    assert settings.connector_hosts() == {"stripe-mock", "127.0.0.1"}


def test_only_known_systems():
    assert domain.clean_system(None) == "Import API"
    with pytest.raises(ValidationFailed) as refused:
        domain.clean_system("Paddle")
    assert refused.value.param == "system"


# ---- job rows ----------------------------------------------------------------------------------


@pytest.fixture()
def uow(tmp_path):
    return unit_of_work(Base, bookkeeping, tmp_path)


@pytest.fixture()
def stripe(uow):
    return commands.create_data_source(uow, {"name": "Billing", "system": "Stripe",
                                             "connection": {"base_url": "http://127.0.0.1:9/", "api_key": "sk_x"}})


def test_a_stripe_source_stores_its_key_and_never_answers_it(uow, stripe):
    assert stripe["connection"] == {"base_url": "http://127.0.0.1:9", "api_key_set": True}
    assert "sk_x" not in repr(commands.get_data_source(uow, stripe["uuid"], {"with_processing_status": True}))
    assert "sk_x" not in repr(recorded_fields(uow))
    plain = commands.create_data_source(uow, {"name": "Plain"})
    assert "connection" not in plain
    with pytest.raises(ValidationFailed):
        sync_jobs.request_source_sync(uow, plain["uuid"])


def test_a_job_runs_once_resumes_after_a_redelivery_and_finishes_with_an_event(uow, stripe):
    job = sync_jobs.request_customer_resync(uow, {"uuid": "cus_1", "data_source_uuid": stripe["uuid"],
                                                  "external_id": "cus_A"})
    assert job["state"] == "pending" and job["kind"] == "customer_resync"
    ticket = sync_jobs.claim(uow, job["id"], taking_over=False)
    assert ticket.api_key == "sk_x" and "sk_x" not in repr(ticket) and not ticket.resumed
    assert sync_jobs.claim(uow, job["id"], taking_over=False) is None  # a duplicate message
    again = sync_jobs.claim(uow, job["id"], taking_over=True)  # the first worker died
    assert again.resumed and again.attempts == 2
    sync_jobs.report(uow, job["id"], processed=3, failed=1, total=4,
                     errors=[jobs.error_entry("in_1", "currency", "bad")])
    assert sync_jobs.finish(uow, job["id"]) == "succeeded"
    assert sync_jobs.finish(uow, job["id"], reason="late") == "succeeded"  # finished stays finished
    assert sync_jobs.claim(uow, job["id"], taking_over=True) is None
    shown = sync_jobs.get_job(uow, job["id"])
    assert shown["counts"] == {"processed": 3, "failed": 1, "total": 4} and shown["attempts"] == 2
    assert shown["errors"] == [{"object_id": "in_1", "field": "currency", "message": "bad"}]
    [event] = recorded_fields(uow, "sync_job_finished")
    assert event["job_id"] == job["id"] and event["state"] == "succeeded" and event["counts"]["processed"] == 3
    with pytest.raises(NotFound):
        sync_jobs.get_job(uow, "nope")


def test_a_cancelled_job_is_never_claimed_and_its_running_worker_stops_at_its_next_report(uow, stripe):
    pending = sync_jobs.request_customer_resync(uow, {"uuid": "cus_1", "data_source_uuid": stripe["uuid"],
                                                      "external_id": "cus_A"})
    assert sync_jobs.cancel(uow, pending["id"])["state"] == "cancelled"
    assert sync_jobs.claim(uow, pending["id"], taking_over=True) is None

    running = sync_jobs.request_customer_resync(uow, {"uuid": "cus_2", "data_source_uuid": stripe["uuid"],
                                                      "external_id": "cus_B"})
    sync_jobs.claim(uow, running["id"], taking_over=False)
    sync_jobs.report(uow, running["id"], processed=2)
    cancelled = sync_jobs.cancel(uow, running["id"])
    assert (cancelled["state"], cancelled["reason"], cancelled["counts"]["processed"]) == \
        ("cancelled", jobs.CANCELLED_REASON, 2)
    with pytest.raises(sync_jobs.JobStopped):
        sync_jobs.report(uow, running["id"], processed=1)
    assert sync_jobs.finish(uow, running["id"]) == "cancelled"  # the worker's last word changes nothing
    assert [event["state"] for event in recorded_fields(uow, "sync_job_finished")] == ["cancelled", "cancelled"]
    assert sync_jobs.job_stats(uow)["cancelled"] == 2

    with pytest.raises(ValidationFailed) as ended:
        sync_jobs.cancel(uow, running["id"])
    assert "ended (cancelled)" in ended.value.message
    with pytest.raises(NotFound):
        sync_jobs.cancel(uow, "nope")


def test_cancelling_a_source_sync_cancels_its_unfinished_children_and_stops_its_listing(uow, stripe):
    parent = sync_jobs.request_source_sync(uow, stripe["uuid"])
    sync_jobs.claim(uow, parent["id"], taking_over=False)
    done, running, waiting = sync_jobs.add_children(uow, parent["id"], ["cus_A", "cus_B", "cus_C"])
    sync_jobs.claim(uow, done, taking_over=False)
    sync_jobs.finish(uow, done)
    sync_jobs.claim(uow, running, taking_over=False)

    sync_jobs.cancel(uow, parent["id"])

    states = {uuid: sync_jobs.get_job(uow, uuid)["state"] for uuid in (done, running, waiting)}
    assert states == {done: "succeeded", running: "cancelled", waiting: "cancelled"}
    assert sync_jobs.claim(uow, waiting, taking_over=False) is None
    with pytest.raises(sync_jobs.JobStopped):
        sync_jobs.add_children(uow, parent["id"], ["cus_D"])
    assert len(recorded_fields(uow, "sync_job_finished")) == 2  # the finished child and the parent


def test_a_cancelled_child_counts_as_failed_in_its_parent(uow, stripe):
    parent = sync_jobs.request_source_sync(uow, stripe["uuid"])
    sync_jobs.claim(uow, parent["id"], taking_over=False)
    [child] = sync_jobs.add_children(uow, parent["id"], ["cus_A"])
    sync_jobs.mark_listed(uow, parent["id"])
    sync_jobs.cancel(uow, child)
    shown = sync_jobs.get_job(uow, parent["id"])
    assert shown["state"] == "failed" and shown["counts"]["failed"] == 1  # its only customer did not sync
    assert shown["errors"][0]["message"] == jobs.CANCELLED_REASON


def test_a_source_sync_finishes_with_its_last_child_whatever_the_order(uow, stripe):
    parent = sync_jobs.request_source_sync(uow, stripe["uuid"])
    sync_jobs.claim(uow, parent["id"], taking_over=False)
    children = sync_jobs.add_children(uow, parent["id"], ["cus_A", "cus_B", "cus_C"])
    assert len(children) == 3
    assert sync_jobs.add_children(uow, parent["id"], ["cus_A", "cus_B", "cus_C"]) == []  # a resumed listing
    sync_jobs.finish(uow, children[0])  # before the listing ends
    sync_jobs.mark_listed(uow, parent["id"])
    assert sync_jobs.get_job(uow, parent["id"])["state"] == "running"
    sync_jobs.finish(uow, children[1], reason="billing system unavailable: HTTP 500")
    assert sync_jobs.pending_children(uow, parent["id"]) == [children[2]]
    sync_jobs.finish(uow, children[2])
    done = sync_jobs.get_job(uow, parent["id"])
    assert done["state"] == "succeeded" and done["counts"] == {"processed": 2, "failed": 1, "total": 3}
    assert done["errors"][0] == {"object_id": "cus_B", "field": None, "message": "billing system unavailable: HTTP 500"}
    assert sync_jobs.get_job(uow, children[0])["parent_id"] == parent["id"]


def test_a_child_failing_on_an_id_with_a_nul_still_finishes_itself_and_its_parent(uow, stripe):
    parent = sync_jobs.request_source_sync(uow, stripe["uuid"])
    sync_jobs.claim(uow, parent["id"], taking_over=False)
    [child] = sync_jobs.add_children(uow, parent["id"], ["cus_A"])
    sync_jobs.mark_listed(uow, parent["id"])
    assert sync_jobs.finish(uow, child, reason="malformed: id 'cus_nul\x00x'") == "failed"
    done = sync_jobs.get_job(uow, parent["id"])
    assert done["state"] == "failed" and done["counts"]["failed"] == 1
    assert done["errors"][0]["message"] == "malformed: id 'cus_nul\\x00x'"


def test_a_source_with_no_customers_finishes_when_listed(uow, stripe):
    parent = sync_jobs.request_source_sync(uow, stripe["uuid"])
    sync_jobs.claim(uow, parent["id"], taking_over=False)
    sync_jobs.mark_listed(uow, parent["id"])
    assert sync_jobs.get_job(uow, parent["id"])["state"] == "succeeded"


def test_stats_and_processing_status_follow_live_jobs(uow, stripe):
    first = sync_jobs.request_customer_resync(uow, {"uuid": "c1", "data_source_uuid": stripe["uuid"], "external_id": "A"})
    sync_jobs.request_customer_resync(uow, {"uuid": "c2", "data_source_uuid": stripe["uuid"], "external_id": "B"})
    stats = sync_jobs.job_stats(uow)
    assert stats["pending"] == 2 and stats["running"] == 0 and stats["oldest_pending_age_seconds"] >= 0
    sync_jobs.claim(uow, first["id"], taking_over=False)
    sync_jobs.report(uow, first["id"], processed=4, failed=1, total=5)
    sync_jobs.finish(uow, first["id"])
    assert sync_jobs.job_stats(uow)["succeeded"] == 1
    status = commands.get_data_source(uow, stripe["uuid"], {"with_processing_status": True})["processing_status"]
    assert status == {"processed": 4, "failed": 1, "pending": 1}


def test_deleting_a_source_deletes_its_jobs(uow, stripe):
    parent = sync_jobs.request_source_sync(uow, stripe["uuid"])
    sync_jobs.add_children(uow, parent["id"], ["A"])
    commands.delete_data_source(uow, stripe["uuid"])
    with pytest.raises(NotFound):
        sync_jobs.get_job(uow, parent["id"])


def test_a_merged_customer_resyncs_from_its_connector_source(uow, stripe):
    plain = commands.create_data_source(uow, {"name": "Plain"})
    merged = {"uuid": "c1", "data_source_uuid": plain["uuid"], "external_id": "imp_1",
              "data_source_uuids": [plain["uuid"], stripe["uuid"]], "external_ids": ["imp_1", "cus_S"]}
    job = sync_jobs.request_customer_resync(uow, merged)
    assert job["data_source_uuid"] == stripe["uuid"] and job["customer_external_id"] == "cus_S"
    with pytest.raises(ValidationFailed) as refused:
        sync_jobs.request_customer_resync(uow, {**merged, "data_source_uuids": [plain["uuid"]],
                                                "external_ids": ["imp_1"]})
    assert refused.value.param == "uuid"
