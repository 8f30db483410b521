"""metric days in parts: concurrent imports add to different rows of a day

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

FIGURES = ("new_business", "expansion", "contraction", "churn", "reactivation", "customers")


def upgrade() -> None:
    op.create_table(
        "metric_day_parts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in FIGURES),
        sa.PrimaryKeyConstraint("day", "part"),
    )
    figures = ", ".join(FIGURES)
    op.execute(f"INSERT INTO metric_day_parts (day, part, {figures}) SELECT day, 0, {figures} FROM metric_days")
    op.drop_table("metric_days")


def downgrade() -> None:
    op.create_table(
        "metric_days",
        sa.Column("day", sa.Date(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in FIGURES),
        sa.PrimaryKeyConstraint("day"),
    )
    sums = ", ".join(f"SUM({name})" for name in FIGURES)
    op.execute(f"INSERT INTO metric_days (day, {', '.join(FIGURES)}) SELECT day, {sums} FROM metric_day_parts "
               "GROUP BY day")
    op.drop_table("metric_day_parts")
