"""outbox rows waiting to be published: a partial index, as the relay reads them

Revision ID: 0002
Revises: 0001
"""
from roster.migrations import add_pending_outbox_index

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_pending_outbox_index()


def downgrade() -> None:
    from alembic import op

    op.drop_index("ix_outbox_pending", "outbox")
