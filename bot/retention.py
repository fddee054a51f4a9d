"""Deletion requests: a texter who texts "delete" and confirms asks us to erase the conversation.

The conversation records the request here (the action server cannot erase Rasa's tracker while
Rasa holds it in the middle of a turn); ``DeletionRequests.pending`` is what the deletion job
works through, and ``done`` marks a request carried out. Only the conversation's pseudonymous id
(an HMAC of the number, see ``bot.channels.store``) is kept here, never the number or a message.
"""
from __future__ import annotations

import asyncio
import logging
import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.storage import migrate

logger = logging.getLogger(__name__)
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
        migrate(engine)

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


class Eraser:
    """Carries out deletion requests in the Rasa server process, where the conversation's lock
    and tracker store are: waits until the conversation has nothing left to process or send (the
    confirmation "this chat is being deleted" goes out first), takes Rasa's lock for it so no turn
    runs meanwhile, then deletes its tracker, its channel messages and its open handoff case."""

    def __init__(self, requests: DeletionRequests, agent, channel_store=None, poll: float = 2.0) -> None:
        self.requests, self.agent, self.channel_store, self.poll = requests, agent, channel_store, poll

    async def run(self) -> None:
        while True:
            for request_id, conversation_id in await asyncio.to_thread(self.requests.pending):
                try:
                    await self.erase(request_id, conversation_id)
                except Exception:  # noqa: BLE001 - one failed erasure must not stop the others
                    logger.exception("deletion request %s failed; retried later", request_id)
            await asyncio.sleep(self.poll)

    async def erase(self, request_id: int, conversation_id: str) -> bool:
        store = self.channel_store
        if store is not None and await asyncio.to_thread(store.busy, conversation_id):
            return False
        async with self.agent.lock_store.lock(conversation_id):
            # On Rasa's loop, not a thread: Rasa's SQLite tracker store is bound to its thread.
            erase_tracker(self.agent.tracker_store, conversation_id)
            if store is not None:
                await asyncio.to_thread(store.erase, conversation_id)
            await asyncio.to_thread(erase_cases, self.requests.engine, conversation_id)
            await asyncio.to_thread(self.requests.done, request_id)
        return True


def erase_tracker(tracker_store, conversation_id: str) -> None:
    """Deletes a conversation from Rasa's tracker store (SQL or in memory; Rasa has no delete API)."""
    from rasa.core.tracker_store import InMemoryTrackerStore, SQLTrackerStore

    inner = getattr(tracker_store, "_tracker_store", tracker_store)  # Rasa's AwaitableTrackerStore
    if isinstance(inner, SQLTrackerStore):
        with inner.session_scope() as session:
            session.query(inner.SQLEvent).filter(inner.SQLEvent.sender_id == conversation_id).delete()
            session.commit()
    elif isinstance(inner, InMemoryTrackerStore):
        inner.store.pop(conversation_id, None)
    else:
        raise NotImplementedError(f"cannot delete from {type(inner).__name__}")


def erase_cases(engine: Engine, conversation_id: str) -> None:
    """Deletes the conversation's cases and their notes (the audit log keeps only case ids)."""
    from bot.agents.tables import case_notes, handoff_requests

    cases = sa.select(handoff_requests.c.id).where(handoff_requests.c.conversation_id == conversation_id)
    with engine.begin() as db:
        db.execute(case_notes.delete().where(case_notes.c.case_id.in_(cases)))
        db.execute(handoff_requests.delete().where(handoff_requests.c.conversation_id == conversation_id))
