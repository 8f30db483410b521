"""Invoice import benchmark: invoices/second end to end, through the gateway, until every
customer's MRR is visible.

    .venv/bin/python bench/import.py                      (SQLite)
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python bench/import.py

Starts the whole platform in a throwaway vhost and data folder, creates 1,000 customers
(not timed), then imports 10,000 invoices (2 subscription lines each, a base plan and an
add-on, and a payment) through `POST /v1/import/customers/{uuid}/invoices`, as clients
batch them: one customer per request, its invoices together, at most 100 per request
(`--per-request`, default 10: each customer's whole history in one request, as an importer
sends it). With fewer per request, invoices go in rounds in date order, so the later rounds
land on customers that already have a history. The rate for the first and the last 1,000
invoices shows whether one more invoice costs more as the tables grow (it should not);
`--history-probe` shows it for one customer's history.

"Visible": after a customer's last request, the client reads `GET /v1/customers/{uuid}`
until its `mrr` is the expected one (the customers service's projection of
`customer_metrics_changed`); with `--visible-through billing-rpc`, billing's own
`customer_metrics` RPC instead (what that projection is fed from). The end-to-end clock stops when every
customer is visible; the first/last 1,000 rates count import answers only. It also prints
the CPU each process used per invoice, what the platform counted (workers, events handled, RPCs,
gateway cache reads: a batch handler's events per worker is how well it batched), and times
`GET /v1/metrics/mrr` over 24 months by month.

`--history-probe` instead times the service layer alone: one more invoice for customers that
already have 1 to 60, with the number of SQL statements each costs.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from queue import Empty, Queue

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import requests  # noqa: E402

from bench.common import (METRICS_PORT, counters_report, cpu_seconds, host_speed, metrics_urls,  # noqa: E402
                          process_cpu, read_counters)
from tools.isolation import create_vhost, delete_vhost, drop_schemas, is_postgres, schema_prefix  # noqa: E402
from tools.stack import DEFAULT_AMQP_URI, Stack, StackError, ensure_rabbitmq, free_port  # noqa: E402

API_KEY = "bench-owner-key"
BASE_AMOUNT, ADDON_AMOUNT = 4900, 1000


def month_start(index: int) -> str:
    """Return the first day of the month `index` months after January 2020, ISO-8601."""
    year, month = divmod(index, 12)
    return f"{2020 + year}-{month + 1:02d}-01T00:00:00Z"


def invoice(customer: int, month: int, plans: tuple[str, str]) -> dict:
    """Return customer `customer`'s invoice for month `month`: base plan + add-on, paid."""
    start, end = month_start(month), month_start(month + 1)
    grow = customer % 7 * 100 * month  # customers grow at different paces: expansions as well as renewals
    lines = [
        {"type": "subscription", "subscription_external_id": f"base-{customer}", "plan_uuid": plans[0],
         "service_period_start": start, "service_period_end": end, "amount_in_cents": BASE_AMOUNT + grow,
         "external_id": f"base-{customer}-{month}", "quantity": 1},
        {"type": "subscription", "subscription_external_id": f"addon-{customer}", "plan_uuid": plans[1],
         "service_period_start": start, "service_period_end": end, "amount_in_cents": ADDON_AMOUNT,
         "external_id": f"addon-{customer}-{month}", "tax_amount_in_cents": 100},
    ]
    return {"external_id": f"inv-{customer}-{month}", "date": start, "due_date": start, "currency": "USD",
            "line_items": lines,
            "transactions": [{"date": start, "type": "payment", "result": "successful",
                              "external_id": f"pay-{customer}-{month}"}]}


def expected_mrr(customer: int, months: int) -> int:
    """Return the MRR the customer has after its last invoice."""
    return BASE_AMOUNT + customer % 7 * 100 * (months - 1) + ADDON_AMOUNT - 100


