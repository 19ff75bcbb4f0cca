"""deliveries.state: a case waits (awaiting_key) for a recipient without a registered key

Revision ID: 0005
Revises: 0004
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: Union[str, None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state", sa.String(length=16), nullable=False,
                                      server_default="forwarded"))
        batch_op.alter_column("forwarded_at", existing_type=sa.DateTime(timezone=True),
                              nullable=True)
        batch_op.create_index(batch_op.f("ix_deliveries_state"), ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_state"))
        batch_op.alter_column("forwarded_at", existing_type=sa.DateTime(timezone=True),
                              nullable=False)
        batch_op.drop_column("state")
