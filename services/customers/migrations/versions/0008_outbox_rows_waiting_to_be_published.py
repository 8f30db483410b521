"""outbox rows waiting to be published: a partial index, as the relay reads them

Revision ID: 0008
Revises: 0007
"""
from roster.migrations import add_pending_outbox_index

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_pending_outbox_index()


def downgrade() -> None:
    from alembic import op

    op.drop_index("ix_outbox_pending", "outbox")