class Bench:
    def __init__(self, args):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="roster-bench-import-"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.schema_prefix = schema_prefix()
        self.stack = None
        self.vhost = None
        self.amqp_uri = None
        self.completions: list[tuple[float, int]] = []  # (time a request finished, invoices in it)
        self.lock = threading.Lock()
        self.failures: list[str] = []

    def run(self) -> None:
        self.host = host_speed()  # before the platform starts, so nothing else competes for the CPU
        base_uri = os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI
        ensure_rabbitmq(base_uri)
        self.vhost, self.amqp_uri = create_vhost(base_uri, prefix="roster_bench")
        try:
            env = {**os.environ, "AMQP_URI": self.amqp_uri, "DATA_DIR": str(self.workdir / "data"),
                   "GATEWAY_PORT": str(self.port), "GATEWAY_HOST": "127.0.0.1", "API_KEYS": f"{API_KEY}:owner",
                   "LOG_LEVEL": "WARNING", "DATABASE_SCHEMA_PREFIX": self.schema_prefix,
                   "METRICS_PORT": str(METRICS_PORT)}
            self.stack = Stack(env, ROOT, self.workdir / "logs")
            self.stack.start()
            self.stack.wait_ready(timeout=90)
            self.scenario()
        finally:
            if self.stack:
                self.stack.stop()
            delete_vhost(self.vhost)
            shutil.rmtree(self.workdir, ignore_errors=True)
            if is_postgres(os.environ.get("DATABASE_URL")):
                drop_schemas(os.environ["DATABASE_URL"], self.schema_prefix)

    def session(self) -> requests.Session:
        session = requests.Session()
        session.auth = (API_KEY, "")
        session.headers["Content-Type"] = "application/json"
        return session

    def scenario(self) -> None:
        args = self.args
        http = self.session()
        source = http.post(f"{self.base}/v1/data_sources", json={"name": "Bench"}).json()["uuid"]
        plans = tuple(http.post(f"{self.base}/v1/plans", json={
            "data_source_uuid": source, "name": name, "interval_count": 1, "interval_unit": "month"}).json()["uuid"]
            for name in ("Base Monthly", "Add-on Monthly"))
        print(f"bench: creating {args.customers:,} customers (not timed)", flush=True)
        customers = self.create_customers(source)
        months = args.invoices // args.customers
        per_request = min(args.per_request, 100)
        rounds = [list(range(first, min(first + per_request, months))) for first in range(0, months, per_request)]
        work: Queue = Queue()
        for round_months in rounds:
            for index, uuid in enumerate(customers):
                work.put((index, uuid, round_months, round_months[-1] == months - 1))
        total = args.customers * months
        print(f"bench: {self.host}", flush=True)
        print(f"bench: importing {total:,} invoices ({months} per customer, {per_request} per request, "
              f"{args.concurrency} clients, database {'PostgreSQL' if is_postgres(os.environ.get('DATABASE_URL')) else 'SQLite'})",
              flush=True)
        counters_before = read_counters(metrics_urls(self.stack, self.base))
        cpu_before = self.cpu_seconds()
        start = time.monotonic()
        threads = [threading.Thread(target=self.client, args=(work, plans, months, start)) for _ in
                   range(args.concurrency)]
        for thread in threads:
            thread.start()
        monitor = threading.Thread(target=self.watch_billing, args=(threads,), daemon=True)
        monitor.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - start
        monitor.join()
        if self.failures:
            print(f"bench: {len(self.failures)} failures, e.g. {self.failures[:3]}", file=sys.stderr)
        cpu_after = self.cpu_seconds()
        self.report(total, elapsed)
        self.report_cpu(cpu_before, cpu_after, total)
        counted = counters_report(counters_before, read_counters(metrics_urls(self.stack, self.base)))
        print("\n  What the platform counted (a batch worker's events: events handled / its workers)")
        print("\n".join(counted))
        self.time_metrics(http)

    def cpu_seconds(self) -> dict[str, float]:
        """Return CPU seconds used so far by each platform process, the broker, the database and this client."""
        found = cpu_seconds(self.stack)
        times = os.times()
        found["bench client"] = times.user + times.system
        return found

    def report_cpu(self, before: dict, after: dict, total: int) -> None:
        print("\n  CPU during the import (2 cores shared with everything else on the machine)")
        for name in after:
            used = after[name] - before.get(name, 0.0)
            if used > 0.05:
                print(f"    {name:<28} {used:>7.1f} s   {used / total * 1000:>6.2f} ms per invoice")

    def create_customers(self, source: str) -> list[str]:
        uuids: list[str | None] = [None] * self.args.customers
        work: Queue = Queue()
        for index in range(self.args.customers):
            work.put(index)

        def create():
            http = self.session()
            while True:
                try:
                    index = work.get_nowait()
                except Empty:
                    return
                answer = http.post(f"{self.base}/v1/customers", json={
                    "data_source_uuid": source, "external_id": f"bench-{index}", "name": f"Bench {index}"})
                answer.raise_for_status()
                uuids[index] = answer.json()["uuid"]

        threads = [threading.Thread(target=create) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return uuids

    def client(self, work: Queue, plans, months: int, start: float) -> None:
        http = self.session()
        visible = self.visibility_check(http)
        while True:
            try:
                index, uuid, round_months, last = work.get_nowait()
            except Empty:
                return
            body = orjson.dumps({"invoices": [invoice(index, month, plans) for month in round_months]})
            answer = http.post(f"{self.base}/v1/import/customers/{uuid}/invoices", data=body)
            if answer.status_code != 201:
                self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                continue
            with self.lock:
                self.completions.append((time.monotonic() - start, len(round_months)))
            if last:
                wanted = expected_mrr(index, months)
                deadline = time.monotonic() + 30
                while visible(uuid) != wanted and time.monotonic() < deadline:
                    time.sleep(0.05)
                if visible(uuid) != wanted:
                    self.failures.append(f"{uuid}: MRR {visible(uuid)} is not {wanted}")

    def visibility_check(self, http):
        if self.args.visible_through == "customer-record":
            return lambda uuid: http.get(f"{self.base}/v1/customers/{uuid}").json().get("mrr")
        from nameko.standalone.rpc import ClusterRpcProxy
        proxy = ClusterRpcProxy({"AMQP_URI": self.amqp_uri}, timeout=10).start()
        return lambda uuid: proxy.billing_sync.customer_metrics(uuid)["mrr"]

    def watch_billing(self, clients) -> None:
        """Sample (invoices answered, billing's CPU seconds) while the clients run."""
        pids = [proc.popen.pid for proc in self.stack.processes["billing_sync"]]
        self.billing_samples = []
        while any(client.is_alive() for client in clients):
            with self.lock:
                answered = sum(count for _, count in self.completions)
            self.billing_samples.append((answered, sum(process_cpu(pid) for pid in pids)))
            time.sleep(0.2)

    def billing_cpu_per_invoice(self, first: int, last: int) -> float | None:
        """Return billing's CPU milliseconds per invoice while answers went from `first` to `last`."""
        inside = [(count, cpu) for count, cpu in self.billing_samples if first <= count <= last]
        if len(inside) < 2 or inside[-1][0] == inside[0][0]:
            return None
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]) * 1000

    def report(self, total: int, elapsed: float) -> None:
        done = sorted(self.completions)
        counted, first_at, last_from = 0, None, None
        for at, count in done:
            counted += count
            if first_at is None and counted >= 1000:
                first_at = at
            if last_from is None and counted >= total - 1000:
                last_from = at
        print(f"\n  invoices imported              {counted:>10,}")
        print(f"  end to end (until visible)     {elapsed:>10.1f} s   {counted / elapsed:>8.0f} invoices/s")
        if done:
            print(f"  imports alone (answers)        {done[-1][0]:>10.1f} s   {counted / done[-1][0]:>8.0f} invoices/s")
        windows = ((0, 1000), (total - 1000, total))
        cpu = [self.billing_cpu_per_invoice(low, high) for low, high in windows]
        cpu_text = [f"   billing CPU {value:.2f} ms/invoice" if value else "" for value in cpu]
        if first_at:
            print(f"  first 1,000 invoices           {first_at:>10.1f} s   {1000 / first_at:>8.0f} invoices/s"
                  f"{cpu_text[0]}")
        if last_from is not None and done:
            span = done[-1][0] - last_from
            print(f"  last 1,000 invoices            {span:>10.1f} s   {1000 / span if span else 0:>8.0f} invoices/s"
                  f"{cpu_text[1]}")
        print("  (the platform's consumers of billing's events start behind and catch up, so the first window"
              "\n   is faster on the wall clock; billing's own CPU per invoice shows what one more costs)")

    def time_metrics(self, http) -> None:
        timings = []
        for _ in range(20):
            began = time.monotonic()
            answer = http.get(f"{self.base}/v1/metrics/mrr",
                              params={"start-date": "2020-01-01", "end-date": "2021-12-31", "interval": "month"})
            timings.append((time.monotonic() - began) * 1000)
            answer.raise_for_status()
        print(f"  GET /v1/metrics/mrr, 24 months by month: median {statistics.median(timings):.1f} ms, "
              f"max {max(timings):.1f} ms (last MRR {answer.json()['entries'][-1]['mrr']:,})")


