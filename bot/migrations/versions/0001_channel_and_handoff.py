"""The tables that existed before migrations: the channel's, the handoff queue and deletion requests.

Databases made before Alembic already have some of them (each module created its own), so each
table is created only when missing; the result is the same schema either way.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _missing(name: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    if _missing("channel_addresses"):
        op.create_table(
            "channel_addresses",
            sa.Column("conversation_id", sa.String(48), primary_key=True),
            sa.Column("channel", sa.String(16), nullable=False),
            sa.Column("address_enc", sa.Text, nullable=False),
            sa.Column("hotline_number", sa.String(64), nullable=False),
            sa.Column("opted_out", sa.Boolean, nullable=False),
            sa.Column("opted_out_at", sa.Float),
            sa.Column("last_inbound_at", sa.Float, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
        )
    if _missing("channel_inbound"):
        op.create_table(
            "channel_inbound",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("sid", sa.String(64), nullable=False, unique=True),
            sa.Column("conversation_id", sa.String(48), nullable=False, index=True),
            sa.Column("body_enc", sa.Text, nullable=False),
            sa.Column("media_enc", sa.Text),
            sa.Column("received_at", sa.Float, nullable=False),
            sa.Column("status", sa.String(16), nullable=False, index=True),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("next_attempt_at", sa.Float, nullable=False),
            sa.Column("claimed_by", sa.String(40)),
            sa.Column("claimed_at", sa.Float),
            sa.Column("done_at", sa.Float),
        )
    if _missing("channel_outbox"):
        op.create_table(
            "channel_outbox",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("key", sa.String(128), nullable=False, unique=True),
            sa.Column("conversation_id", sa.String(48), nullable=False, index=True),
            sa.Column("origin", sa.String(16), nullable=False),
            sa.Column("body_enc", sa.Text, nullable=False),
            sa.Column("status", sa.String(16), nullable=False, index=True),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("next_attempt_at", sa.Float, nullable=False),
            sa.Column("claimed_by", sa.String(40)),
            sa.Column("claimed_at", sa.Float),
            sa.Column("twilio_sid", sa.String(64), index=True),
            sa.Column("error_code", sa.Integer),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
        )
    if _missing("channel_delivery_events"):
        op.create_table(
            "channel_delivery_events",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("twilio_sid", sa.String(64), nullable=False, index=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("error_code", sa.Integer),
            sa.Column("at", sa.Float, nullable=False),
        )
    if _missing("handoff_requests"):
        op.create_table(
            "handoff_requests",
            sa.Column("id", sa.String(36), primary_key=True),
            sa.Column("conversation_id", sa.String(48), nullable=False, index=True),
            sa.Column("status", sa.String(16), nullable=False, index=True),
            sa.Column("risk", sa.String(16), nullable=False),
            sa.Column("priority", sa.Integer, nullable=False, index=True),
            sa.Column("reason", sa.String(32), nullable=False),
            sa.Column("summary_enc", sa.Text, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
        )
    if _missing("deletion_requests"):
        op.create_table(
            "deletion_requests",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("conversation_id", sa.String(48), nullable=False, index=True),
            sa.Column("requested_at", sa.Float, nullable=False),
            sa.Column("done_at", sa.Float),
        )
