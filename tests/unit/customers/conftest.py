"""The customers service on a fresh SQLite database, with the fake billing service of fakes.py."""
import pytest
from nameko.testing.services import worker_factory

from roster.testing import unit_of_work
from services.customers.models import UNIQUE_RULES, Base, bookkeeping
from services.customers.service import CustomersService
from tests.unit.customers.fakes import FakeBilling


@pytest.fixture()
def service(tmp_path):
    return worker_factory(CustomersService, uow=unit_of_work(Base, bookkeeping, tmp_path, unique_rules=UNIQUE_RULES),
                          billing_rpc=FakeBilling())
