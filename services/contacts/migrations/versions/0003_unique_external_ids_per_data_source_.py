"""unique external ids per data source, positions never null, known customers

Revision ID: 0003
Revises: 0002

What this does to existing data:

* External ids: a blank one becomes NULL (it names nothing). Where several contacts of one
  data source share an external id (possible before this revision, through concurrent
  creates), the oldest contact (lowest id) keeps it and the others' external_id becomes
  NULL; their uuids are logged. Then (data_source_uuid, external_id) is made unique.
* Positions: a contact without one gets the next position of its customer, oldest first,
  after the highest position the customer's contacts already have: a customer whose
  contacts had none gets 1 (its primary contact), 2, 3, ... in creation order.
* `gone_customers` becomes `known_customers` (deleted or merged into, as before), plus an
  `active` row for every other customer that has contacts, with its external id as the
  contacts recorded it.
"""
import logging

import sqlalchemy as sa
from alembic import op

import roster.database  # noqa: F401  (revisions may name its column types)

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")

contacts = sa.table(
    "contacts",
    sa.column("id", sa.Integer()),
    sa.column("uuid", sa.String()),
    sa.column("customer_uuid", sa.String()),
    sa.column("data_source_uuid", sa.String()),
    sa.column("external_id", sa.String()),
    sa.column("position", sa.Integer()),
)


def upgrade() -> None:
    op.create_table(
        'known_customers',
        sa.Column('uuid', sa.String(length=40), nullable=False),
        sa.Column('state', sa.String(length=10), nullable=False),
        sa.Column('merged_into', sa.String(length=40), nullable=True),
        sa.Column('external_id', sa.String(length=500), nullable=True),
        sa.Column('updated_at', roster.database.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('uuid'),
    )
    _known_customers_from_gone_customers()
    op.drop_table('gone_customers')
    _free_duplicate_external_ids()
    _number_contacts_without_position()
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.alter_column('position', existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_index(batch_op.f('ix_contacts_source_external_id'))
        batch_op.create_unique_constraint('uq_contacts_source_external_id', ['data_source_uuid', 'external_id'])


def downgrade() -> None:
    raise NotImplementedError("Roster migrations go forward only")


def _known_customers_from_gone_customers() -> None:
    op.execute(
        "INSERT INTO known_customers (uuid, state, merged_into, updated_at) "
        "SELECT uuid, CASE WHEN merged_into IS NULL THEN 'deleted' ELSE 'merged' END, merged_into, gone_at "
        "FROM gone_customers"
    )
    op.execute(
        "INSERT INTO known_customers (uuid, state, external_id, updated_at) "
        "SELECT customer_uuid, 'active', MAX(customer_external_id), CURRENT_TIMESTAMP FROM contacts "
        "WHERE customer_uuid NOT IN (SELECT uuid FROM gone_customers) GROUP BY customer_uuid"
    )


def _free_duplicate_external_ids() -> None:
    bind = op.get_bind()
    bind.execute(contacts.update().where(sa.func.trim(contacts.c.external_id) == "").values(external_id=None))
    rows = bind.execute(
        sa.select(contacts.c.id, contacts.c.uuid, contacts.c.data_source_uuid, contacts.c.external_id)
        .where(contacts.c.external_id.is_not(None)).order_by(contacts.c.id)
    )
    owners, cleared = set(), []
    for row in rows:
        key = (row.data_source_uuid, row.external_id)
        if key in owners:
            cleared.append(row)
        owners.add(key)
    if cleared:
        bind.execute(contacts.update().where(contacts.c.id.in_([row.id for row in cleared])).values(external_id=None))
        logger.warning("contacts: cleared the external_id of %d contacts that repeated an older contact's: %s",
                       len(cleared), ", ".join(f"{row.uuid} ({row.external_id})" for row in cleared[:100]))


def _number_contacts_without_position() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(contacts.c.id, contacts.c.customer_uuid, contacts.c.position).order_by(contacts.c.id)
    ).all()
    highest = {}
    for row in rows:
        if row.position is not None:
            highest[row.customer_uuid] = max(highest.get(row.customer_uuid, 0), row.position)
    numbered = []
    for row in rows:
        if row.position is None:
            highest[row.customer_uuid] = highest.get(row.customer_uuid, 0) + 1
            numbered.append({"row_id": row.id, "new_position": highest[row.customer_uuid]})
    if numbered:
        bind.execute(
            contacts.update().where(contacts.c.id == sa.bindparam("row_id"))
            .values(position=sa.bindparam("new_position")),
            numbered,
        )
