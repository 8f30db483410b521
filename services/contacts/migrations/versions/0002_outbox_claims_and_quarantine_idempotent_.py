"""outbox claims and quarantine, idempotent answers

Revision ID: 0002
Revises: 0001
"""
from roster.migrations import upgrade_bookkeeping_to_claims

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    upgrade_bookkeeping_to_claims()


def downgrade() -> None:
    raise NotImplementedError("Roster migrations go forward only")
