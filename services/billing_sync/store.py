"""Queries on the billing_sync service's tables (one session, no commits here)."""
from sqlalchemy import select
from sqlalchemy.orm import Session

from roster.errors import NotFound
from services.billing_sync.models import DataSource


def data_source(session: Session, uuid: str) -> DataSource:
    """Return the data source with this uuid; 404 if none."""
    source = session.scalars(select(DataSource).where(DataSource.uuid == uuid)).first()
    if source is None:
        raise NotFound(f"Data source {uuid} not found", param="uuid")
    return source


def data_sources(session: Session, *, name: str | None = None, system: str | None = None) -> list[DataSource]:
    """Return the data sources matching the filters given, oldest first."""
    query = select(DataSource).order_by(DataSource.id)
    if name:
        query = query.where(DataSource.name == name)
    if system:
        query = query.where(DataSource.system == system)
    return list(session.scalars(query))
