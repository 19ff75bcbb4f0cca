"""report record, clusters, banks, deliveries

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 08:00:30.424066
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0001'
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    
    op.create_table('clusters',
    sa.Column('cluster_id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('merged_into', sa.String(length=36), nullable=True),
    sa.Column('times_reported', sa.Integer(), nullable=False),
    sa.Column('recent_cases', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('cluster_id')
    )
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_clusters_merged_into'), ['merged_into'], unique=False)

    op.create_table('dead_letters',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('topic', sa.String(length=255), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('key', sa.LargeBinary(), nullable=True),
    sa.Column('value', sa.LargeBinary(), nullable=True),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('provider_id', sa.String(length=100), nullable=True),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('topic', 'partition', 'offset', name='uq_dead_letter_pos')
    )
    op.create_table('indicators',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('bank', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=128), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('added_by', sa.String(length=100), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('bank', 'kind', 'value', name='uq_indicator')
    )
    with op.batch_alter_table('indicators', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_indicators_bank'), ['bank'], unique=False)
        batch_op.create_index('ix_indicators_value', ['value'], unique=False)

    op.create_table('intake_decisions',
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('provider_id', sa.String(length=100), nullable=True),
    sa.Column('provider_report_id', sa.String(length=200), nullable=True),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('report_id', sa.String(length=36), nullable=True),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('partition', 'offset')
    )
    op.create_table('providers',
    sa.Column('provider_id', sa.String(length=100), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reports_received', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('provider_id')
    )
    op.create_table('cluster_signals',
    sa.Column('value', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('cluster_id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.cluster_id'], ),
    sa.PrimaryKeyConstraint('value', 'kind')
    )
    with op.batch_alter_table('cluster_signals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cluster_signals_cluster_id'), ['cluster_id'], unique=False)

    op.create_table('reports',
    sa.Column('report_id', sa.String(length=36), nullable=False),
    sa.Column('case_id', sa.String(length=36), nullable=False),
    sa.Column('provider_id', sa.String(length=100), nullable=False),
    sa.Column('provider_report_id', sa.String(length=200), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('submitted_at', sa.String(length=64), nullable=False),
    sa.Column('signature', sa.String(length=16), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=True),
    sa.Column('severity', sa.String(length=16), nullable=True),
    sa.Column('priority', sa.String(length=4), nullable=True),
    sa.Column('manifestly_unfounded', sa.Boolean(), nullable=True),
    sa.Column('triage', sa.JSON(), nullable=True),
    sa.Column('jurisdiction', sa.JSON(), nullable=True),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('triaged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('forwarded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('supplements', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.provider_id'], ),
    sa.PrimaryKeyConstraint('report_id'),
    sa.UniqueConstraint('case_id'),
    sa.UniqueConstraint('provider_id', 'provider_report_id', name='uq_reports_provider_ref')
    )
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reports_status'), ['status'], unique=False)

    op.create_table('deliveries',
    sa.Column('case_id', sa.String(length=36), nullable=False),
    sa.Column('recipient', sa.String(length=16), nullable=False),
    sa.Column('report_id', sa.String(length=36), nullable=False),
    sa.Column('priority', sa.String(length=4), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('topic', sa.String(length=255), nullable=False),
    sa.Column('forwarded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['report_id'], ['reports.report_id'], ),
    sa.PrimaryKeyConstraint('case_id', 'recipient')
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deliveries_report_id'), ['report_id'], unique=False)

    op.create_table('report_clusters',
    sa.Column('report_id', sa.String(length=36), nullable=False),
    sa.Column('cluster_id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.cluster_id'], ),
    sa.ForeignKeyConstraint(['report_id'], ['reports.report_id'], ),
    sa.PrimaryKeyConstraint('report_id', 'cluster_id')
    )
    with op.batch_alter_table('report_clusters', schema=None) as batch_op:
        batch_op.create_index('ix_report_clusters_cluster', ['cluster_id'], unique=False)

    


def downgrade() -> None:
    
    with op.batch_alter_table('report_clusters', schema=None) as batch_op:
        batch_op.drop_index('ix_report_clusters_cluster')

    op.drop_table('report_clusters')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deliveries_report_id'))

    op.drop_table('deliveries')
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reports_status'))

    op.drop_table('reports')
    with op.batch_alter_table('cluster_signals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cluster_signals_cluster_id'))

    op.drop_table('cluster_signals')
    op.drop_table('providers')
    op.drop_table('intake_decisions')
    with op.batch_alter_table('indicators', schema=None) as batch_op:
        batch_op.drop_index('ix_indicators_value')
        batch_op.drop_index(batch_op.f('ix_indicators_bank'))

    op.drop_table('indicators')
    op.drop_table('dead_letters')
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_clusters_merged_into'))

    op.drop_table('clusters')
    
