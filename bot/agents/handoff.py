"""The handoff interface: how the conversation passes a case to the agent hub.

The conversation (actions/) calls ``HandoffQueue.escalate`` with a case summary; the agent hub
reads the waiting cases. ``SqlHandoffQueue`` keeps them in the project's database (SQLite by
default, PostgreSQL via DATABASE_URL), so the action server and the hub need no direct connection
and a case survives a restart of either. One open case per conversation: escalating again updates
it (new messages, a higher risk), it never creates a second case.

The summary holds the texter's words, so it is stored encrypted (``bot.privacy.Keys``).
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.privacy import Keys
from bot.triage.risk import LEVELS, higher

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
)

OPEN = "waiting"


class HandoffQueue(Protocol):
    """What the conversation needs from the agent hub."""

    def escalate(self, conversation_id: str, summary: dict[str, Any], reason: str) -> str:
        """Queue (or update) the open case of a conversation; returns the case id."""


class SqlHandoffQueue:
    def __init__(self, engine: Engine, keys: Keys) -> None:
        self.engine, self.keys = engine, keys
        metadata.create_all(engine)

    def escalate(self, conversation_id: str, summary: dict[str, Any], reason: str) -> str:
        now = time.time()
        with self.engine.begin() as db:
            row = db.execute(sa.select(handoff_requests.c.id, handoff_requests.c.risk).where(
                handoff_requests.c.conversation_id == conversation_id,
                handoff_requests.c.status == OPEN)).first()
            risk = higher(row.risk, summary["risk"]) if row else summary["risk"]
            values = {"risk": risk, "priority": LEVELS.index(risk), "reason": reason,
                      "summary_enc": self.keys.encrypt(json.dumps({**summary, "risk": risk})),
                      "updated_at": now}
            if row:
                db.execute(handoff_requests.update().where(handoff_requests.c.id == row.id).values(**values))
                return row.id
            case_id = str(uuid.uuid4())
            db.execute(handoff_requests.insert().values(
                id=case_id, conversation_id=conversation_id, status=OPEN, created_at=now, **values))
            return case_id
