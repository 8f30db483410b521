"""The sync runners (services/billing_sync/sync.py, csv_sync.py) without a broker: a scratch database,
a real local billing server (tools/fake_billing.py) and hand-written customers/contacts services that
record what they were asked (the real ones implement the same contract, docs/sync.md)."""
import csv
import dataclasses
import itertools

import pytest

from roster.errors import NotFound, invalid
from roster.testing import recorded_fields, unit_of_work
from services.billing_sync import commands, csv_sync, sync, sync_jobs
from services.billing_sync.models import Base, bookkeeping
from tests.unit.test_connectors_csv import COLUMNS, CUSTOMER, PLAN, invoice, line_item, payment
from tools.fake_billing import DEFAULT_API_KEY, BillingModel, FakeBilling, unix


class FakeCustomers:
    """customers.sync_customer / find_customer by (data source, external id)."""

    def __init__(self):
        self.records: dict[tuple[str, str], dict] = {}
        self.calls = 0
        self.ids = itertools.count(1)

    def sync_customer(self, data: dict) -> dict:
        self.calls += 1
        if data.get("email") == "refused@example.com":
            raise invalid("email", "is refused by this test")
        key = (data["data_source_uuid"], data["external_id"])
        record = self.records.get(key)
        outcome = "unchanged" if record and all(record.get(k) == v for k, v in data.items()) else (
            "updated" if record else "created")
        uuid = record["uuid"] if record else f"cus_{next(self.ids)}"
        self.records[key] = {**(record or {}), **data, "uuid": uuid}
        return {**self.records[key], "sync_outcome": outcome}

    def find_customer(self, data_source_uuid: str, external_id: str) -> dict:
        found = self.records.get((data_source_uuid, external_id))
        if found is None:
            raise NotFound("no such customer", param="external_id")
        return found


class FakeContacts:
    def __init__(self):
        self.contacts: dict[tuple[str, str], dict] = {}

    def sync_contacts(self, customer_uuid, data_source_uuid, contacts):
        for n, contact in enumerate(contacts):
            key = (data_source_uuid, contact.get("external_id") or f"{customer_uuid}:{n}:{contact.get('email')}")
            self.contacts[key] = {**contact, "customer_uuid": customer_uuid}
        return contacts


def write_file(path, customers: int, *, broken_every: int) -> tuple[int, int]:
    """Write `customers` customers with a contact and an invoice (2 lines, a payment) each; every
    `broken_every`-th invoice has a bad line item. Returns (data rows, broken invoices)."""
    written = broken = 0
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerow(PLAN)
        written += 1
        for n in range(customers):
            customer_id, invoice_id = f"cus_{n}", f"inv_{n}"
            bad = n % broken_every == broken_every - 1
            broken += bad
            writer.writerows([
                {**CUSTOMER, "external_id": customer_id, "email": f"c{n}@example.com"},
                {"record_type": "contact", "customer_external_id": customer_id, "first_name": f"First{n}"},
                invoice(invoice_id, customer_external_id=customer_id),
                line_item(invoice_id, amount_in_cents="49.99" if bad else "4999", subscription_external_id=f"sub_{n}"),
                line_item(invoice_id, type="one_time", amount_in_cents="1000", subscription_external_id="",
                          plan_external_id="", service_period_start="", service_period_end=""),
                payment(invoice_id, amount_in_cents="5999"),
            ])
            written += 6
    return written, broken


@pytest.fixture()
def uow(tmp_path):
    return unit_of_work(Base, bookkeeping, tmp_path)


@pytest.fixture()
def billing():
    fake = FakeBilling(BillingModel()).start()
    yield fake
    fake.stop()


@pytest.fixture()
def ports():
    queued = []
    return sync.Ports(customers=FakeCustomers(), contacts=FakeContacts(), enqueue=queued.append), queued


def drain(uow, ports_and_queue, first: dict) -> None:
    """Run the first job and every job it queues, in order (what the workers do)."""
    ports, queued = ports_and_queue
    queued.append({"job_id": first["id"]})
    while queued:
        sync.run_job(uow, queued.pop(0), {"redelivered": False, "attempt": 1}, ports)


