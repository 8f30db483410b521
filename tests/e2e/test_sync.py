"""Sync from a billing system, end to end: the session platform's sync workers against a real local
Stripe-compatible server (tools/fake_billing.py). Needs the customers/contacts `sync_customer` and
`sync_contacts` RPCs (docs/sync.md)."""
import json
import os
import re
import signal
import subprocess
import threading

import pytest
from kombu import Connection, Exchange, Queue, binding

from tests.e2e.support import eventually, unique
from tools.fake_billing import DEFAULT_API_KEY, BillingModel, FakeBilling, unix

FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def billing():
    fake = FakeBilling(BillingModel()).start()
    yield fake
    fake.stop()


class BusEvents:
    """An outside subscriber: every billing_sync movement and transaction event, as a user's service sees them."""

    KEYS = ("mrr_movement_recorded", "mrr_movement_retracted", "transaction_recorded", "sync_job_finished")

    def __init__(self, amqp_uri: str):
        self.events: list[tuple[str, dict]] = []
        self.connection = Connection(amqp_uri)
        exchange = Exchange("billing_sync.events", type="topic", durable=True)
        self.queues = [Queue(f"test-sync-{unique()}", auto_delete=True,
                             bindings=[binding(exchange, routing_key=key) for key in self.KEYS])]
        self.stop = False
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self):
        with self.connection.Consumer(self.queues, callbacks=[self._on], accept=["json"]):
            self.ready.set()
            while not self.stop:
                try:
                    self.connection.drain_events(timeout=0.2)
                except (TimeoutError, OSError):
                    continue

    def _on(self, body, message):
        self.events.append((message.delivery_info["routing_key"], body if isinstance(body, dict)
                            else json.loads(body)))
        message.ack()

    def of(self, key: str, customer_uuid: str) -> list[dict]:
        return [body for name, body in list(self.events) if name == key and body.get("customer_uuid") == customer_uuid]

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.connection.release()


@pytest.fixture(scope="module")
def bus(amqp_uri):
    events = BusEvents(amqp_uri)
    yield events
    events.close()


def stripe_source(http, billing) -> dict:
    answer = http.post("/v1/data_sources", json={"name": unique("Stripe"), "system": "Stripe",
                                                 "connection": {"base_url": billing.url, "api_key": DEFAULT_API_KEY}})
    assert answer.status_code == 201, answer.text
    return answer.json()


def finished_job(http, answer, timeout: float = 60) -> dict:
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    return eventually(lambda: (lambda job: job if job["state"] in FINISHED else None)(
        http.get(f"/v1/sync_jobs/{job_id}").json()), timeout=timeout)


def customer_of(http, source: dict, external_id: str) -> dict | None:
    entries = http.get("/v1/customers", params={"data_source_uuid": source["uuid"],
                                                "external_id": external_id}).json()["entries"]
    return entries[0] if entries else None


def invoices_of(http, customer_uuid: str) -> list[dict]:
    return http.get(f"/v1/import/customers/{customer_uuid}/invoices", params={"per_page": 200}).json()["invoices"]


def test_a_connector_source_keeps_its_key_and_refuses_bad_settings(http, billing):
    source = stripe_source(http, billing)
    assert source["system"] == "Stripe" and source["connection"] == {"base_url": billing.url, "api_key_set": True}
    fetched = http.get(f"/v1/data_sources/{source['uuid']}")
    assert DEFAULT_API_KEY not in fetched.text and DEFAULT_API_KEY not in http.get("/v1/data_sources").text
    missing = http.post("/v1/data_sources", json={"name": "x", "system": "Stripe", "connection": {"base_url": billing.url}})
    assert missing.status_code == 422 and missing.json()["param"] == "connection.api_key"
    bad_url = http.post("/v1/data_sources", json={"name": "x", "system": "Stripe",
                                                  "connection": {"base_url": "ftp://x", "api_key": "k"}})
    assert bad_url.status_code == 422 and bad_url.json()["param"] == "connection.base_url"
    internal = http.post("/v1/data_sources", json={"name": "x", "system": "Stripe", "connection": {
        "base_url": "http://169.254.169.254/latest", "api_key": "k"}})  # not in CONNECTOR_ALLOWED_HOSTS
    assert internal.status_code == 422 and "169.254.169.254" in internal.json()["message"]
    assert http.post(f"/v1/data_sources/{source['uuid']}/sync", role="read_only").status_code == 403
    plain = http.post("/v1/data_sources", json={"name": unique("Import")}).json()
    assert http.post(f"/v1/data_sources/{plain['uuid']}/sync").status_code == 422
    assert http.get(f"/v1/sync_jobs/{unique()}").status_code == 404
    assert http.post(f"/v1/customers/cus_{unique()}/resync").status_code == 404
    imported = http.post("/v1/customers", json={"data_source_uuid": plain["uuid"], "external_id": unique(),
                                                "name": "Imported"}).json()
    not_synced = http.post(f"/v1/customers/{imported['uuid']}/resync")
    assert not_synced.status_code == 422 and not_synced.json()["param"] == "uuid"


