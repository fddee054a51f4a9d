"""Deletion and retention: a texter's "delete" erases their conversation everywhere, and
conversations that are over are purged after ``HOTLINE_RETENTION_DAYS`` (default 30).

Both run in the Rasa server process (``Eraser.run``), where Rasa's lock store and tracker store
are: a conversation is erased under Rasa's lock for it, so no turn runs meanwhile (``hotline
purge`` does the same from outside, with the Redis lock store when there is one). What a
conversation leaves behind, and what becomes of it:

- Rasa's tracker (``events``): deleted (Rasa has no delete API; SQL or in memory).
- the channel's inbox, outbox, delivery events and address (``bot.channels.store``): deleted; a
  number that opted out keeps only its opt-out flag and when it was set, so STOP stays honoured.
- the hub's cases, open or closed, and their notes: deleted. The audit log keeps its rows (who
  did what to which case id, when; never content), and those case ids then point nowhere.
- scripts recorded from its cases (``hotline replay --record``, registry ``recorded_scripts``):
  the file is deleted when it is on this machine, and its registry row.
- a deletion request keeps only the conversation's pseudonymous id (an HMAC of the number) and
  its times: the record that the request was carried out.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Mapping, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.agents.handoff import ACTIVE, CLOSED
from bot.agents.tables import case_notes, handoff_requests
from bot.channels import store as channel
from bot.storage import migrate

logger = logging.getLogger(__name__)
metadata = sa.MetaData()

RETENTION_ENV = "HOTLINE_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 30.0
DAY = 86_400.0
#: How often the Rasa server process purges, and how long after it starts the first time.
PURGE_EVERY, FIRST_PURGE_AFTER = 3600.0, 60.0
#: The count under which a purge reports conversations it left alone (an open case, a message waiting).
KEPT = "conversations kept (open case or message waiting)"

deletion_requests = sa.Table(
    "deletion_requests", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(48), nullable=False, index=True),
    sa.Column("requested_at", sa.Float, nullable=False),
    sa.Column("done_at", sa.Float),
)

#: Scripts written by ``hotline replay --record``: the file to delete with the conversation.
recorded_scripts = sa.Table(
    "recorded_scripts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(48), nullable=False, index=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("recorded_at", sa.Float, nullable=False),
)


def retention_days(env: Mapping[str, str] | None = None) -> float:
    """``HOTLINE_RETENTION_DAYS``, checked: a wrong value must stop the process, not purge early."""
    value = (os.environ if env is None else env).get(RETENTION_ENV, "").strip()
    if not value:
        return DEFAULT_RETENTION_DAYS
    try:
        days = float(value)
    except ValueError:
        days = math.nan
    if not (math.isfinite(days) and days > 0):
        raise ValueError(f"{RETENTION_ENV} must be a number of days above 0 (it is {value!r}); "
                         f"unset it for the default of {DEFAULT_RETENTION_DAYS:g} days")
    return days


# Deletion requests ---------------------------------------------------------------------------

class DeletionRequest(NamedTuple):
    id: int
    conversation_id: str
    requested_at: float


class DeletionRequests:
    """The texter's confirmed "delete", recorded by the action server (which cannot erase Rasa's
    tracker while Rasa holds it in the middle of the turn) and carried out by ``Eraser``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrate(engine)

    def request(self, conversation_id: str) -> None:
        with self.engine.begin() as db:
            db.execute(deletion_requests.insert().values(conversation_id=conversation_id, requested_at=time.time()))

    def pending(self) -> list[DeletionRequest]:
        c = deletion_requests.c
        with self.engine.connect() as db:
            rows = db.execute(sa.select(c.id, c.conversation_id, c.requested_at)
                              .where(c.done_at.is_(None)).order_by(c.id))
            return [DeletionRequest(*row) for row in rows]

    def done(self, request_id: int) -> None:
        with self.engine.begin() as db:
            db.execute(deletion_requests.update().where(deletion_requests.c.id == request_id)
                       .values(done_at=time.time()))


# Recorded scripts ----------------------------------------------------------------------------

def register_recording(engine: Engine, case_id: str, path: Path) -> str:
    """Before a script is written from a case: remember its file under the case's conversation, so
    that deleting the conversation deletes the file. Returns the conversation id; ``LookupError``
    when the case is not in this database (the file must then not be written)."""
    migrate(engine)
    with engine.begin() as db:
        conv = db.execute(sa.select(handoff_requests.c.conversation_id)
                          .where(handoff_requests.c.id == case_id)).scalar()
        if conv is None:
            raise LookupError(case_id)
        db.execute(recorded_scripts.insert().values(conversation_id=conv, path=str(path.resolve()),
                                                    host=socket.gethostname(), recorded_at=time.time()))
    return conv


