"""Alembic environment of the avatars service (see roster.migrations)."""
from roster.migrations import run_env
from services.avatars.models import Base

run_env(Base.metadata)
