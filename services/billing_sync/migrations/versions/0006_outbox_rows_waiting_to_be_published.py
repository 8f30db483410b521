"""outbox rows waiting to be published: a partial index, as the relay reads them

Revision ID: 0006
Revises: 0005
"""
from roster.migrations import add_pending_outbox_index

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_pending_outbox_index()


def downgrade() -> None:
    from alembic import op

    op.drop_index("ix_outbox_pending", "outbox")
