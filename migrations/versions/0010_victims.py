"""victims: removal requests, their private hash banks, matches and notices

Revision ID: 0010
Revises: 0009
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = "0010"
down_revision: Union[str, None] = "0009"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('victim_requests',
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('pin_hash', sa.String(length=200), nullable=False),
    sa.Column('items', sa.Integer(), nullable=False),
    sa.Column('requested_at', sa.String(length=64), nullable=False),
    sa.Column('filed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('filed_by', sa.String(length=100), nullable=False),
    sa.Column('source', sa.String(length=300), nullable=False),
    sa.Column('past_matched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rescan_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('withdrawn_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('withdrawn_by', sa.String(length=100), nullable=True),
    sa.PrimaryKeyConstraint('request_id')
    )
    with op.batch_alter_table('victim_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_victim_requests_rescan_at'), ['rescan_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_victim_requests_state'), ['state'], unique=False)

    op.create_table('victim_bank_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.execute("INSERT INTO victim_bank_state (id, version) VALUES (1, 0)")

    op.create_table('victim_hashes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('item', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=128), nullable=False),
    sa.Column('media_type', sa.String(length=16), nullable=True),
    sa.Column('pdq_quality', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['victim_requests.request_id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('request_id', 'kind', 'value', name='uq_victim_hash')
    )
    with op.batch_alter_table('victim_hashes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_victim_hashes_request_id'), ['request_id'], unique=False)

    op.create_table('victim_matches',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('item', sa.Integer(), nullable=False),
    sa.Column('report_id', sa.String(length=36), nullable=False),
    sa.Column('case_id', sa.String(length=36), nullable=False),
    sa.Column('provider_id', sa.String(length=100), nullable=False),
    sa.Column('provider_report_id', sa.String(length=200), nullable=False),
    sa.Column('content_id', sa.String(length=200), nullable=False),
    sa.Column('reported_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('signal', sa.String(length=16), nullable=False),
    sa.Column('distance', sa.Integer(), nullable=False),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('publicly_available', sa.Boolean(), nullable=True),
    sa.Column('removed', sa.Boolean(), nullable=True),
    sa.Column('found_by', sa.String(length=8), nullable=False),
    sa.Column('found_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['victim_requests.request_id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('request_id', 'report_id', 'content_id', name='uq_victim_match')
    )
    with op.batch_alter_table('victim_matches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_victim_matches_report_id'), ['report_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_victim_matches_request_id'), ['request_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_victim_matches_state'), ['state'], unique=False)

    op.create_table('victim_notices',
    sa.Column('notice_id', sa.String(length=36), nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('match_id', sa.Integer(), nullable=True),
    sa.Column('type', sa.String(length=24), nullable=False),
    sa.Column('provider_id', sa.String(length=100), nullable=False),
    sa.Column('report_id', sa.String(length=36), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('first_sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('next_due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('answer', sa.String(length=16), nullable=True),
    sa.Column('answer_reason', sa.Text(), nullable=True),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('removed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('escalation', sa.String(length=16), nullable=True),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['victim_requests.request_id'], ),
    sa.PrimaryKeyConstraint('notice_id')
    )
    with op.batch_alter_table('victim_notices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_victim_notices_next_due_at'), ['next_due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_victim_notices_provider_id'), ['provider_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_victim_notices_request_id'), ['request_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_victim_notices_state'), ['state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('victim_notices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_victim_notices_state'))
        batch_op.drop_index(batch_op.f('ix_victim_notices_request_id'))
        batch_op.drop_index(batch_op.f('ix_victim_notices_provider_id'))
        batch_op.drop_index(batch_op.f('ix_victim_notices_next_due_at'))

    op.drop_table('victim_notices')
    with op.batch_alter_table('victim_matches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_victim_matches_state'))
        batch_op.drop_index(batch_op.f('ix_victim_matches_request_id'))
        batch_op.drop_index(batch_op.f('ix_victim_matches_report_id'))

    op.drop_table('victim_matches')
    with op.batch_alter_table('victim_hashes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_victim_hashes_request_id'))

    op.drop_table('victim_hashes')
    op.drop_table('victim_bank_state')
    with op.batch_alter_table('victim_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_victim_requests_state'))
        batch_op.drop_index(batch_op.f('ix_victim_requests_rescan_at'))

    op.drop_table('victim_requests')
