"""The billing_sync service: data sources, plans, invoices, transactions, subscriptions, MRR
movements and metrics; the nameko entrypoints, each one line into the service layer."""
from nameko.timer import timer

from roster.dependencies import UnitOfWorkProvider, service_health
from roster.handlers import event_handler
from roster.errors import ServiceUnavailable
from roster.rpc import BoundedRpcProxy, rpc
from roster.work_queue import WorkQueuePublisher
from services.billing_sync import commands, sync_jobs
from services.billing_sync.models import UNIQUE_RULES, Base, bookkeeping
from services.billing_sync.settings import SYNC_QUEUE, review_interval


class BillingSyncService:
    name = "billing_sync"

    uow = UnitOfWorkProvider(Base, bookkeeping, unique_rules=UNIQUE_RULES)
    customers_rpc = BoundedRpcProxy("customers")
    enqueue_job = WorkQueuePublisher(SYNC_QUEUE)

    @rpc
    def health(self):
        return service_health(self.name, self.uow)

    # ---- data sources ----

    @rpc
    def create_data_source(self, data: dict) -> dict:
        return commands.create_data_source(self.uow, data)

    @rpc
    def list_data_sources(self, filters: dict) -> list[dict]:
        return commands.list_data_sources(self.uow, filters)

    @rpc
    def get_data_source(self, uuid: str, options: dict | None = None) -> dict:
        return commands.get_data_source(self.uow, uuid, options)

    @rpc
    def delete_data_source(self, uuid: str) -> None:
        return commands.delete_data_source(self.uow, uuid)

    # ---- sync jobs (run by the sync_worker processes, services/billing_sync/worker.py) ----

    @rpc
    def request_source_sync(self, data_source_uuid: str) -> dict:
        return self._queued(sync_jobs.request_source_sync(self.uow, data_source_uuid))

    @rpc
    def request_customer_resync(self, customer_uuid: str) -> dict:
        customer = self.customers_rpc.get_customer(customer_uuid)  # 404 when there is no such customer
        return self._queued(sync_jobs.request_customer_resync(self.uow, customer))

    @rpc
    def request_csv_import(self, data_source_uuid: str, file_path: str) -> dict:
        return self._queued(sync_jobs.request_csv_import(self.uow, data_source_uuid, file_path))

    @rpc
    def get_sync_job(self, job_id: str) -> dict:
        return sync_jobs.get_job(self.uow, job_id)

    @rpc
    def cancel_sync_job(self, job_id: str) -> dict:
        return sync_jobs.cancel(self.uow, job_id)

    @rpc
    def sync_job_stats(self) -> dict:
        return sync_jobs.job_stats(self.uow)

    def _queued(self, job: dict) -> dict:
        """Put a committed job on the work queue; a job the broker did not take is failed, and a 503."""
        try:
            self.enqueue_job({"job_id": job["id"]})
        except Exception as exc:
            sync_jobs.fail_unqueued(self.uow, job["id"], f"{type(exc).__name__}: {exc}")
            raise ServiceUnavailable("The sync job could not be queued; try again")
        return job

    # ---- plans ----

    @rpc
    def create_plan(self, data: dict) -> dict:
        return commands.create_plan(self.uow, data)

    @rpc
    def list_plans(self, filters: dict, cursor: str | None = None, per_page=None) -> dict:
        return commands.list_plans(self.uow, filters, cursor, per_page)

    @rpc
    def get_plan(self, uuid: str) -> dict:
        return commands.get_plan(self.uow, uuid)

    @rpc
    def update_plan(self, uuid: str, changes: dict) -> dict:
        return commands.update_plan(self.uow, uuid, changes)

    @rpc
    def delete_plan(self, uuid: str) -> None:
        return commands.delete_plan(self.uow, uuid)

    # ---- invoices and transactions ----

    @rpc
    def import_invoices(self, customer_uuid: str, invoices: list) -> dict:
        return commands.import_invoices(self.uow, customer_uuid, invoices, customers=self.customers_rpc)

    @rpc
    def list_invoices(self, filters: dict, cursor: str | None = None, per_page=None) -> dict:
        return commands.list_invoices(self.uow, filters, cursor, per_page, customers=self.customers_rpc)

    @rpc
    def get_invoice(self, uuid: str) -> dict:
        return commands.get_invoice(self.uow, uuid)

    @rpc
    def delete_invoice(self, uuid: str) -> None:
        return commands.delete_invoice(self.uow, uuid)

    @rpc
    def delete_customer_invoices(self, data_source_uuid: str, customer_uuid: str) -> None:
        return commands.delete_customer_invoices(self.uow, data_source_uuid, customer_uuid)

    @rpc
    def import_transaction(self, invoice_uuid: str, data: dict) -> dict:
        return commands.import_transaction(self.uow, invoice_uuid, data)

    # ---- subscriptions ----

    @rpc
    def list_subscriptions(self, customer_uuid: str, cursor: str | None = None, per_page=None) -> dict:
        return commands.list_subscriptions(self.uow, customer_uuid, cursor, per_page, customers=self.customers_rpc)

    @rpc
    def list_imported_subscriptions(self, customer_uuid: str, cursor: str | None = None, per_page=None) -> dict:
        return commands.list_imported_subscriptions(self.uow, customer_uuid, cursor, per_page,
                                                    customers=self.customers_rpc)

    @rpc
    def cancel_subscription(self, uuid: str, data: dict) -> dict:
        return commands.cancel_subscription(self.uow, uuid, data)

    @rpc
    def connect_subscriptions(self, customer_uuid: str, data: dict) -> None:
        return commands.connect_subscriptions(self.uow, customer_uuid, data, connect=True)

    @rpc
    def disconnect_subscriptions(self, customer_uuid: str, data: dict) -> None:
        return commands.connect_subscriptions(self.uow, customer_uuid, data, connect=False)

    # ---- currencies, revenue, metrics ----

    @rpc
    def put_exchange_rates(self, currency: str, rates: list) -> dict:
        return commands.put_exchange_rates(self.uow, currency, rates)

    @rpc
    def get_exchange_rates(self, currency: str) -> dict:
        return commands.get_exchange_rates(self.uow, currency)

    @rpc
    def revenue_schedule(self, customer_uuid: str) -> dict:
        return commands.revenue_schedule(self.uow, customer_uuid, customers=self.customers_rpc)

    @rpc
    def metrics(self, metric: str, query: dict) -> dict:
        return commands.metrics(self.uow, metric, query)

    @rpc
    def customer_metrics(self, customer_uuid: str) -> dict:
        return commands.customer_metrics(self.uow, customer_uuid)

    # ---- time and other services' events ----

    @timer(interval=review_interval())
    def review_customers(self):
        commands.review_customers(self.uow)

    @event_handler("customers", "customer_deleted")
    def handle_customer_deleted(self, payload):
        commands.on_customer_deleted(self.uow, payload)

    @event_handler("customers", "customer_merged")
    def handle_customer_merged(self, payload):
        commands.on_customer_merged(self.uow, payload)

    @event_handler("customers", "customer_unmerged")
    def handle_customer_unmerged(self, payload):
        commands.on_customer_unmerged(self.uow, payload)
