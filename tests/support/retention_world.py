"""A hotline's storage as the stack sets it up (project tables, the encrypted Rasa tracker store,
the channel, the hub, recorded scripts) on SQLite or PostgreSQL, and conversations written into
every table of it through the stores' own APIs: the material for the erasure and purge proofs."""
from __future__ import annotations

import asyncio
import os
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import sqlalchemy as sa
from cryptography.fernet import Fernet, MultiFernet
from rasa.core.lock_store import InMemoryLockStore
from rasa.core.tracker_store import AwaitableTrackerStore, FailSafeTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot.agents.accounts import Accounts
from bot.agents.cases import CaseBook
from bot.agents.handoff import SqlHandoffQueue
from bot.channels.store import ChannelStore, conversation_id
from bot.privacy import Keys
from bot.replay.record import save
from bot.retention import DeletionRequests
from bot.storage import make_engine
from bot.trackers import EncryptedSQLTrackerStore
from tests.support.privacy_scan import Trace, census
from tests.test_channel import new_database

HOTLINE = "+15145550000"


@dataclass
class World:
    url: str
    tracker_url: str
    home: Path
    keys: Keys
    engine: sa.engine.Engine
    trackers: EncryptedSQLTrackerStore
    channel: ChannelStore
    requests: DeletionRequests
    queue: SqlHandoffQueue
    book: CaseBook
    accounts: Accounts
    locks: InMemoryLockStore
    data_key: str

    def engines(self) -> list[sa.engine.Engine]:
        """The databases to scan: one on PostgreSQL, the project's and the trackers' on SQLite."""
        return [self.engine] if self.url == self.tracker_url else [self.engine, self.trackers.engine]

    def agent(self):
        """What the Eraser gets from Rasa's agent: its lock store, and the tracker store wrapped as
        Rasa wraps it (``FailSafeTrackerStore`` around ``AwaitableTrackerStore``)."""
        return SimpleNamespace(lock_store=self.locks,
                               tracker_store=FailSafeTrackerStore(AwaitableTrackerStore(self.trackers)))

    def env(self) -> dict[str, str]:
        """The environment a ``hotline`` command needs to use this storage and these keys."""
        env = {**os.environ, "HOTLINE_HOME": str(self.home), "HOTLINE_HASH_KEY": self.keys.hash_key.decode(),
               "HOTLINE_DATA_KEYS": self.data_key}
        env.pop("DATABASE_URL", None)
        if self.url.startswith("postgresql"):
            env["DATABASE_URL"] = self.url
        return env


@contextmanager
def world(kind: str, home: Path) -> Iterator[World]:
    """The storage of a stack whose HOTLINE_HOME is ``home`` (SQLite) or on a new PostgreSQL database."""
    with new_database(kind) as url:
        url = url or f"sqlite:///{home / 'hotline.db'}"
        tracker_url = url if kind == "postgresql" else f"sqlite:///{home / 'trackers.db'}"
        data_key = Fernet.generate_key()
        keys = Keys(secrets.token_hex(32).encode(), MultiFernet([Fernet(data_key)]))
        engine = make_engine(url)
        parsed = sa.engine.make_url(tracker_url)
        trackers = EncryptedSQLTrackerStore(Domain.empty(), dialect=parsed.drivername, host=parsed.host,
                                            port=parsed.port, db=parsed.database, username=parsed.username,
                                            keys=keys)
        made = World(url, tracker_url, home, keys, engine, trackers, ChannelStore(engine, keys, 30),
                     DeletionRequests(engine), SqlHandoffQueue(engine, keys), CaseBook(engine, keys),
                     Accounts(engine), InMemoryLockStore(), data_key.decode())
        try:
            yield made
        finally:
            trackers.engine.dispose()
            engine.dispose()


