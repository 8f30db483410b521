"""Alembic environment of the contacts service (see roster.migrations)."""
from roster.migrations import run_env
from services.contacts.models import Base

run_env(Base.metadata)
