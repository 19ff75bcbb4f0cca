"""complaints: complaint/v1 filings, their handling, and the effects of a decision

Revision ID: 0009
Revises: 0008
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = "0009"
down_revision: Union[str, None] = "0008"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('complaints',
    sa.Column('complaint_id', sa.String(length=36), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('matched_by', sa.String(length=24), nullable=True),
    sa.Column('report_id', sa.String(length=36), nullable=True),
    sa.Column('case_id', sa.String(length=36), nullable=True),
    sa.Column('provider_id', sa.String(length=100), nullable=True),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('assignee', sa.String(length=100), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sa.String(length=100), nullable=True),
    sa.Column('decision_reason', sa.Text(), nullable=True),
    sa.Column('related_cases', sa.Integer(), nullable=False),
    sa.Column('effects', sa.String(length=16), nullable=False),
    sa.Column('effects_held_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('complaint_id')
    )
    with op.batch_alter_table('complaints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_complaints_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_complaints_due_at'), ['due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_complaints_report_id'), ['report_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_complaints_state'), ['state'], unique=False)

    op.create_table('complaint_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('complaint_id', sa.String(length=36), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['complaint_id'], ['complaints.complaint_id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('complaint_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_complaint_events_complaint_id'), ['complaint_id'], unique=False)

    op.create_table('complaint_filings',
    sa.Column('filing_id', sa.String(length=36), nullable=False),
    sa.Column('complaint_id', sa.String(length=36), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('filer', sa.String(length=100), nullable=False),
    sa.Column('complaint_ref', sa.String(length=200), nullable=False),
    sa.Column('grounds', sa.String(length=32), nullable=False),
    sa.Column('contact_ref', sa.String(length=200), nullable=False),
    sa.Column('statement', sa.Text(), nullable=True),
    sa.Column('concerns', sa.JSON(), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('filed_at', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=300), nullable=False),
    sa.Column('joined', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['complaint_id'], ['complaints.complaint_id'], ),
    sa.PrimaryKeyConstraint('filing_id')
    )
    with op.batch_alter_table('complaint_filings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_complaint_filings_complaint_id'), ['complaint_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_complaint_filings_grounds'), ['grounds'], unique=False)

    op.create_table('complaint_messages',
    sa.Column('message_id', sa.String(length=36), nullable=False),
    sa.Column('complaint_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('recipient', sa.String(length=100), nullable=False),
    sa.Column('case_id', sa.String(length=36), nullable=True),
    sa.Column('topic', sa.String(length=255), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['complaint_id'], ['complaints.complaint_id'], ),
    sa.PrimaryKeyConstraint('message_id')
    )
    with op.batch_alter_table('complaint_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_complaint_messages_complaint_id'), ['complaint_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_complaint_messages_state'), ['state'], unique=False)

    op.create_table('complaint_related_cases',
    sa.Column('complaint_id', sa.String(length=36), nullable=False),
    sa.Column('case_id', sa.String(length=36), nullable=False),
    sa.Column('report_id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['complaint_id'], ['complaints.complaint_id'], ),
    sa.PrimaryKeyConstraint('complaint_id', 'case_id')
    )


def downgrade() -> None:
    op.drop_table('complaint_related_cases')
    with op.batch_alter_table('complaint_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_complaint_messages_state'))
        batch_op.drop_index(batch_op.f('ix_complaint_messages_complaint_id'))

    op.drop_table('complaint_messages')
    with op.batch_alter_table('complaint_filings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_complaint_filings_grounds'))
        batch_op.drop_index(batch_op.f('ix_complaint_filings_complaint_id'))

    op.drop_table('complaint_filings')
    with op.batch_alter_table('complaint_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_complaint_events_complaint_id'))

    op.drop_table('complaint_events')
    with op.batch_alter_table('complaints', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_complaints_state'))
        batch_op.drop_index(batch_op.f('ix_complaints_report_id'))
        batch_op.drop_index(batch_op.f('ix_complaints_due_at'))
        batch_op.drop_index(batch_op.f('ix_complaints_case_id'))

    op.drop_table('complaints')
