"""supplements: Art. 48(5) information requests and the supplements that answer them

Revision ID: 0007
Revises: 0006
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: Union[str, None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "report_supplements",
        sa.Column("report_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("added", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["report_id"], ["reports.report_id"]),
        sa.PrimaryKeyConstraint("report_id", "seq"),
    )
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("information_requested", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("routed_supplements", sa.Integer(), nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("reports") as batch:
        batch.drop_column("routed_supplements")
        batch.drop_column("information_requested")
    op.drop_table("report_supplements")