def test_a_source_sync_imports_customers_plans_invoices_and_is_idempotent(uow, billing, ports):
    model = billing.model
    gold, platinum = model.add_price("Gold", 5000), model.add_price("Platinum", 9000)
    ada = model.add_customer("Ada Lovelace", "ada@example.com", shipping_name="Ada's Office")
    sub = model.subscribe(ada, gold, start=unix(2024, 1, 1), periods=3)
    model.refund(model.invoices[model.subscriptions[sub]["_invoices"][0]]["charge"])
    source = commands.create_data_source(uow, {"name": "S", "system": "Stripe",
                                               "connection": {"base_url": billing.url, "api_key": DEFAULT_API_KEY}})
    drain(uow, ports, sync_jobs.request_source_sync(uow, source["uuid"]))
    customers, contacts = ports[0].customers, ports[0].contacts
    record = customers.records[(source["uuid"], ada)]
    assert record["billing_system_type"] == "Stripe" and len(contacts.contacts) == 2
    invoices = commands.list_invoices(uow, {"customer_uuid": record["uuid"]})["invoices"]
    assert len(invoices) == 3
    movements = recorded_fields(uow, "mrr_movement_recorded")
    transactions = recorded_fields(uow, "transaction_recorded")
    assert [m["movement"]["type"] for m in movements] == ["new_biz"] and len(transactions) == 4

    model.change_plan(sub, platinum)
    model.cancel(sub)
    model.refund(model.invoices[model.subscriptions[sub]["_invoices"][1]]["charge"])
    job = sync_jobs.request_customer_resync(uow, {**record, "data_source_uuid": source["uuid"], "external_id": ada})
    drain(uow, ports, job)
    done = sync_jobs.get_job(uow, job["id"])
    assert done["state"] == "succeeded" and done["counts"]["failed"] == 0, done
    assert len(commands.list_invoices(uow, {"customer_uuid": record["uuid"]})["invoices"]) == 4
    types = [m["movement"]["type"] for m in recorded_fields(uow, "mrr_movement_recorded")]
    assert types == ["new_biz", "expansion", "churn"]
    assert len(recorded_fields(uow, "transaction_recorded")) == 4 + 1 + 1  # the upgrade's payment, the refund

    before = len(recorded_fields(uow))
    drain(uow, ports, sync_jobs.request_source_sync(uow, source["uuid"]))
    after = recorded_fields(uow)
    assert [event for event in after[before:] if "job_id" not in event] == []  # only sync_job_finished
    assert len(commands.list_invoices(uow, {"customer_uuid": record["uuid"]})["invoices"]) == 4


def test_a_refused_customer_fails_its_job_and_the_parent_lists_it(uow, billing, ports):
    model = billing.model
    bad = model.add_customer("Refused", "refused@example.com")
    good = model.add_customer("Fine", "fine@example.com")
    source = commands.create_data_source(uow, {"name": "S", "system": "Stripe",
                                               "connection": {"base_url": billing.url, "api_key": DEFAULT_API_KEY}})
    parent = sync_jobs.request_source_sync(uow, source["uuid"])
    drain(uow, ports, parent)
    shown = sync_jobs.get_job(uow, parent["id"])
    assert shown["state"] == "succeeded" and shown["counts"] == {"processed": 1, "failed": 1, "total": 2}
    assert shown["errors"][0]["object_id"] == bad and "refused" in shown["errors"][0]["message"]
    assert (source["uuid"], good) in ports[0].customers.records


def test_an_unreachable_billing_system_fails_the_job_with_the_reason(uow, billing, ports):
    source = commands.create_data_source(uow, {"name": "S", "system": "Stripe",
                                               "connection": {"base_url": billing.url, "api_key": "sk_wrong"}})
    job = sync_jobs.request_source_sync(uow, source["uuid"])
    drain(uow, ports, job)
    shown = sync_jobs.get_job(uow, job["id"])
    assert shown["state"] == "failed" and "billing system refused: HTTP 401" in shown["reason"]
    assert "sk_wrong" not in repr(shown)


def test_a_source_whose_host_was_taken_off_the_allowed_list_is_not_called(uow, billing, ports, monkeypatch):
    source = commands.create_data_source(uow, {"name": "S", "system": "Stripe",
                                               "connection": {"base_url": billing.url, "api_key": DEFAULT_API_KEY}})
    monkeypatch.setenv("CONNECTOR_ALLOWED_HOSTS", "api.stripe.com")
    called = []
    ports = (dataclasses.replace(ports[0], client_factory=lambda *args: called.append(args)), ports[1])
    job = sync_jobs.request_source_sync(uow, source["uuid"])
    drain(uow, ports, job)
    shown = sync_jobs.get_job(uow, job["id"])
    assert shown["state"] == "failed" and "is not one this platform may call" in shown["reason"]
    assert called == []