def _remove_recordings(rows, dry_run: bool) -> int:
    """Deletes the recorded files on this machine; ones made elsewhere are named in the log (a
    file path and host, never content) for the operator to delete there."""
    here, removed = socket.gethostname(), 0
    for row in rows:
        path = Path(row.path)
        if row.host != here:
            logger.warning("recorded script %s is on %s, not this machine: delete %s there", row.id, row.host, path)
        elif path.exists():
            removed += 1
            if not dry_run:
                path.unlink()
    return removed


# Erasing one conversation ------------------------------------------------------------------

def _tracker_store(tracker_store):
    """Rasa's SQL or in-memory tracker store inside its wrappers (the agent's is a
    ``FailSafeTrackerStore`` around an ``AwaitableTrackerStore`` around the configured one)."""
    from rasa.core.tracker_store import InMemoryTrackerStore, SQLTrackerStore

    inner = tracker_store
    while hasattr(inner, "_tracker_store"):
        inner = inner._tracker_store
    if not isinstance(inner, (SQLTrackerStore, InMemoryTrackerStore)):
        raise NotImplementedError(f"cannot delete from {type(inner).__name__}: use an SQL tracker store")
    return inner


def erase_tracker(tracker_store, conversation_id: str, dry_run: bool = False) -> int:
    """Deletes (or counts) a conversation's events in Rasa's tracker store; Rasa has no delete API."""
    from rasa.core.tracker_store import SQLTrackerStore

    inner = _tracker_store(tracker_store)
    if isinstance(inner, SQLTrackerStore):
        with inner.session_scope() as session:
            query = session.query(inner.SQLEvent).filter(inner.SQLEvent.sender_id == conversation_id)
            if dry_run:
                return query.count()
            deleted = query.delete()
            session.commit()
            return deleted
    serialised = inner.store.get(conversation_id) if dry_run else inner.store.pop(conversation_id, None)
    return len(json.loads(serialised)["events"]) if serialised else 0


def tracker_activity(tracker_store, conversation_id: str | None = None) -> dict[str, float]:
    """The time of each conversation's last event in Rasa's tracker store (or of one conversation)."""
    from rasa.core.tracker_store import SQLTrackerStore

    inner = _tracker_store(tracker_store)
    if isinstance(inner, SQLTrackerStore):
        event = inner.SQLEvent
        with inner.session_scope() as session:
            query = session.query(event.sender_id, sa.func.max(event.timestamp)).group_by(event.sender_id)
            if conversation_id is not None:
                query = query.filter(event.sender_id == conversation_id)
            return {sender: at or 0.0 for sender, at in query.all()}
    return {sender: max((e.get("timestamp") or 0.0 for e in json.loads(text)["events"]), default=0.0)
            for sender, text in inner.store.items() if conversation_id in (None, sender)}


def _hub_rows(conv: str) -> list[tuple[sa.Table, sa.sql.ClauseElement]]:
    cases = sa.select(handoff_requests.c.id).where(handoff_requests.c.conversation_id == conv)
    return [(case_notes, case_notes.c.case_id.in_(cases)),
            (handoff_requests, handoff_requests.c.conversation_id == conv),
            (recorded_scripts, recorded_scripts.c.conversation_id == conv)]


def erase_rows(engine: Engine, conv: str, dry_run: bool = False) -> Counter:
    """A conversation's rows in the project's database (channel, cases and notes, recordings) in
    one transaction, with the recorded files on this machine (deleted before it commits, so a
    file that cannot be deleted leaves its row for the next attempt). Counted only in a dry run."""
    with engine.begin() as db:
        files = db.execute(sa.select(recorded_scripts).where(recorded_scripts.c.conversation_id == conv)).all()
        if dry_run:
            counts = Counter(channel.count_conversation(db, conv))
            counts.update({table.name: db.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar()
                           for table, where in _hub_rows(conv)})
        else:
            counts = Counter(channel.erase_conversation(db, conv))
            counts.update({table.name: db.execute(table.delete().where(where)).rowcount
                           for table, where in _hub_rows(conv)})
        counts["recorded script files"] = _remove_recordings(files, dry_run)
    return counts


async def erase_everywhere(engine: Engine, tracker_store, conv: str, dry_run: bool = False) -> Counter:
    """Everything of one conversation: Rasa's tracker, then the project's rows and files."""
    # On Rasa's loop, not a thread: Rasa's SQLite tracker store is bound to its thread.
    counts = Counter({"events": erase_tracker(tracker_store, conv, dry_run)})
    counts.update(await asyncio.to_thread(erase_rows, engine, conv, dry_run))
    return counts


