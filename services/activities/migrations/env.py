"""Alembic environment of the activities service (see roster.migrations)."""
from roster.migrations import run_env
from services.activities.models import Base

run_env(Base.metadata)
