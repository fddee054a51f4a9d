"""The agent hub: agents and their sessions, who holds which case, notes, the audit log, and
training numbers on the channel's addresses.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("handoff_requests") as table:
        table.add_column(sa.Column("training", sa.Boolean, nullable=False, server_default=sa.false()))
        table.add_column(sa.Column("assigned_to", sa.String(64)))
        table.add_column(sa.Column("taken_at", sa.Float))
        table.add_column(sa.Column("told_waiting_at", sa.Float))
        table.add_column(sa.Column("returned_at", sa.Float))
        table.add_column(sa.Column("outcome", sa.String(32)))
        table.add_column(sa.Column("closed_at", sa.Float))
    with op.batch_alter_table("channel_addresses") as table:
        table.add_column(sa.Column("training", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "agents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "agent_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("agent_id", sa.Integer, sa.ForeignKey("agents.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_table(
        "case_notes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(36), nullable=False, index=True),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("note_enc", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False, index=True),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("case_id", sa.String(36), index=True),
        sa.Column("detail", sa.String(64)),
    )
