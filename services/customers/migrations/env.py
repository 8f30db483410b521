"""Alembic environment of the customers service (see roster.migrations)."""
from roster.migrations import run_env
from services.customers.models import Base

run_env(Base.metadata)
