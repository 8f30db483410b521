"""The naive peer the write benchmark compares Roster with: what a nameko-examples-style pair
would do. A gateway (`@http`, one RPC per request) and a service (one row, one commit per
write, no outbox, no events, no validation beyond JSON), on the same broker and database.

    nameko run --config config.yaml bench.naive:NaiveGateway bench.naive:NaiveCustomers
"""
import json
import os
import uuid

from nameko.rpc import RpcProxy, rpc
from nameko.web.handlers import http
from sqlalchemy import Integer, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from roster import serialization  # noqa: F401  (the same JSON codec on the bus)
from roster.config import database_schema, database_url
from roster.database import make_engine


class Base(DeclarativeBase):
    pass


class NaiveCustomer(Base):
    __tablename__ = "naive_customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(40), unique=True)
    external_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200), default="")


def _sessions():
    engine = make_engine(database_url("naive"), database_schema("naive")) if os.environ.get("DATABASE_URL") \
        else create_engine(f"sqlite:///{os.environ.get('DATA_DIR', 'var')}/naive.db")
    Base.metadata.create_all(engine)
    return sessionmaker(engine, expire_on_commit=False)


SESSIONS = None


def sessions():
    global SESSIONS
    if SESSIONS is None:
        SESSIONS = _sessions()
    return SESSIONS


def as_dict(row: NaiveCustomer) -> dict:
    return {"uuid": row.uuid, "external_id": row.external_id, "name": row.name}


class NaiveCustomers:
    name = "naive_customers"

    @rpc
    def get(self, uuid):
        with sessions()() as session:
            row = session.scalars(select(NaiveCustomer).where(NaiveCustomer.uuid == uuid)).first()
            return as_dict(row) if row else None

    @rpc
    def update(self, uuid, changes):
        with sessions().begin() as session:
            row = session.scalars(select(NaiveCustomer).where(NaiveCustomer.uuid == uuid)).first()
            row.name = changes.get("name", row.name)
            return as_dict(row)

    @rpc
    def create(self, data):
        with sessions().begin() as session:
            row = NaiveCustomer(uuid=f"cus_{uuid.uuid4()}", external_id=data["external_id"], name=data.get("name", ""))
            session.add(row)
            session.flush()
            return as_dict(row)

    @rpc
    def seed(self, total):
        with sessions().begin() as session:
            rows = [NaiveCustomer(uuid=f"cus_{uuid.uuid4()}", external_id=f"n{i}", name="x") for i in range(total)]
            session.add_all(rows)
            session.flush()
            return [row.uuid for row in rows]


class NaiveGateway:
    name = "naive_gateway"
    customers = RpcProxy("naive_customers")

    @http("GET", "/v1/customers/<uuid>")
    def get(self, request, uuid):
        return json.dumps(self.customers.get(uuid))

    @http("PATCH", "/v1/customers/<uuid>")
    def update(self, request, uuid):
        return json.dumps(self.customers.update(uuid, json.loads(request.get_data())))

    @http("POST", "/v1/customers")
    def create(self, request):
        return 201, json.dumps(self.customers.create(json.loads(request.get_data())))
