"""Alembic environment of the billing_sync service (see roster.migrations)."""
from roster.migrations import run_env
from services.billing_sync.models import Base

run_env(Base.metadata)