def test_full_sync_then_upgrade_resync_is_idempotent_and_restores_a_deleted_customer(http, billing, bus):
    model = billing.model
    gold, platinum = model.add_price("Gold", 5000), model.add_price("Platinum", 9000)
    ada = model.add_customer("Ada Lovelace", f"{unique('ada')}@example.com", metadata={"company": "Engines"})
    sub = model.subscribe(ada, gold, start=unix(2024, 1, 1), periods=3)
    bob = model.add_customer("Bob Stone", f"{unique('bob')}@example.com")
    model.subscribe(bob, gold, start=unix(2024, 2, 1), periods=2)
    source = stripe_source(http, billing)

    job = finished_job(http, http.post(f"/v1/data_sources/{source['uuid']}/sync"))
    assert job["state"] == "succeeded", job
    assert job["kind"] == "source_sync" and job["counts"]["total"] >= 2 and job["counts"]["failed"] == 0
    customer = customer_of(http, source, ada)
    assert customer["billing-system-type"] == "Stripe"
    assert len(invoices_of(http, customer["uuid"])) == 3
    movements = eventually(lambda: bus.of("mrr_movement_recorded", customer["uuid"]))
    status = http.get(f"/v1/data_sources/{source['uuid']}", params={"with_processing_status": "true"}).json()
    assert status["processing_status"]["pending"] == 0 and status["processing_status"]["processed"] > 0

    # An upgrade upstream, then the customer's re-sync: one new invoice, an expansion.
    model.change_plan(sub, platinum)
    resync = finished_job(http, http.post(f"/v1/customers/{customer['uuid']}/resync"))
    assert resync["state"] == "succeeded" and resync["kind"] == "customer_resync", resync
    assert len(invoices_of(http, customer["uuid"])) == 4
    expansion = eventually(lambda: [m for m in bus.of("mrr_movement_recorded", customer["uuid"])
                                    if m["movement"]["type"] == "expansion"])
    assert len(expansion) == 1

    # Syncing the same data again changes nothing and says nothing.
    seen_movements = len(bus.of("mrr_movement_recorded", customer["uuid"]))
    seen_transactions = len(bus.of("transaction_recorded", customer["uuid"]))
    again = finished_job(http, http.post(f"/v1/data_sources/{source['uuid']}/sync"))
    assert again["state"] == "succeeded"
    finished_job(http, http.post(f"/v1/customers/{customer['uuid']}/resync"))
    assert len(invoices_of(http, customer["uuid"])) == 4
    eventually(lambda: any(body.get("job_id") == again["id"] for _, body in bus.events))
    assert len(bus.of("mrr_movement_recorded", customer["uuid"])) == seen_movements >= len(movements)
    assert len(bus.of("transaction_recorded", customer["uuid"])) == seen_transactions
    assert len(bus.of("mrr_movement_retracted", customer["uuid"])) == 0

    # Deleted in Roster, restored with its invoices by the next sync.
    assert http.delete(f"/v1/customers/{customer['uuid']}").status_code == 204
    eventually(lambda: customer_of(http, source, ada) is None)
    restored_job = finished_job(http, http.post(f"/v1/data_sources/{source['uuid']}/sync"))
    assert restored_job["state"] == "succeeded"
    restored = customer_of(http, source, ada)
    assert restored is not None and restored["uuid"] != customer["uuid"]
    assert len(invoices_of(http, restored["uuid"])) == 4


