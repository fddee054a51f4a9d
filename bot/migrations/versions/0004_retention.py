"""Retention: the registry of recorded scripts (``hotline replay --record``), so that a texter's
"delete" and the retention purge also remove the script files made from their conversation.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recorded_scripts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(48), nullable=False, index=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("recorded_at", sa.Float, nullable=False),
    )
