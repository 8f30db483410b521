"""A CSV import job on a 100,000-row file: rows/s and memory, the service layer alone.

    .venv/bin/python bench/csv_import_job.py [--rows 100000]
    DATABASE_URL=postgresql://... is not used: this runs on a scratch SQLite file.

Writes a file of customers, contacts and invoices (2 line items and a payment each; one invoice
in 1,000 with a bad line item), then runs the csv_import job the way a sync worker does
(`services/billing_sync/csv_sync.py`) on a scratch database, with in-process stand-ins for the
customers and contacts services (so the figure is billing_sync's own cost). Prints rows/s, the
job's counts and errors, the progress lines, and how much the process's memory grew (it must stay
flat: the file is read a row at a time).
"""
import argparse
import csv
import itertools
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roster.testing import unit_of_work  # noqa: E402
from services.billing_sync import commands, sync, sync_jobs  # noqa: E402
from services.billing_sync.connectors.csv_import import COLUMNS  # noqa: E402
from services.billing_sync.models import Base, bookkeeping  # noqa: E402


class Customers:
    """The customers service's sync, without its memory: a customer's uuid follows from its id."""

    def sync_customer(self, data):
        return {"uuid": f"cus_{data['external_id']}", "data_source_uuid": data["data_source_uuid"],
                "external_id": data["external_id"]}

    def find_customer(self, source, external_id):
        return {"uuid": f"cus_{external_id}", "data_source_uuid": source, "external_id": external_id}


class Contacts:
    def sync_contacts(self, customer_uuid, source, contacts):
        return contacts


def write_file(path: Path, rows: int) -> int:
    written = 1
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerow({"record_type": "plan", "external_id": "gold", "name": "Gold", "interval_count": "1",
                         "interval_unit": "month"})
        for n in itertools.count():
            if written + 6 > rows:
                return written
            customer, invoice = f"cus_{n}", f"inv_{n}"
            writer.writerows([
                {"record_type": "customer", "external_id": customer, "name": f"Customer {n}",
                 "email": f"c{n}@example.com"},
                {"record_type": "contact", "customer_external_id": customer, "first_name": f"First{n}",
                 "email": f"c{n}@example.com"},
                {"record_type": "invoice", "external_id": invoice, "customer_external_id": customer,
                 "date": "2024-01-01", "currency": "USD"},
                {"record_type": "line_item", "invoice_external_id": invoice, "type": "subscription",
                 "amount_in_cents": "49.99" if n % 1000 == 999 else "4999", "subscription_external_id": f"sub_{n}",
                 "plan_external_id": "gold", "service_period_start": "2024-01-01", "service_period_end": "2024-02-01"},
                {"record_type": "line_item", "invoice_external_id": invoice, "type": "one_time",
                 "amount_in_cents": "1000"},
                {"record_type": "transaction", "invoice_external_id": invoice, "type": "payment",
                 "result": "successful", "date": "2024-01-01", "amount_in_cents": "5999", "external_id": f"pay_{n}"},
            ])
            written += 6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    logging.getLogger("services.billing_sync.ledger").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload.csv"
        rows = write_file(path, args.rows)
        uow = unit_of_work(Base, bookkeeping, Path(folder))
        source = commands.create_data_source(uow, {"name": "CSV"})
        job = sync_jobs.request_csv_import(uow, source["uuid"], str(path))
        ports = sync.Ports(customers=Customers(), contacts=Contacts(), enqueue=lambda message: None)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        sync.run_job(uow, {"job_id": job["id"]}, {"redelivered": False, "attempt": 1}, ports)
        elapsed = time.perf_counter() - started
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        done = sync_jobs.get_job(uow, job["id"])
        print(f"{rows:,} rows ({path.stat().st_size / 1e6:.1f} MB) in {elapsed:.1f} s = {rows / elapsed:,.0f} rows/s; "
              f"state {done['state']}, counts {done['counts']}, {len(done['errors'])} errors listed "
              f"(first: {done['errors'][0] if done['errors'] else None})")
        print(f"peak RSS grew by {(rss_after - rss_before) / 1024:.1f} MB during the job "
              f"(file {path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
