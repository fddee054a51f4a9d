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

from bot.agents.tables import handoff_requests
from bot.channels.store import addresses
from bot.conversation.steps import UNAVAILABLE
from bot.privacy import Keys
from bot.storage import migrate
from bot.triage.risk import LEVELS, higher

OPEN = "waiting"
#: Statuses of a case that is not closed: in the queue, with an agent, handed back to the bot.
HELD, RETURNED, CLOSED = "held", "returned", "closed"
ACTIVE = (OPEN, HELD, RETURNED)
TRAINING_PREFIX = "train-"


class HandoffQueue(Protocol):
    """What the conversation needs from the agent hub."""

    def escalate(self, conversation_id: str, summary: dict[str, Any], reason: str) -> str:
        """Queue (or update) the open case of a conversation; returns the case id."""


class SqlHandoffQueue:
    def __init__(self, engine: Engine, keys: Keys) -> None:
        self.engine, self.keys = engine, keys
        migrate(engine)

    def escalate(self, conversation_id: str, summary: dict[str, Any], reason: str) -> str:
        now = time.time()
        with self.engine.begin() as db:
            row = db.execute(sa.select(handoff_requests.c.id, handoff_requests.c.risk,
                                       handoff_requests.c.status, handoff_requests.c.reason).where(
                handoff_requests.c.conversation_id == conversation_id,
                handoff_requests.c.status.in_(ACTIVE))).first()
            risk = higher(row.risk, summary["risk"]) if row else summary["risk"]
            if row and reason == UNAVAILABLE:
                reason = row.reason  # why a person is needed (danger, consent) says more than how it came
            values = {"risk": risk, "priority": LEVELS.index(risk), "reason": reason,
                      "summary_enc": self.keys.encrypt(json.dumps({**summary, "risk": risk})),
                      "updated_at": now}
            if row:
                if row.status == RETURNED:  # handed back, and the texter needs a person again
                    values.update(status=OPEN, assigned_to=None, told_waiting_at=None)
                db.execute(handoff_requests.update().where(handoff_requests.c.id == row.id).values(**values))
                return row.id
            case_id = str(uuid.uuid4())
            db.execute(handoff_requests.insert().values(
                id=case_id, conversation_id=conversation_id, status=OPEN, created_at=now,
                training=_training(db, conversation_id), **values))
            return case_id


def _training(db, conversation_id: str) -> bool:
    """Training conversations: a trainer's replay (REST sender ids ``train-...``) or a fictional
    555-01xx number through the Twilio channel (``bot.channels.store.is_training_address``)."""
    if conversation_id.startswith(TRAINING_PREFIX):
        return True
    row = db.execute(sa.select(addresses.c.training).where(
        addresses.c.conversation_id == conversation_id)).first()
    return bool(row and row.training)
