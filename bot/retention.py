"""Deletion requests: a texter who texts "delete" and confirms asks us to erase the conversation.

The conversation records the request here (the action server cannot erase Rasa's tracker while
Rasa holds it in the middle of a turn); ``DeletionRequests.pending`` is what the deletion job
works through, and ``done`` marks a request carried out. Only the conversation's pseudonymous id
(an HMAC of the number, see ``bot.channels.store``) is kept here, never the number or a message.
"""
from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

deletion_requests = sa.Table(
    "deletion_requests", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(48), nullable=False, index=True),
    sa.Column("requested_at", sa.Float, nullable=False),
    sa.Column("done_at", sa.Float),
)


class DeletionRequests:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    def request(self, conversation_id: str) -> None:
        with self.engine.begin() as db:
            db.execute(deletion_requests.insert().values(conversation_id=conversation_id, requested_at=time.time()))

    def pending(self) -> list[tuple[int, str]]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(deletion_requests.c.id, deletion_requests.c.conversation_id)
                              .where(deletion_requests.c.done_at.is_(None)).order_by(deletion_requests.c.id))
            return [(row.id, row.conversation_id) for row in rows]

    def done(self, request_id: int) -> None:
        with self.engine.begin() as db:
            db.execute(deletion_requests.update().where(deletion_requests.c.id == request_id)
                       .values(done_at=time.time()))