def probe_history(customers: int = 100, depth: int = 60) -> None:
    """Import one invoice per customer per round, `depth` rounds, straight through the service
    layer (no gateway, no broker): the time and the statements one more invoice costs, by how many
    the customer already has. Flat means the cost does not grow with the history."""
    from sqlalchemy import event
    from sqlalchemy.orm import sessionmaker

    from roster.database import make_engine
    from roster.uow import UnitOfWork
    from services.billing_sync import commands
    from services.billing_sync.models import Base, bookkeeping

    url = os.environ.get("DATABASE_URL") or f"sqlite:///{tempfile.mkdtemp(prefix='roster-probe-')}/billing.db"
    schema = f"{schema_prefix()}billing_probe"
    engine = make_engine(url, schema)
    Base.metadata.create_all(engine)
    uow = UnitOfWork(sessionmaker(engine, expire_on_commit=False), bookkeeping)
    source = commands.create_data_source(uow, {"name": "Probe"})["uuid"]
    plans = tuple(commands.create_plan(uow, {"data_source_uuid": source, "name": name, "interval_count": 1,
                                             "interval_unit": "month"})["uuid"] for name in ("Base", "Add-on"))

    class Customers:
        def get_customer(self, uuid):
            return {"uuid": uuid, "external_id": uuid, "data_source_uuid": source}

    statements = [0]
    event.listen(engine, "before_cursor_execute", lambda *args: statements.__setitem__(0, statements[0] + 1))
    print(f"\n  history probe ({'PostgreSQL' if is_postgres(url) else 'SQLite'}, service layer only, "
          f"{customers} customers, one invoice per request)")
    try:
        for month in range(depth):
            statements[0] = 0
            began = time.perf_counter()
            for index in range(customers):
                commands.import_invoices(uow, f"cus_{index}", [invoice(index, month, plans)], customers=Customers())
            spent = time.perf_counter() - began
            if month in (0, 1, 9, 19, 29, 39, 49, depth - 1):
                print(f"    invoice #{month + 1:<3} of each customer: {spent / customers * 1000:6.2f} ms, "
                      f"{statements[0] / customers:5.1f} statements per request")
    finally:
        Base.metadata.drop_all(engine)
        if is_postgres(url):
            with engine.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument("--per-request", type=int, default=10, help="invoices per request (at most 100)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--visible-through", choices=("customer-record", "billing-rpc"), default="customer-record",
                        help="where MRR must show: GET /v1/customers/{uuid} (default) or billing's RPC")
    parser.add_argument("--history-probe", action="store_true",
                        help="only time one more invoice by history depth, in the service layer")
    args = parser.parse_args()
    if args.history_probe:
        probe_history()
        return 0
    try:
        Bench(args).run()
    except StackError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
