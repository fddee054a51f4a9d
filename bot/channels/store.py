"""The channel's persisted state: addresses, inbox, outbox and delivery events.

Why a database and not memory: Twilio retries webhooks, processes die, and several Rasa servers may
share the traffic. Every inbound message is written before the webhook answers (so nothing accepted
is lost), its ``MessageSid`` is unique (so a retry is never processed twice), and the replies of a
turn are written in the same transaction that marks the turn done, under keys derived from the
inbound ``MessageSid`` (so a turn processed again after a crash cannot queue its replies twice).

Ordering: a message (inbound or outbound) is only claimed when no earlier message of the same
conversation is still waiting or in progress. Claims carry a lease, renewed while the process holding
them polls, so the work of a process that died is taken over after ``lease`` seconds, and never
while it still runs.

Privacy: phone numbers are stored as an HMAC lookup key plus a Fernet-encrypted copy (needed to
reply); bodies and media URLs are encrypted (see ``bot.privacy``).
"""
from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Callable, TypeVar
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from bot.channels.config import WHATSAPP_WINDOW
from bot.privacy import Keys
from bot.storage import migrate

T = TypeVar("T")
metadata = sa.MetaData()

addresses = sa.Table(
    "channel_addresses", metadata,
    sa.Column("conversation_id", sa.String(48), primary_key=True),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("address_enc", sa.Text, nullable=False),
    sa.Column("hotline_number", sa.String(64), nullable=False),
    sa.Column("opted_out", sa.Boolean, nullable=False, default=False),
    sa.Column("opted_out_at", sa.Float),
    sa.Column("last_inbound_at", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("training", sa.Boolean, nullable=False, server_default=sa.false()),
)

inbound = sa.Table(
    "channel_inbound", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sid", sa.String(64), nullable=False, unique=True),
    sa.Column("conversation_id", sa.String(48), nullable=False, index=True),
    sa.Column("body_enc", sa.Text, nullable=False),
    sa.Column("media_enc", sa.Text),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("claimed_by", sa.String(40)),
    sa.Column("claimed_at", sa.Float),
    sa.Column("done_at", sa.Float),
)

outbox = sa.Table(
    "channel_outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(128), nullable=False, unique=True),
    sa.Column("conversation_id", sa.String(48), nullable=False, index=True),
    sa.Column("origin", sa.String(16), nullable=False),
    sa.Column("body_enc", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("claimed_by", sa.String(40)),
    sa.Column("claimed_at", sa.Float),
    sa.Column("twilio_sid", sa.String(64), index=True),
    sa.Column("error_code", sa.Integer),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

delivery_events = sa.Table(
    "channel_delivery_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("twilio_sid", sa.String(64), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error_code", sa.Integer),
    sa.Column("at", sa.Float, nullable=False),
)

WAITING = ("pending", "processing")
UNSENT = ("queued", "sending")
PROBLEMS = ("failed", "undelivered", "opted_out", "outside_window")
# Twilio's delivery states in the order they happen: a late "sent" never overwrites "delivered".
DELIVERY_RANK = {"queued": 0, "sending": 1, "accepted": 2, "sent": 3, "delivered": 4, "read": 5,
                 "undelivered": 6, "failed": 6}


@dataclass
class Inbound:
    id: int
    sid: str
    conversation_id: str
    channel: str
    body: str
    media: list[dict] = field(default_factory=list)
    attempts: int = 0
    received_at: float = 0.0


@dataclass
class Outgoing:
    id: int
    conversation_id: str
    channel: str
    to: str
    from_: str
    body: str
    attempts: int
    opted_out: bool
    last_inbound_at: float


def channel_of(conv: str) -> str:
    """``whatsapp`` or ``sms``, from a conversation id made by ``conversation_id``."""
    return "whatsapp" if conv.startswith("wa-") else "sms"


#: Fictional numbers (North America's 555-0100 to 555-0199) are trainers' test texters: their
#: cases are training cases, shown only to trainers and supervisors.
TRAINING_ADDRESS = re.compile(r"^(whatsapp:)?\+1\d{3}55501\d{2}$")


def is_training_address(address: str) -> bool:
    return bool(TRAINING_ADDRESS.match(address))


def random_training_number() -> str:
    """A fictional number of the training range (``TRAINING_ADDRESS``): replay and practice texters."""
    return f"+1{random.randint(201, 989)}55501{random.randint(0, 99):02d}"


def upsert(db, table: sa.Table):
    """``INSERT ... ON CONFLICT`` for the database in use (PostgreSQL and SQLite both have it)."""
    dialect = postgresql if db.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def conversation_id(keys: Keys, address: str) -> str:
    """Rasa's sender id for an address: channel + keyed hash, so trackers never hold the number."""
    prefix = "wa" if address.startswith("whatsapp:") else "sms"
    return f"{prefix}-{keys.address_key(address)[:40]}"


class ChannelStore:
    """Synchronous operations; async code calls them through ``call`` (the store's own thread)."""

    def __init__(self, engine: Engine, keys: Keys, lease: float = 30.0) -> None:
        self.engine = engine
        # SQLite has one writer at a time, and a writer that finds the file locked sleeps in
        # growing steps (up to 100 ms): one thread for all of this process's queries avoids that.
        self.executor = ThreadPoolExecutor(1 if engine.dialect.name == "sqlite" else 4,
                                           thread_name_prefix="channel-db")
        self.keys = keys
        self.lease = lease
        self.worker = uuid.uuid4().hex
        self.expired_at = {"channel_inbound": 0.0, "channel_outbox": 0.0}
        self.renewed_at = {"channel_inbound": 0.0, "channel_outbox": 0.0}
        migrate(engine)

    async def call(self, method: Callable[..., T], *args) -> T:
        """Run one of this store's methods on its database thread, from async code."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, partial(method, *args))

    # Inbound -------------------------------------------------------------------------------

    def accept(self, sid: str, address: str, hotline_number: str, body: str, media: list[dict],
               now: float | None = None) -> tuple[bool, str]:
        """Persist an inbound message once. Returns (new, conversation_id); a repeat is not new."""
        now = time.time() if now is None else now
        conv = conversation_id(self.keys, address)
        with self.engine.begin() as db:
            if db.execute(sa.select(inbound.c.id).where(inbound.c.sid == sid)).first():
                return False, conv
            self._touch_address(db, conv, address, hotline_number, now)
            stored = db.execute(upsert(db, inbound).values(
                sid=sid, conversation_id=conv, body_enc=self.keys.encrypt(body),
                media_enc=self.keys.encrypt(json.dumps(media)) if media else None,
                received_at=now, status="pending", attempts=0, next_attempt_at=now,
            ).on_conflict_do_nothing(index_elements=[inbound.c.sid])).rowcount
        return bool(stored), conv

    def _touch_address(self, db, conv: str, address: str, hotline_number: str, now: float) -> None:
        """One statement, so that two replicas storing a new texter's first messages at the same
        moment both succeed (an update-then-insert failed one of them with a duplicate key)."""
        latest = {"last_inbound_at": now, "hotline_number": hotline_number,
                  "address_enc": self.keys.encrypt(address)}
        db.execute(upsert(db, addresses).values(
            conversation_id=conv, channel=channel_of(conv), opted_out=False, created_at=now,
            training=is_training_address(address), **latest,
        ).on_conflict_do_update(index_elements=[addresses.c.conversation_id], set_=latest))

    def claim_inbound(self, limit: int = 20, now: float | None = None) -> list[Inbound]:
        """Claim the oldest waiting message of each conversation that has nothing earlier in flight."""
        now = time.time() if now is None else now
        with self.engine.begin() as db:
            claimed = self._claim(db, inbound, WAITING, limit, now)
            rows = db.execute(sa.select(inbound).where(inbound.c.id.in_(claimed))
                              .order_by(inbound.c.id)).all() if claimed else []
        return [self._inbound(row) for row in rows]

    def _claim(self, db, table: sa.Table, in_flight: tuple[str, str], limit: int,
               now: float) -> list[int]:
        """Ids newly claimed by this process: waiting, due, and first in their conversation."""
        waiting, working = in_flight
        self._renew_claims(db, table, working, now)
        self._expire_claims(db, table, waiting, working, now)
        if limit <= 0:
            return []
        earlier = table.alias("earlier")
        blocked = sa.exists().where(sa.and_(
            earlier.c.conversation_id == table.c.conversation_id, earlier.c.id < table.c.id,
            earlier.c.status.in_(in_flight)))
        query = (sa.select(table.c.id).where(table.c.status == waiting,
                                             table.c.next_attempt_at <= now, ~blocked)
                 .order_by(table.c.id).limit(limit))
        claimed = []
        for (row_id,) in db.execute(query).all():
            if db.execute(table.update().where(table.c.id == row_id, table.c.status == waiting)
                          .values(status=working, claimed_by=self.worker, claimed_at=now)).rowcount:
                claimed.append(row_id)
        return claimed

    def _renew_claims(self, db, table: sa.Table, working: str, now: float) -> None:
        """This process is polling, so it is alive: the work it holds keeps its lease.

        Without renewal a turn slower than the lease (a slow action server, Rasa waiting for a
        conversation's lock held by a replica that died) was taken over while it still ran, by
        another replica or by this one, and ran twice. Renewed every third of a lease.
        """
        if now - self.renewed_at[table.name] < self.lease / 3:
            return
        self.renewed_at[table.name] = now
        db.execute(table.update().where(table.c.claimed_by == self.worker, table.c.status == working)
                   .values(claimed_at=now))

    def _expire_claims(self, db, table: sa.Table, back_to: str, working: str, now: float) -> None:
        """Work claimed by a process that stopped (lease over) goes back to the queue.

        Checked at most every tenth of a lease: each check is a write, and writes wait for each
        other (SQLite) while webhooks are being accepted.
        """
        if now - self.expired_at[table.name] < self.lease / 10:
            return
        self.expired_at[table.name] = now
        # A turn whose process died counts as an attempt: it may have reached Rasa's tracker (the
        # dispatcher then looks there first), and a message that kills the process every time is
        # left for an agent after HOTLINE_TURN_ATTEMPTS instead of taking it down forever.
        counted = {"attempts": table.c.attempts + 1} if table is inbound else {}
        db.execute(table.update().where(
            table.c.status == working, table.c.claimed_at < now - self.lease).values(
            status=back_to, claimed_by=None, **counted))

    def _inbound(self, row) -> Inbound:
        media = self.keys.decrypt(row.media_enc)
        return Inbound(id=row.id, sid=row.sid, conversation_id=row.conversation_id,
                       channel=channel_of(row.conversation_id),
                       body=self.keys.decrypt(row.body_enc) or "",
                       media=json.loads(media) if media else [], attempts=row.attempts,
                       received_at=row.received_at)

    def complete(self, message: Inbound, replies: list[str], status: str = "done",
                 now: float | None = None) -> int:
        """Mark a turn done and queue its replies in one transaction; returns replies queued."""
        now = time.time() if now is None else now
        with self.engine.begin() as db:
            queued = self._enqueue_replies(db, message, "in", replies, now)
            db.execute(inbound.update().where(inbound.c.id == message.id).values(
                status=status, done_at=now, claimed_by=None))
        return queued

    def retry_inbound(self, message: Inbound, delay: float, max_attempts: int,
                      now: float | None = None) -> bool:
        """After a failed turn: back to the queue after ``delay``, or ``failed``. True if retried."""
        now = time.time() if now is None else now
        attempts = message.attempts + 1
        status = "pending" if attempts < max_attempts else "failed"
        with self.engine.begin() as db:
            db.execute(inbound.update().where(inbound.c.id == message.id).values(
                status=status, attempts=attempts, next_attempt_at=now + delay, claimed_by=None))
        return status == "pending"

    def hold_inbound(self, message: Inbound, delay: float, replies: list[str],
                     now: float | None = None) -> int:
        """The turn cannot run now for a reason that is not the message's (the bot's action server
        or the database is down): back to the queue after ``delay`` without counting an attempt,
        with what the texter is told meanwhile queued once (keyed by the message). Returns the
        replies newly queued."""
        now = time.time() if now is None else now
        with self.engine.begin() as db:
            queued = self._enqueue_replies(db, message, "hold", replies, now)
            db.execute(inbound.update().where(inbound.c.id == message.id).values(
                status="pending", next_attempt_at=now + delay, claimed_by=None))
        return queued

    def _enqueue_replies(self, db: Connection, message: Inbound, kind: str, replies: list[str],
                         now: float) -> int:
        """The bot's replies to one inbound message, each keyed by it, so a repeat queues nothing."""
        return sum(self._enqueue(db, message.conversation_id, f"{kind}:{message.sid}:{index}", "bot", text, now)
                   for index, text in enumerate(replies))

    # Outbox --------------------------------------------------------------------------------

    def enqueue(self, conv: str, key: str, origin: str, text: str, now: float | None = None) -> bool:
        """Queue a message (e.g. an agent's reply) once per key. True if newly queued."""
        now = time.time() if now is None else now
        with self.engine.begin() as db:
            if not db.execute(sa.select(addresses.c.conversation_id).where(
                    addresses.c.conversation_id == conv)).first():
                raise KeyError("no texter has written from this conversation")
            return bool(self._enqueue(db, conv, key, origin, text, now))

    def _enqueue(self, db, conv: str, key: str, origin: str, text: str, now: float) -> int:
        if db.execute(sa.select(outbox.c.id).where(outbox.c.key == key)).first():
            return 0
        db.execute(outbox.insert().values(
            key=key, conversation_id=conv, origin=origin, body_enc=self.keys.encrypt(text),
            status="queued", attempts=0, next_attempt_at=now, created_at=now, updated_at=now))
        return 1

    def claim_outgoing(self, limit: int = 20, now: float | None = None) -> list[Outgoing]:
        """Claim the oldest unsent message of each conversation with nothing earlier unsent."""
        now = time.time() if now is None else now
        with self.engine.begin() as db:
            claimed = self._claim(db, outbox, UNSENT, limit, now)
            rows = db.execute(
                sa.select(outbox, addresses).join(
                    addresses, addresses.c.conversation_id == outbox.c.conversation_id)
                .where(outbox.c.id.in_(claimed)).order_by(outbox.c.id)).all() if claimed else []
        return [Outgoing(id=row.id, conversation_id=row.conversation_id, channel=row.channel,
                         to=self.keys.decrypt(row.address_enc) or "", from_=row.hotline_number,
                         body=self.keys.decrypt(row.body_enc) or "", attempts=row.attempts,
                         opted_out=row.opted_out, last_inbound_at=row.last_inbound_at)
                for row in rows]

    def mark_outgoing(self, message_id: int, status: str, twilio_sid: str | None = None,
                      error_code: int | None = None, retry_at: float | None = None) -> None:
        """Record the result of a send attempt; ``retry_at`` puts it back in the queue."""
        now = time.time()
        values = {"status": status, "updated_at": now, "claimed_by": None,
                  "attempts": outbox.c.attempts + 1}
        if twilio_sid:
            values["twilio_sid"] = twilio_sid
        if error_code is not None:
            values["error_code"] = error_code
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        with self.engine.begin() as db:
            db.execute(outbox.update().where(outbox.c.id == message_id).values(**values))

    def record_delivery(self, twilio_sid: str, status: str, error_code: int | None,
                        now: float | None = None) -> bool:
        """A status callback: keep the event and move the message forward (never backward)."""
        now = time.time() if now is None else now
        with self.engine.begin() as db:
            db.execute(delivery_events.insert().values(
                twilio_sid=twilio_sid, status=status, error_code=error_code, at=now))
            row = db.execute(sa.select(outbox.c.id, outbox.c.status).where(
                outbox.c.twilio_sid == twilio_sid)).first()
            if row is None:
                return False
            if DELIVERY_RANK.get(status, -1) > DELIVERY_RANK.get(row.status, -1):
                db.execute(outbox.update().where(outbox.c.id == row.id).values(
                    status=status, error_code=error_code, updated_at=now))
        return True

    def problems(self, since: float = 0.0) -> list[dict]:
        """Messages that did not reach the texter, for the agent hub: no content, only facts."""
        query = (sa.select(outbox.c.id, outbox.c.conversation_id, outbox.c.origin, outbox.c.status,
                           outbox.c.error_code, outbox.c.updated_at)
                 .where(outbox.c.status.in_(PROBLEMS), outbox.c.updated_at >= since)
                 .order_by(outbox.c.id))
        with self.engine.connect() as db:
            return [dict(row._mapping) for row in db.execute(query)]

    def window_remaining(self, conv: str, window: float = WHATSAPP_WINDOW,
                         now: float | None = None) -> float | None:
        """Seconds left to send free-form WhatsApp messages (0 when closed); None for SMS."""
        now = time.time() if now is None else now
        with self.engine.connect() as db:
            row = db.execute(sa.select(addresses.c.channel, addresses.c.last_inbound_at).where(
                addresses.c.conversation_id == conv)).first()
        if row is None or row.channel != "whatsapp":
            return None
        return max(0.0, row.last_inbound_at + window - now)

    def inbound_since(self, after_id: int, conversations: list[str]) -> list[Inbound]:
        """Texter messages stored after ``after_id`` in these conversations, oldest first (the hub
        shows them live to the agent who holds the conversation)."""
        if not conversations:
            return []
        query = (sa.select(inbound).where(inbound.c.id > after_id, inbound.c.conversation_id.in_(conversations))
                 .order_by(inbound.c.id))
        with self.engine.connect() as db:
            return [self._inbound(row) for row in db.execute(query)]

    def last_inbound_id(self) -> int:
        with self.engine.connect() as db:
            return db.execute(sa.select(sa.func.max(inbound.c.id))).scalar() or 0

    # Deletion ------------------------------------------------------------------------------

    def settle_for_erasure(self, conv: str, requested_at: float) -> bool:
        """Whether a conversation whose texter asked for deletion at ``requested_at`` may be erased
        now. The replies of the turn that asked (the deletion confirmation) go out first; every
        other message still queued is dropped, since the texter asked for everything to go, and a
        message stuck in retries must not hold the confirmation back. Not yet while a turn is
        waiting or running (its replies are not queued yet) or a message is being sent."""
        with self.engine.begin() as db:
            if db.execute(sa.select(inbound.c.id).where(
                    inbound.c.conversation_id == conv, inbound.c.status.in_(WAITING)).limit(1)).first():
                return False
            done = sa.select(inbound.c.sid).where(inbound.c.conversation_id == conv, inbound.c.done_at.isnot(None))
            # The first turn that ended after the request; else (clocks of two machines apart) the last.
            asking = (db.execute(done.where(inbound.c.done_at >= requested_at).order_by(inbound.c.id).limit(1)).scalar()
                      or db.execute(done.order_by(inbound.c.id.desc()).limit(1)).scalar())
            confirmation = outbox.c.key.startswith(f"in:{asking}:", autoescape=True) if asking else sa.false()
            db.execute(outbox.delete().where(outbox.c.conversation_id == conv, outbox.c.status == "queued",
                                             sa.not_(confirmation)))
            unsent = db.execute(sa.select(outbox.c.id).where(
                outbox.c.conversation_id == conv, outbox.c.status.in_(UNSENT)).limit(1)).first()
        return unsent is None

    def erase(self, conv: str) -> dict[str, int]:
        """Deletes every message of a conversation, its delivery events and its address. A number
        that opted out keeps only its opt-out (keyed hash, no number), so STOP stays honoured."""
        with self.engine.begin() as db:
            return erase_conversation(db, conv)

    # Opt-out -------------------------------------------------------------------------------

    def set_opted_out(self, conv: str, opted_out: bool, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.engine.begin() as db:
            db.execute(addresses.update().where(addresses.c.conversation_id == conv).values(
                opted_out=opted_out, opted_out_at=now if opted_out else None))

    def is_opted_out(self, conv: str) -> bool:
        with self.engine.connect() as db:
            row = db.execute(sa.select(addresses.c.opted_out).where(
                addresses.c.conversation_id == conv)).first()
        return bool(row and row.opted_out)


# Erasure and retention ---------------------------------------------------------------------
# Module functions on a connection, so the deletion job and the retention purge delete a
# conversation's channel rows with its cases in one transaction, and a dry run counts the same rows.

def conversation_rows(conv: str) -> list[tuple[sa.Table, sa.sql.ClauseElement]]:
    """The channel's rows of one conversation, in an order they can be deleted in (delivery events
    are found through the outbox's Twilio ids). An opted-out address is not among them: it is
    emptied instead (``forget_opted_out``)."""
    sids = sa.select(outbox.c.twilio_sid).where(outbox.c.conversation_id == conv, outbox.c.twilio_sid.isnot(None))
    return [
        (delivery_events, delivery_events.c.twilio_sid.in_(sids)),
        (outbox, outbox.c.conversation_id == conv),
        (inbound, inbound.c.conversation_id == conv),
        (addresses, sa.and_(addresses.c.conversation_id == conv, addresses.c.opted_out.is_(False))),
    ]


_opted_out_at = sa.func.coalesce(addresses.c.opted_out_at, 0.0)


def _opted_out_with_content(conv: str) -> sa.sql.ClauseElement:
    return sa.and_(addresses.c.conversation_id == conv, addresses.c.opted_out.is_(True),
                   sa.or_(addresses.c.address_enc != "", addresses.c.hotline_number != "",
                          addresses.c.last_inbound_at != _opted_out_at))


def count_conversation(db, conv: str) -> dict[str, int]:
    """What ``erase_conversation`` would delete, per table (a dry run)."""
    counts = {table.name: db.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar()
              for table, where in conversation_rows(conv)}
    counts["channel_addresses (opt-out kept)"] = db.execute(
        sa.select(sa.func.count()).select_from(addresses).where(_opted_out_with_content(conv))).scalar()
    return counts


def erase_conversation(db, conv: str) -> dict[str, int]:
    """Deletes the conversation's channel rows; an opted-out address keeps only its flag and when it
    was set (no number, no hotline number, no time of the last message). Counts per table."""
    counts = {table.name: db.execute(table.delete().where(where)).rowcount for table, where in conversation_rows(conv)}
    counts["channel_addresses (opt-out kept)"] = db.execute(
        addresses.update().where(_opted_out_with_content(conv)).values(
            address_enc="", hotline_number="", last_inbound_at=_opted_out_at,
            created_at=_opted_out_at)).rowcount
    return counts


def channel_activity(db, conv: str | None = None) -> tuple[dict[str, float], set[str]]:
    """Conversations with channel rows (all, or only ``conv``): when the last message in either
    direction was received, answered, sent or reported on, and which ones have a message still
    to process or to send (never purged). An address emptied after an opt-out holds nothing to
    purge and is left out."""
    def only(table: sa.Table):
        return table.c.conversation_id == conv if conv else sa.true()

    last: dict[str, float] = {}
    queries = [
        sa.select(addresses.c.conversation_id, addresses.c.last_inbound_at).where(
            only(addresses), sa.not_(sa.and_(addresses.c.opted_out.is_(True), addresses.c.address_enc == ""))),
        sa.select(inbound.c.conversation_id, sa.func.max(sa.func.coalesce(inbound.c.done_at, inbound.c.received_at)))
        .where(only(inbound)).group_by(inbound.c.conversation_id),
        sa.select(outbox.c.conversation_id, sa.func.max(outbox.c.updated_at)).where(only(outbox))
        .group_by(outbox.c.conversation_id),
    ]
    for query in queries:
        for row_conv, at in db.execute(query):
            last[row_conv] = max(last.get(row_conv, 0.0), at or 0.0)
    busy = {row[0] for row in db.execute(sa.select(inbound.c.conversation_id).where(
        only(inbound), inbound.c.status.in_(WAITING)))}
    busy |= {row[0] for row in db.execute(sa.select(outbox.c.conversation_id).where(
        only(outbox), outbox.c.status.in_(UNSENT)))}
    return last, busy


def waiting_or_unsent(conv_column) -> sa.sql.ClauseElement:
    """Whether the conversation of ``conv_column`` has a message to process or to send (SQL)."""
    return sa.or_(
        sa.exists().where(inbound.c.conversation_id == conv_column, inbound.c.status.in_(WAITING)),
        sa.exists().where(outbox.c.conversation_id == conv_column, outbox.c.status.in_(UNSENT)))


def erase_orphan_deliveries(db, before: float, dry_run: bool = False) -> int:
    """Delivery events older than ``before`` for messages the outbox no longer has (status callbacks
    that came after their message was purged, or for messages sent elsewhere)."""
    where = sa.and_(delivery_events.c.at < before, delivery_events.c.twilio_sid.notin_(
        sa.select(outbox.c.twilio_sid).where(outbox.c.twilio_sid.isnot(None))))
    if dry_run:
        return db.execute(sa.select(sa.func.count()).select_from(delivery_events).where(where)).scalar()
    return db.execute(delivery_events.delete().where(where)).rowcount
