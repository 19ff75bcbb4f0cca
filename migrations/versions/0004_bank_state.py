"""bank_state: a version that triggers raise on every change to indicators

Revision ID: 0004
Revises: 0003
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: Union[str, None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_EVENTS = ("INSERT", "UPDATE", "DELETE")


def upgrade() -> None:
    op.create_table(
        "bank_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO bank_state (id, version) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION bump_bank_state() RETURNS trigger AS $$
            BEGIN
                UPDATE bank_state SET version = version + 1 WHERE id = 1;
                RETURN NULL;
            END $$ LANGUAGE plpgsql""")
        op.execute("CREATE TRIGGER indicators_bump_bank_state AFTER INSERT OR UPDATE OR DELETE "
                   "ON indicators FOR EACH STATEMENT EXECUTE FUNCTION bump_bank_state()")
    else:  # SQLite has row triggers only
        for event in _EVENTS:
            op.execute(f"CREATE TRIGGER indicators_bump_{event.lower()} AFTER {event} "
                       "ON indicators BEGIN "
                       "UPDATE bank_state SET version = version + 1 WHERE id = 1; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER indicators_bump_bank_state ON indicators")
        op.execute("DROP FUNCTION bump_bank_state()")
    else:
        for event in _EVENTS:
            op.execute(f"DROP TRIGGER indicators_bump_{event.lower()}")
    op.drop_table("bank_state")
