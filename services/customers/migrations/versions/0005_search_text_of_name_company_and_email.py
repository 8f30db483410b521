"""search text of name, company and email (what the `q` filter matches), filled for existing rows

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

from services.customers.domain import search_text

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('search_text', sa.Text(), nullable=False, server_default=""))
    connection = op.get_bind()
    customers = sa.table("customers", sa.column("id"), sa.column("name"), sa.column("company"),
                         sa.column("email"), sa.column("search_text"))
    after = 0
    while True:
        rows = connection.execute(sa.select(customers.c.id, customers.c.name, customers.c.company, customers.c.email)
                                  .where(customers.c.id > after).order_by(customers.c.id).limit(BATCH)).all()
        if not rows:
            break
        connection.execute(customers.update().where(customers.c.id == sa.bindparam("row_id"))
                           .values(search_text=sa.bindparam("text")),
                           [{"row_id": row.id, "text": search_text(row.name, row.company, row.email)} for row in rows])
        after = rows[-1].id


def downgrade() -> None:
    raise NotImplementedError("Roster migrations go forward only")