# Retention -----------------------------------------------------------------------------------

def project_activity(engine: Engine, conv: str | None = None) -> tuple[dict[str, float], set[str]]:
    """Each conversation's last activity in the project's database (a message either way, a case
    queued, changed or closed) and the ones never to purge: an active case, a message waiting."""
    with engine.connect() as db:
        last, blocked = channel.channel_activity(db, conv)
        only = handoff_requests.c.conversation_id == conv if conv else sa.true()
        for row_conv, at in db.execute(sa.select(handoff_requests.c.conversation_id,
                                                 sa.func.max(handoff_requests.c.updated_at))
                                       .where(only).group_by(handoff_requests.c.conversation_id)):
            last[row_conv] = max(last.get(row_conv, 0.0), at or 0.0)
        blocked |= {row[0] for row in db.execute(sa.select(handoff_requests.c.conversation_id).where(
            only, handoff_requests.c.status.in_(ACTIVE)))}
        # A recording whose conversation has nothing else left goes with the next purge.
        only = recorded_scripts.c.conversation_id == conv if conv else sa.true()
        for (row_conv,) in db.execute(sa.select(recorded_scripts.c.conversation_id).where(only).distinct()):
            last.setdefault(row_conv, 0.0)
    return last, blocked


def _closed_long_ago(before: float) -> sa.sql.ClauseElement:
    """Cases closed before ``before`` in conversations that nothing holds (no active case, no
    message waiting), though the texter may have written since."""
    cases, other = handoff_requests, handoff_requests.alias("other")
    active = sa.exists().where(other.c.conversation_id == cases.c.conversation_id, other.c.status.in_(ACTIVE))
    return sa.and_(cases.c.status == CLOSED, sa.func.coalesce(cases.c.closed_at, cases.c.updated_at) < before,
                   ~active, ~channel.waiting_or_unsent(cases.c.conversation_id))


def _erase_expired_leftovers(engine: Engine, before: float, dry_run: bool, purged: set[str]) -> Counter:
    """Cases closed long ago in conversations still going on (the conversation's own purge waits
    until it is quiet), with their notes, and delivery events whose message is gone. A dry run
    leaves out the conversations it counted as purged already (``purged``)."""
    closed = _closed_long_ago(before)
    with engine.begin() as db:
        if dry_run:
            notes = case_notes.join(handoff_requests, case_notes.c.case_id == handoff_requests.c.id)
            counts = Counter()
            for table, source in ((handoff_requests, handoff_requests), (case_notes, notes)):
                per_conversation = db.execute(sa.select(handoff_requests.c.conversation_id, sa.func.count())
                                              .select_from(source).where(closed)
                                              .group_by(handoff_requests.c.conversation_id))
                counts[table.name] = sum(n for conv, n in per_conversation if conv not in purged)
        else:
            cases = sa.select(handoff_requests.c.id).where(closed).scalar_subquery()
            counts = Counter({case_notes.name: db.execute(case_notes.delete().where(case_notes.c.case_id.in_(cases))).rowcount})
            counts[handoff_requests.name] = db.execute(handoff_requests.delete().where(closed)).rowcount
        counts[channel.delivery_events.name] += channel.erase_orphan_deliveries(db, before, dry_run)
    return counts


