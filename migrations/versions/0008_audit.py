"""audit: the encrypted, hash-chained audit trail with signed checkpoints

Revision ID: 0008
Revises: 0007
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: Union[str, None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=False, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("person", sa.String(length=255), nullable=True),
        sa.Column("data_key_id", sa.String(length=32), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("personal", sa.LargeBinary(), nullable=True),
        sa.Column("prev_hash", sa.LargeBinary(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("event_id"),
    )
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_subject"), ["subject"], unique=False)
        batch_op.create_index("ix_audit_person", ["person"], unique=False,
                              sqlite_where=sa.text("person IS NOT NULL"),
                              postgresql_where=sa.text("person IS NOT NULL"))
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("key_id", sa.String(length=16), nullable=True),
        sa.Column("signature", sa.LargeBinary(), nullable=True),
        sa.Column("checkpoint_seq", sa.BigInteger(), nullable=False),
        sa.Column("checkpoint_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    # The empty log: seq 0, the all-zero hash every chain starts from.
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": bytes(32), "checkpoint_seq": 0}])
    op.create_table(
        "audit_data_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("kek_id", sa.String(length=16), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_id"),
    )
    with op.batch_alter_table("audit_data_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_data_keys_kek_id"), ["kek_id"], unique=False)
    op.create_table(
        "audit_subject_keys",
        sa.Column("person", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("kek_id", sa.String(length=16), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("person"),
    )
    with op.batch_alter_table("audit_subject_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_subject_keys_kind"), ["kind"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_subject_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_subject_keys_kind"))
    op.drop_table("audit_subject_keys")
    with op.batch_alter_table("audit_data_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_data_keys_kek_id"))
    op.drop_table("audit_data_keys")
    op.drop_table("audit_head")
    op.drop_table("audit_checkpoints")
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_person")
        batch_op.drop_index(batch_op.f("ix_audit_subject"))
    op.drop_table("audit")