def test_a_malformed_invoice_fails_alone_and_the_job_says_which(http, billing):
    model = billing.model
    price = model.add_price("Silver", 3000)
    cus = model.add_customer("Cleo Broken", f"{unique('cleo')}@example.com")
    sub = model.subscribe(cus, price, start=unix(2024, 3, 1), periods=2)
    broken = model.subscriptions[sub]["_invoices"][0]
    model.malform(broken, {"currency": "dollars"})
    source = stripe_source(http, billing)
    existing = http.post("/v1/customers", json={"data_source_uuid": source["uuid"], "external_id": cus,
                                                "name": "Cleo"}).json()
    job = finished_job(http, http.post(f"/v1/customers/{existing['uuid']}/resync"))
    assert job["state"] == "succeeded", job
    assert job["counts"]["failed"] == 1, job["errors"]
    assert job["errors"] == [{"object_id": broken, "field": "currency", "message": job["errors"][0]["message"]}]
    assert len(invoices_of(http, existing["uuid"])) == 1


def test_the_billing_api_failing_ends_the_job_failed_with_the_reason(http, billing, stack):
    model = billing.model
    cus = model.add_customer("Dora Down", f"{unique('dora')}@example.com")
    source = stripe_source(http, billing)
    existing = http.post("/v1/customers", json={"data_source_uuid": source["uuid"], "external_id": cus,
                                                "name": "Dora"}).json()
    billing.reset_counts()
    billing.fail_next(50, status=500)
    try:
        job = finished_job(http, http.post(f"/v1/customers/{existing['uuid']}/resync"), timeout=90)
    finally:
        billing.fail_next(0)
        billing._faults.clear()
    assert job["state"] == "failed", job
    assert "unavailable" in job["reason"] and "500" in job["reason"]
    assert billing.count(f"/v1/customers/{cus}") > 1  # retried before giving up
    stats = http.get("/v1/sync_jobs/stats").json()
    assert stats["failed"] >= 1 and set(stats) >= {"pending", "running", "failed", "oldest_pending_age_seconds"}
    for log in stack.log_dir.glob("*.log"):  # the billing API key is stored, never logged
        assert DEFAULT_API_KEY not in log.read_text(errors="replace"), log