def test_a_source_sync_cancelled_while_it_lists_stops_and_its_queued_customers_never_run(uow, billing, ports,
                                                                                         monkeypatch):
    for name in ("Ada", "Bob", "Cy"):
        billing.model.add_customer(name, f"{name.lower()}@example.com")
    source = commands.create_data_source(uow, {"name": "S", "system": "Stripe",
                                               "connection": {"base_url": billing.url, "api_key": DEFAULT_API_KEY}})
    job = sync_jobs.request_source_sync(uow, source["uuid"])
    monkeypatch.setattr(sync, "CHILD_BATCH", 1)  # a transaction per customer listed
    queued = []

    def enqueue(message):  # the user cancels as soon as the first customer is queued
        queued.append(message)
        if len(queued) == 1:
            sync_jobs.cancel(uow, job["id"])

    ports = (dataclasses.replace(ports[0], enqueue=enqueue), queued)
    assert sync.run_job(uow, {"job_id": job["id"]}, {"redelivered": False, "attempt": 1}, ports[0]) == "cancelled"
    assert len(queued) == 1  # the listing stopped at its next batch
    assert sync.run_job(uow, queued[0], {"redelivered": False, "attempt": 1}, ports[0]) is None  # never claimed
    assert ports[0].customers.calls == 0
    assert sync_jobs.get_job(uow, queued[0]["job_id"])["state"] == "cancelled"


def test_a_csv_file_imports_good_rows_and_reports_bad_ones_by_line(uow, ports, tmp_path, monkeypatch):
    monkeypatch.setattr(csv_sync, "CHECKPOINT_ROWS", 500)
    path = tmp_path / "upload.csv"
    rows, broken = write_file(path, 600, broken_every=120)
    source = commands.create_data_source(uow, {"name": "CSV"})
    job = sync_jobs.request_csv_import(uow, source["uuid"], str(path))
    drain(uow, ports, job)
    shown = sync_jobs.get_job(uow, job["id"])
    customers = (rows - 1) // 6
    assert shown["state"] == "succeeded", shown
    assert shown["counts"]["total"] == rows
    assert shown["counts"]["failed"] == 2 * broken == 10, shown["errors"][:3]  # a bad line item row, and its invoice
    first = shown["errors"][0]
    assert first["object_id"].startswith("line ") and first["field"] == "amount_in_cents"
    assert len(ports[0].customers.records) == customers and len(ports[0].contacts.contacts) == customers
    imported = commands.list_invoices(uow, {"data_source_uuid": source["uuid"]}, per_page=200)
    assert imported["has_more"] and imported["invoices"][0]["customer_uuid"]
    # Counted in rows: a bad invoice's 4 rows count as its 2 errors.
    assert shown["counts"]["processed"] + shown["counts"]["failed"] == rows - 2 * broken

    assert not path.exists()  # the upload is removed once imported

    # The same file again (or a resumed job) imports nothing twice.
    write_file(path, 600, broken_every=120)
    before = len(recorded_fields(uow, "invoice_imported"))
    drain(uow, ports, sync_jobs.request_csv_import(uow, source["uuid"], str(path)))
    assert len(recorded_fields(uow, "invoice_imported")) == before


def test_a_resumed_csv_job_carries_on_after_its_last_checkpoint(uow, ports, tmp_path, monkeypatch):
    monkeypatch.setattr(csv_sync, "CHECKPOINT_ROWS", 10)
    path = tmp_path / "upload.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["record_type", "external_id", "name", "email"])
        for n in range(40):
            writer.writerow(["customer", f"c{n}", f"Name {n}", f"c{n}@example.com"])
    source = commands.create_data_source(uow, {"name": "CSV"})
    job = sync_jobs.request_csv_import(uow, source["uuid"], str(path))
    ticket = sync_jobs.claim(uow, job["id"], taking_over=False)
    sync_jobs.report(uow, job["id"], processed=20, cursor="21")  # as a worker that died after line 21 would
    customers = ports[0].customers
    sync.run_job(uow, {"job_id": job["id"]}, {"redelivered": True, "attempt": 1}, ports[0])
    shown = sync_jobs.get_job(uow, job["id"])
    assert ticket is not None and shown["state"] == "succeeded" and shown["counts"]["processed"] == 40
    assert customers.calls == 20  # lines 22..41 only


def test_a_csv_with_a_broken_header_fails_naming_the_column(uow, ports, tmp_path):
    path = tmp_path / "upload.csv"
    path.write_text("record_type,colour\ncustomer,red\n")
    source = commands.create_data_source(uow, {"name": "CSV"})
    job = sync_jobs.request_csv_import(uow, source["uuid"], str(path))
    drain(uow, ports, job)
    shown = sync_jobs.get_job(uow, job["id"])
    assert shown["state"] == "failed" and "colour" in shown["reason"]
