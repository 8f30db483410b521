"""The billing_sync service's tables. Only this service reads or writes them."""
from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from roster.database import UtcDateTime
from roster.timestamps import utcnow
from roster.uow import bookkeeping_tables


class Base(DeclarativeBase):
    pass


class DataSource(Base):
    """Where a customer's billing data comes from: a billing system or the Import API."""

    __tablename__ = "data_sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(500))
    system: Mapped[str] = mapped_column(String(100), default="Import API", index=True)
    status: Mapped[str] = mapped_column(String(40), default="idle")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


bookkeeping = bookkeeping_tables(Base)
UNIQUE_RULES = ()
