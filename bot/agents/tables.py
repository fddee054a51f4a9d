"""The agent hub's tables (schema changes go through ``bot/migrations``, never ``create_all``).

``handoff_requests`` is the case queue: the conversation writes cases (``bot.agents.handoff``), the
hub reads and moves them. The texter's words live only encrypted: the summary and notes.
"""
import sqlalchemy as sa

metadata = sa.MetaData()

handoff_requests = sa.Table(
    "handoff_requests", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("conversation_id", sa.String(48), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("risk", sa.String(16), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, index=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("summary_enc", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("training", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("assigned_to", sa.String(64)),
    sa.Column("taken_at", sa.Float),
    sa.Column("told_waiting_at", sa.Float),
    sa.Column("returned_at", sa.Float),
    sa.Column("outcome", sa.String(32)),
    sa.Column("closed_at", sa.Float),
)

agents = sa.Table(
    "agents", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.Float, nullable=False),
)

agent_sessions = sa.Table(
    "agent_sessions", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("agent_id", sa.Integer, sa.ForeignKey("agents.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("last_seen_at", sa.Float, nullable=False, server_default="0"),
)

#: One row per failed login, per username and per client address: counted in a sliding window so a
#: lock holds across restarts and hub processes.
login_failures = sa.Table(
    "login_failures", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("scope", sa.String(8), nullable=False),  # user, address
    sa.Column("key", sa.String(128), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("ix_login_failures_scope_key_at", "scope", "key", "at"),
)

case_notes = sa.Table(
    "case_notes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.String(36), nullable=False, index=True),
    sa.Column("author", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # note, handback, close, transfer
    sa.Column("note_enc", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)

#: Who did what to which case, when: never any message content.
audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("agent", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("case_id", sa.String(36), index=True),
    sa.Column("detail", sa.String(64)),
)
