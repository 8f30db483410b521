"""The billing_sync service: data sources now; invoices, subscriptions and MRR in later issues."""
import uuid as uuid_lib

from nameko.rpc import rpc
from sqlalchemy import select

from roster.database import Database
from roster.errors import NotFound, RosterError, ValidationFailed
from roster.events import Outbox
from services.billing_sync.models import Base, DataSource, OutboxRow
from services.billing_sync.schemas import data_source_schema

IMPORT_API = "Import API"


class BillingSyncService:
    name = "billing_sync"

    db = Database(Base)
    outbox = Outbox(OutboxRow, "db")

    @rpc(expected_exceptions=RosterError)
    def health(self):
        return {"service": self.name, "status": "ok"}

    @rpc(expected_exceptions=RosterError)
    def create_data_source(self, data: dict) -> dict:
        name = (data.get("name") or "").strip()
        if not name:
            raise ValidationFailed("name: must not be blank", param="name")
        with self.db.begin() as session:
            source = DataSource(uuid=f"ds_{uuid_lib.uuid4()}", name=name, system=IMPORT_API, status="idle")
            session.add(source)
            session.flush()
            created = data_source_schema.dump(source)
            self.outbox(session, "data_source_created", data_source=created)
        return created

    @rpc(expected_exceptions=RosterError)
    def list_data_sources(self, filters: dict) -> list[dict]:
        query = select(DataSource).order_by(DataSource.id)
        if filters.get("name"):
            query = query.where(DataSource.name == filters["name"])
        if filters.get("system"):
            query = query.where(DataSource.system == filters["system"])
        with self.db() as session:
            return data_source_schema.dump(session.scalars(query), many=True)

    @rpc(expected_exceptions=RosterError)
    def get_data_source(self, uuid: str) -> dict:
        with self.db() as session:
            return data_source_schema.dump(self._by_uuid(session, uuid))

    @rpc(expected_exceptions=RosterError)
    def delete_data_source(self, uuid: str) -> None:
        with self.db.begin() as session:
            session.delete(self._by_uuid(session, uuid))
            self.outbox(session, "data_source_deleted", uuid=uuid)

    @staticmethod
    def _by_uuid(session, uuid: str) -> DataSource:
        source = session.scalars(select(DataSource).where(DataSource.uuid == uuid)).first()
        if source is None:
            raise NotFound(f"Data source {uuid} not found", param="uuid")
        return source