class Texter:
    """One texter's conversation, written the way the stack writes it; ``trace`` is everything that
    identifies it or repeats its words (each text carries a tag so two texters never share one)."""

    def __init__(self, world: World, number: str, whatsapp: bool = False) -> None:
        self.world, self.number = world, number
        self.address = f"whatsapp:{number}" if whatsapp else number
        self.conv = conversation_id(world.keys, self.address)
        self.tag = secrets.token_hex(3)
        self.events: list = []
        self.cases: list[str] = []
        self.trace = Trace(self.conv, world.keys.address_key(self.address), number, [])
        agent = f"agent-{self.tag}"
        world.accounts.add(agent, "agent")
        self.agent = world.accounts.named(agent)

    def text(self, words: str) -> str:
        text = f"{words} ({self.tag})"
        self.trace.texts.append(text)
        return text

    def says(self, words: str, replies: list[str], now: float | None = None, media: bool = False,
             during_turn=None) -> None:
        """A texter's message through the channel and Rasa's tracker, answered and delivered."""
        now = time.time() if now is None else now
        body = self.text(words)
        sid = f"SM{secrets.token_hex(16)}"
        self.trace.sids.append(sid)
        media_list = [{"url": self.text("https://api.twilio.com/media/ME1"), "content_type": "image/jpeg"}] if media else []
        assert self.world.channel.accept(sid, self.address, HOTLINE, body, media_list, now=now)[0]
        texts = [self.text(reply) for reply in replies]
        self.events += [ActionExecuted("action_listen", timestamp=now),
                        UserUttered(body, {"name": "describe_situation", "confidence": 0.9}, timestamp=now),
                        SlotSet("indicator_evidence", [{"indicator": "DOC", "text": body}], timestamp=now)]
        self.events += [BotUttered(text, timestamp=now) for text in texts]
        asyncio.run(self.world.trackers.save(DialogueStateTracker.from_events(self.conv, self.events)))
        [message] = self.world.channel.claim_inbound(now=now)
        if during_turn:
            during_turn()
        self.world.channel.complete(message, texts, now=None if during_turn else now)  # the turn ends after it

    def send_all(self, now: float | None = None) -> None:
        """The sender's part: every queued message sent, and Twilio's callback recorded."""
        now = time.time() if now is None else now
        for item in self.world.channel.claim_outgoing(50, now=now):
            sid = f"SM{secrets.token_hex(16)}"
            self.trace.sids.append(sid)
            self.world.channel.mark_outgoing(item.id, "sent", sid)
            self.world.channel.record_delivery(sid, "delivered", None, now=now)

    def escalates(self) -> str:
        """The conversation queues its case (or updates the open one) with the texter's words."""
        transcript = [{"from": "texter", "text": text} for text in self.trace.texts]
        case = self.world.queue.escalate(self.conv, {"risk": "medium", "transcript": transcript,
                                                     "indicators": [{"id": "DOC", "evidence": transcript[:1]}]},
                                         "consent")
        if case not in self.cases:
            self.cases.append(case)
        return case

    def agent_works(self, case: str, now: float | None = None, close: bool = True) -> None:
        """An agent takes the case, notes, replies (sent and delivered), and closes it with a note."""
        book, agent = self.world.book, self.agent
        book.take(agent, case)
        book.add_note(agent, case, self.text("Texter says the employer holds her passport"))
        self.world.channel.enqueue(self.conv, f"agent:{case}:{self.tag}", "agent",
                                   self.text("I am a hotline worker; are you safe to talk?"), now=now)
        self.send_all(now)
        if close:
            book.close(agent, case, "referred", self.text("Referred to the legal clinic"))

    def recorded(self, case: str) -> Path:
        """A trainer recorded the case as a script (``hotline replay --record --out``)."""
        path = self.world.home / "recorded" / f"{case}.yml"
        save(self.world.engine, case, f"turns:\n  - texter: {self.trace.texts[0]}\n", path)
        return path

    def whole_conversation(self, now: float | None = None, reopen: bool = True) -> None:
        """Into every table: messages both ways with a photo, deliveries, a case worked and closed
        by an agent with notes, a recorded script, then (``reopen``) a new open case."""
        self.says("el patrón guarda mi pasaporte y no me paga", ["Gracias por escribir. ¿Está a salvo ahora?"],
                  now=now, media=True)
        self.send_all(now)
        case = self.escalates()
        self.agent_works(case, now)
        self.recorded(case)
        if reopen:
            self.says("he came back and locked the door", ["Someone from the hotline will text you soon."], now=now)
            self.send_all(now)
            self.escalates()


def age(world: World, trace: Trace, days: float) -> None:
    """Time passes for one conversation: every time in every row that holds something of it
    (found by the same scan as the proofs) moves ``days`` into the past."""
    seconds = days * 86_400
    for engine in world.engines():
        inspector = sa.inspect(engine)
        found = census([engine], world.keys, trace)
        for name, table_rows in found.items():
            table = sa.Table(name, sa.MetaData(), autoload_with=engine)
            key = inspector.get_pk_constraint(name)["constrained_columns"]
            times = {c.name: c - seconds for c in table.columns if isinstance(c.type, sa.Float)}
            columns = [c.name for c in table.columns]
            with engine.begin() as db:
                for row in table_rows:
                    values = dict(zip(columns, row))
                    db.execute(table.update().where(*(table.c[k] == values[k] for k in key)).values(**times))
