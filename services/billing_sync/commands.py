"""The billing_sync service layer: one function per command or query, no nameko.

Each takes a `roster.uow.UnitOfWork`; the RPC entrypoints and the sync workers call these
same functions.
"""
import uuid as uuid_lib

from roster.uow import UnitOfWork
from services.billing_sync import domain, store
from services.billing_sync.models import DataSource
from services.billing_sync.schemas import dump_data_source


def create_data_source(uow: UnitOfWork, data: dict) -> dict:
    """Create an Import API data source; return it."""
    name = domain.clean_name(data.get("name"))
    with uow.write() as tx:
        source = DataSource(uuid=f"ds_{uuid_lib.uuid4()}", name=name, system=domain.IMPORT_API, status="idle")
        tx.session.add(source)
        tx.session.flush()
        created = dump_data_source(source)
        tx.record("data_source_created", data_source=created)
        return tx.result(created)


def list_data_sources(uow: UnitOfWork, filters: dict) -> list[dict]:
    """Return every data source matching `name` and `system` (when given), oldest first."""
    with uow.read() as session:
        found = store.data_sources(session, name=filters.get("name"), system=filters.get("system"))
        return [dump_data_source(source) for source in found]


def get_data_source(uow: UnitOfWork, uuid: str) -> dict:
    """Return one data source; 404 if there is none."""
    with uow.read() as session:
        return dump_data_source(store.data_source(session, uuid))


def delete_data_source(uow: UnitOfWork, uuid: str) -> None:
    """Delete a data source; `data_source_deleted` tells the services holding its records."""
    with uow.write() as tx:
        source = store.data_source(tx.session, uuid)
        tx.session.delete(source)
        tx.record("data_source_deleted", uuid=uuid, name=source.name, system=source.system)
