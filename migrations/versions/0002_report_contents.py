"""the report as received moves to report_contents

Decisions rewrite a `reports` row twice (triage, routing); with the whole report inside it,
each rewrite copied the report too. The body now lives in its own row, written once.

Revision ID: 0002
Revises: 0001
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "report_contents",
        sa.Column("report_id", sa.String(length=36), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["report_id"], ["reports.report_id"]),
        sa.PrimaryKeyConstraint("report_id"),
    )
    op.execute("INSERT INTO report_contents (report_id, body) SELECT report_id, body FROM reports")
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_column("body")


def downgrade() -> None:
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body", sa.JSON(), nullable=True))
    op.execute("UPDATE reports SET body = (SELECT body FROM report_contents "
               "WHERE report_contents.report_id = reports.report_id)")
    op.drop_table("report_contents")