def test_a_cancelled_source_sync_stops_and_cancels_its_customers_jobs(http):
    slow = FakeBilling(BillingModel(), latency=0.3).start()
    try:
        for n in range(6):
            slow.model.add_customer(f"Slow {n}", f"slow{n}@example.com")
        source = stripe_source(http, slow)
        job = http.post(f"/v1/data_sources/{source['uuid']}/sync").json()
        assert http.post(f"/v1/sync_jobs/{job['id']}/cancel", role="read_only").status_code == 403
        cancelled = http.post(f"/v1/sync_jobs/{job['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled", cancelled.text
        again = http.post(f"/v1/sync_jobs/{job['id']}/cancel")
        assert again.status_code == 422 and "cancelled" in again.json()["message"]
        assert http.post(f"/v1/sync_jobs/{unique()}/cancel").status_code == 404
        # whatever the workers were doing, nothing of this source is left to run
        eventually(lambda: http.get(f"/v1/data_sources/{source['uuid']}",
                                    params={"with_processing_status": "true"}).json()["processing_status"]["pending"]
                   == 0, timeout=30)
        assert http.get(f"/v1/sync_jobs/{job['id']}").json()["state"] == "cancelled"
        assert http.get("/v1/sync_jobs/stats").json()["cancelled"] >= 1
    finally:
        slow.stop()


def test_a_worker_killed_mid_job_loses_nothing(http, stack, tmp_path):
    """SIGKILL a sync worker while it holds a customer's re-sync: another worker resumes it."""
    slow = FakeBilling(BillingModel(), latency=0.3).start()
    stack.stop_service("sync_worker")  # this test's own two workers replace the session's for a while
    workers = [subprocess.Popen(stack.command("sync_worker"), cwd=stack.root, env=stack.env,
                                stdout=open(tmp_path / f"worker-{n}.log", "wb"), stderr=subprocess.STDOUT,
                                start_new_session=True) for n in range(2)]
    try:
        model = slow.model
        price = model.add_price("Slow", 1000)
        for n in range(4):
            model.subscribe(model.add_customer(f"Slow {n}", f"{unique('slow')}@example.com"), price,
                            start=unix(2024, 1, 1), periods=2)
        source = stripe_source(http, slow)
        answer = http.post(f"/v1/data_sources/{source['uuid']}/sync")
        assert answer.status_code == 202, answer.text

        def started():  # (worker index, job id) of the first customer re-sync a worker took
            for index in range(2):
                found = re.search(r"customer_resync (\S+) started", (tmp_path / f"worker-{index}.log").read_text())
                if found:
                    return index, found.group(1)
            return None

        index, child = eventually(started, timeout=60, interval=0.02)
        os.killpg(workers[index].pid, signal.SIGKILL)
        workers[index].wait()
        parent = finished_job(http, answer, timeout=90)
        assert parent["state"] == "succeeded", parent
        assert parent["counts"] == {"processed": 4, "failed": 0, "total": 4}
        resumed = http.get(f"/v1/sync_jobs/{child}").json()
        assert resumed["state"] == "succeeded" and resumed["attempts"] == 2, resumed
        survivor = (tmp_path / f"worker-{1 - index}.log").read_text()
        assert f"customer_resync {child} started (attempt 2, resumed)" in survivor
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        slow.stop()
        stack.start_service("sync_worker")
        stack.wait_ready(timeout=60)


def test_a_csv_upload_over_the_json_limit_imports_good_rows_and_names_bad_lines(http):
    source = http.post("/v1/data_sources", json={"name": unique("CSV")}).json()
    first, second = unique("csv"), unique("csv")
    text = ("record_type,external_id,customer_external_id,name,email,first_name,country\n"
            f"customer,{first},,Ada CSV,{first}@example.com,,GB\n"
            f"contact,,{first},,,Ada,\n"
            f"customer,{second},,Bad Country,,,Narnia\n"
            + "\n" * 1_200_000  # blank lines are skipped: a body past the 1 MiB JSON limit, cheaply
            + f"customer,{second},,Bob CSV,{second}@example.com,,US\n")
    assert len(text) > 1024 * 1024
    assert http.post(f"/v1/data_sources/{source['uuid']}/csv_imports", role="read_only", data=text,
                     headers={"Content-Type": "text/csv"}).status_code == 403
    job = finished_job(http, http.post(f"/v1/data_sources/{source['uuid']}/csv_imports", data=text,
                                       headers={"Content-Type": "text/csv"}))
    assert job["state"] == "succeeded" and job["kind"] == "csv_import", job
    assert job["counts"]["failed"] == 1, job["errors"]
    assert job["errors"] == [{"object_id": "line 4", "field": "country", "message": job["errors"][0]["message"]}]
    assert customer_of(http, source, first)["name"] == "Ada CSV"
    assert customer_of(http, source, second)["name"] == "Bob CSV"

    # a later file with only some columns, or empty cells, changes only what it gives
    rename = f"record_type,external_id,name,email\ncustomer,{first},Ada Renamed,\n"  # no country column
    renamed = finished_job(http, http.post(f"/v1/data_sources/{source['uuid']}/csv_imports", data=rename,
                                           headers={"Content-Type": "text/csv"}))
    assert renamed["state"] == "succeeded", renamed
    ada = customer_of(http, source, first)
    assert (ada["name"], ada["email"], ada["country"]) == ("Ada Renamed", f"{first}@example.com", "GB")

    multipart = http.post(f"/v1/data_sources/{source['uuid']}/csv_imports",
                          files={"file": ("more.csv", f"record_type,external_id,name\ncustomer,{unique()},Cy\n",
                                          "text/csv")})
    assert finished_job(http, multipart)["state"] == "succeeded"
    chunked = http.post(f"/v1/data_sources/{source['uuid']}/csv_imports", headers={"Content-Type": "text/csv"},
                        data=iter([b"record_type,external_id,name\n", f"customer,{unique()},Chunky\n".encode()]))
    assert finished_job(http, chunked)["counts"]["processed"] == 1  # a chunked body (no Content-Length)
    unnamed = http.post(f"/v1/data_sources/{source['uuid']}/csv_imports",  # a form field, not a file part
                        files={"file": (None, "record_type,external_id,name\n" + "x" * 600_000)})
    assert unnamed.status_code == 413 and unnamed.json()["param"] == "file", unnamed.text
    empty = http.post(f"/v1/data_sources/{source['uuid']}/csv_imports", data=b"", headers={"Content-Type": "text/csv"})
    assert empty.status_code == 400
    assert http.post(f"/v1/data_sources/ds_{unique()}/csv_imports", data="x").status_code == 404
