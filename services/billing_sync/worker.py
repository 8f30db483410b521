"""billing_sync's sync worker: a process that runs sync jobs from the durable work queue.

    nameko run --config config.yaml services.billing_sync.worker

Separate from the billing_sync RPC service so that ops scale it alone: `make run` starts
SYNC_WORKERS of them, docker-compose `--scale sync_worker=N`. Each takes one job at a time
and acknowledges it when done (`roster.work_queue`), so a worker killed mid-job loses nothing:
the job goes to another worker and resumes. It works on billing_sync's own database and
publishes billing_sync's events (`UnitOfWorkProvider(service="billing_sync")`).
"""
from roster.dependencies import UnitOfWorkProvider, service_health
from roster.rpc import BoundedRpcProxy, rpc
from roster.work_queue import WorkQueuePublisher, work_queue
from services.billing_sync import sync
from services.billing_sync.models import UNIQUE_RULES, Base, bookkeeping
from services.billing_sync.settings import SYNC_QUEUE, sync_max_attempts, sync_rpc_timeout

MAX_ATTEMPTS = sync_max_attempts()


class SyncWorkerService:
    name = "sync_worker"

    uow = UnitOfWorkProvider(Base, bookkeeping, unique_rules=UNIQUE_RULES, service="billing_sync")
    customers_rpc = BoundedRpcProxy("customers", timeout=sync_rpc_timeout())
    contacts_rpc = BoundedRpcProxy("contacts", timeout=sync_rpc_timeout())
    enqueue_job = WorkQueuePublisher(SYNC_QUEUE)

    @rpc
    def health(self):
        return service_health(self.name, self.uow)

    @work_queue(SYNC_QUEUE, max_attempts=MAX_ATTEMPTS)
    def run_job(self, message: dict, delivery: dict):
        ports = sync.Ports(customers=self.customers_rpc, contacts=self.contacts_rpc, enqueue=self.enqueue_job)
        return sync.run_job(self.uow, message, delivery, ports,
                            final_attempt=delivery.get("attempt", 1) >= MAX_ATTEMPTS)
