"""Login throttling and idle sessions: failed logins are rows in SQL so a limit survives a restart
and holds across several hub processes; sessions remember when they were last used so a console
left open at night closes itself.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_login_failures_scope_key_at", "login_failures", ["scope", "key", "at"])
    with op.batch_alter_table("agent_sessions") as table:
        table.add_column(sa.Column("last_seen_at", sa.Float, nullable=False, server_default="0"))