class Purger:
    """The retention purge: every conversation with no active case and no message waiting, quiet
    for ``days`` (no message either way, no case change), is erased like a deletion request; a case
    closed more than ``days`` ago goes even when the texter has written since, unless something
    holds the conversation. Each conversation is checked again under Rasa's lock just before it is
    erased, so a texter who writes at that moment keeps their conversation."""

    def __init__(self, engine: Engine, tracker_store, lock_store, days: float,
                 every: float = PURGE_EVERY, first_after: float = FIRST_PURGE_AFTER) -> None:
        self.engine, self.tracker_store, self.lock_store, self.days = engine, tracker_store, lock_store, days
        self.every, self.first_after = every, first_after

    async def run(self) -> None:
        await asyncio.sleep(self.first_after)
        while True:
            try:
                await self.purge()
            except Exception:  # noqa: BLE001 - a failed purge must not stop the next ones
                logger.exception("retention purge failed; tried again in %.0f s", self.every)
            await asyncio.sleep(self.every)

    async def purge(self, dry_run: bool = False, now: float | None = None) -> Counter:
        """Counts per table of what was deleted (or would be, in a dry run), and conversations."""
        cutoff = (time.time() if now is None else now) - self.days * DAY
        last, blocked = await self._activity(None)
        old = sorted(conv for conv, at in last.items() if at < cutoff)
        counts = Counter({KEPT: sum(conv in blocked for conv in old)})
        due = [conv for conv in old if conv not in blocked]
        for conv in due:
            counts += await self._purge_one(conv, cutoff, dry_run)
        counts += await asyncio.to_thread(_erase_expired_leftovers, self.engine, cutoff, dry_run, set(due))
        logger.info("retention purge (%s days%s): %s", f"{self.days:g}", ", dry run" if dry_run else "",
                    ", ".join(f"{name} {n}" for name, n in sorted(counts.items()) if n) or "nothing")
        return counts

    async def _activity(self, conv: str | None) -> tuple[dict[str, float], set[str]]:
        last, blocked = await asyncio.to_thread(project_activity, self.engine, conv)
        for sender, at in tracker_activity(self.tracker_store, conv).items():
            last[sender] = max(last.get(sender, 0.0), at)
        return last, blocked

    async def _purge_one(self, conv: str, cutoff: float, dry_run: bool) -> Counter:
        if dry_run:
            return await erase_everywhere(self.engine, self.tracker_store, conv, dry_run=True) + Counter(conversations=1)
        async with self.lock_store.lock(conv):
            last, blocked = await self._activity(conv)
            if conv not in last:  # erased meanwhile (a deletion request, another server's purge)
                return Counter()
            if conv in blocked or last[conv] >= cutoff:
                return Counter({KEPT: 1})
            return await erase_everywhere(self.engine, self.tracker_store, conv) + Counter(conversations=1)


# The Rasa server process's job ---------------------------------------------------------------

class Eraser:
    """Carries out deletion requests in the Rasa server process, where the conversation's lock and
    tracker store are, and runs the retention purge every hour. A request waits until the turn
    that asked is answered and its confirmation ("this chat is being deleted") is sent; other
    messages still queued are dropped. Then, under Rasa's lock so no turn runs meanwhile,
    everything of the conversation is erased (``erase_everywhere``)."""

    def __init__(self, requests: DeletionRequests, agent, channel_store=None, poll: float = 2.0,
                 purger: Purger | None = None) -> None:
        self.requests, self.agent, self.channel_store, self.poll = requests, agent, channel_store, poll
        self.purger = purger or Purger(requests.engine, agent.tracker_store, agent.lock_store, retention_days())

    async def run(self) -> None:
        await asyncio.gather(self._carry_out_requests(), self.purger.run())

    async def _carry_out_requests(self) -> None:
        while True:
            for request in await asyncio.to_thread(self.requests.pending):
                try:
                    await self.erase(request)
                except Exception:  # noqa: BLE001 - one failed erasure must not stop the others
                    logger.exception("deletion request %s failed; retried later", request.id)
            await asyncio.sleep(self.poll)

    async def erase(self, request: DeletionRequest) -> bool:
        """Carries out one request; False while the conversation is not ready (tried again later)."""
        conv, store = request.conversation_id, self.channel_store
        if store is not None and not await asyncio.to_thread(store.settle_for_erasure, conv, request.requested_at):
            return False
        async with self.agent.lock_store.lock(conv):
            counts = await erase_everywhere(self.requests.engine, self.agent.tracker_store, conv)
            await asyncio.to_thread(self.requests.done, request.id)
        logger.info("deletion request %s carried out: %d rows, %d files", request.id,
                    sum(n for name, n in counts.items() if name != "recorded script files"),
                    counts["recorded script files"])
        return True


def open_purger(days: float | None = None, env: Mapping[str, str] | None = None) -> Purger:
    """The purger ``hotline purge`` runs: the stack's database, tracker store and (with REDIS_URL)
    the lock store the Rasa servers share; without Redis each conversation is still checked again
    just before it is erased."""
    from rasa.core.lock_store import InMemoryLockStore, LockStore
    from rasa.core.tracker_store import SQLTrackerStore, create_tracker_store
    from rasa.utils.endpoints import EndpointConfig

    from bot.settings import Settings, lock_store, tracker_store
    from bot.storage import database_url, make_engine

    settings = Settings.from_env(dict(os.environ if env is None else env))
    days = retention_days(env) if days is None else days
    trackers = create_tracker_store(EndpointConfig.from_dict(tracker_store(settings)))
    if not isinstance(_tracker_store(trackers), SQLTrackerStore):
        raise RuntimeError("the tracker store did not load (Rasa fell back to memory); check DATABASE_URL and HOTLINE_HOME")
    lock = lock_store(settings)
    locks = LockStore.create(EndpointConfig.from_dict(lock)) if lock else InMemoryLockStore()
    engine = make_engine(database_url(settings))
    migrate(engine)
    return Purger(engine, trackers, locks, days)
