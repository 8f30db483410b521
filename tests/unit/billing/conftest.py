"""The billing_sync service on a fresh SQLite database, with a hand-written fake for the customers
service, a data source, a monthly plan and two customers the fake knows."""
import pytest
from nameko.testing.services import worker_factory

from roster.errors import NotFound
from roster.testing import unit_of_work
from services.billing_sync.models import Base, bookkeeping
from services.billing_sync.service import BillingSyncService


class FakeCustomers:
    """The customers service as billing sees it: `get_customer` of the customers it was told of."""

    def __init__(self):
        self.known = {}
        self.asked = []

    def add(self, uuid, data_source_uuid, external_id=None):
        self.known[uuid] = {"uuid": uuid, "external_id": external_id or f"ext-{uuid}",
                            "data_source_uuid": data_source_uuid}

    def get_customer(self, uuid):
        self.asked.append(uuid)
        if uuid not in self.known:
            raise NotFound(f"Customer {uuid} not found", param="uuid")
        return self.known[uuid]


@pytest.fixture()
def customers():
    return FakeCustomers()


@pytest.fixture()
def service(tmp_path, customers):
    return worker_factory(BillingSyncService, uow=unit_of_work(Base, bookkeeping, tmp_path), customers_rpc=customers)


@pytest.fixture()
def source(service):
    return service.create_data_source({"name": "Imports"})["uuid"]


@pytest.fixture()
def plan(service, source):
    return service.create_plan({"data_source_uuid": source, "name": "Silver Monthly", "interval_count": 1,
                                "interval_unit": "month", "external_id": "silver"})["uuid"]


@pytest.fixture()
def cus(customers, source):
    customers.add("cus_1", source)
    customers.add("cus_2", source)
    return "cus_1"
