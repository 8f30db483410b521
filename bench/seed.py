"""Bulk-load customers straight into the customers service's database, for benchmarks only.

Creating 100,000 customers through the API takes many minutes; the benchmark measures
reads, so it writes the rows with the customers service's own models in one go.
"""
import uuid as uuid_lib
from datetime import datetime, timezone

from sqlalchemy import func, insert, select, text

from roster import config, migrations
from roster.config import database_schema
from roster.database import make_engine
from services.customers.models import Base, CustomAttribute, Customer, ExternalId, Tag

BATCH = 5_000


def seed_customers(total: int, data_source_uuid: str) -> list[str]:
    """Make the customers table hold `total` customers; return their uuids in id order."""
    engine = make_engine(config.database_url("customers"), database_schema("customers"))
    migrations.upgrade(engine, "customers", Base.metadata)
    now = datetime.now(timezone.utc)
    with engine.begin() as connection:
        have = connection.scalar(select(func.count()).select_from(Customer))
        next_id = (connection.scalar(select(func.max(Customer.id))) or 0) + 1
        for start in range(have, total, BATCH):
            ids = range(next_id, next_id + min(BATCH, total - start))
            next_id += len(ids)
            connection.execute(insert(Customer), [_customer(i, now) for i in ids])
            connection.execute(insert(ExternalId), [
                {"customer_id": i, "data_source_uuid": data_source_uuid, "external_id": f"bench-{i}"} for i in ids
            ])
            connection.execute(insert(Tag), [{"customer_id": i, "tag": "bench"} for i in ids])
            connection.execute(insert(CustomAttribute), [
                {"customer_id": i, "key": "seats", "type": "Integer", "value": i % 50, "source": "API"} for i in ids
            ])
        uuids = list(connection.scalars(select(Customer.uuid).order_by(Customer.id)))
    if engine.dialect.name == "postgresql":
        # Fresh planner statistics, as autovacuum would give a table that grew this fast.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            schema = database_schema("customers")
            for table in Base.metadata.sorted_tables:
                connection.execute(text(f'ANALYZE "{schema}"."{table.name}"'))
    engine.dispose()
    return uuids


def _customer(i: int, now: datetime) -> dict:
    return {
        "id": i, "uuid": f"cus_{uuid_lib.uuid4()}", "name": f"Customer {i}", "email": f"c{i}@example.com",
        "email_lower": f"c{i}@example.com", "company": f"Company {i}", "status": "New Lead",
        "search_text": f"customer {i} company {i} c{i}@example.com",
        "city": "Berlin", "country": "DE", "website_url": f"https://c{i}.example.com", "mrr": 0,
        "currency": "USD", "billing_system_type": "Import API", "created_at": now, "updated_at": now,
    }
