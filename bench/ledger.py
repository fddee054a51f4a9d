"""Did every texter message get answered, once, in order? The books of a scale-out run.

Three independent records are compared, none of them trusted alone:

- what the texters sent (``Sent``: the ``MessageSid``, when, and whether the webhook took it);
- the channel's tables in the shared database: each inbound message's turn status, and the replies
  of its turn, queued under keys ``in:<MessageSid>:<n>`` with the Twilio sid each was sent as;
- what reached the phones (the stand-in's outbound messages) and what Rasa recorded (each
  conversation's tracker: the texter's messages carry ``message_id = <MessageSid>:<n>``).

A message is **answered** when its turn is done and at least one of its replies reached the phone.
**Duplicated** counts messages a texter received twice (a Twilio sid no outbox row claims: sent
again after a crash) plus turns Rasa ran twice (the same ``message_id`` twice in a tracker).
**Out of order** counts conversations whose tracker holds the texter's messages in another order
than they were sent, or whose replies reached the phone in another order than they were queued.
Only ids, statuses and times are read from the tables: no text is decrypted.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.channels.store import inbound, outbox

SENT_STATES = ("accepted", "sent", "delivered", "read")


@dataclass
class Sent:
    number: str
    sid: str
    at: float
    accepted: bool


@dataclass
class Audit:
    sent: int = 0
    accepted: int = 0
    refused: int = 0
    answered: int = 0
    lost: list[str] = field(default_factory=list)
    resent: int = 0
    turns_twice: int = 0
    out_of_order: list[str] = field(default_factory=list)
    retried: int = 0
    first_reply: list[float] = field(default_factory=list)

    @property
    def duplicated(self) -> int:
        return self.resent + self.turns_twice


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def channel_rows(engine: Engine) -> tuple[dict[str, tuple[str, int]], list]:
    """Inbound turn status and attempts by MessageSid, and every outbox row (id order): ids and
    states only."""
    with engine.connect() as db:
        states = {row.sid: (row.status, row.attempts) for row in db.execute(
            sa.select(inbound.c.sid, inbound.c.status, inbound.c.attempts))}
        rows = db.execute(sa.select(outbox.c.id, outbox.c.key, outbox.c.conversation_id,
                                    outbox.c.status, outbox.c.twilio_sid).order_by(outbox.c.id)).all()
    return states, rows


def audit(sent: list[Sent], engine: Engine, phones: list[dict], trackers: dict[str, dict]) -> Audit:
    """The books of a run: ``phones`` is the stand-in's ``/emulator/messages`` (outbound ones are
    used), ``trackers`` Rasa's tracker per texter number."""
    states, rows = channel_rows(engine)
    numbers = {message.number for message in sent}
    delivered = {m["sid"]: {**m, "position": position} for position, m in enumerate(phones)
                 if m.get("direction", "outbound-api") == "outbound-api" and m["to"] in numbers}
    replies = collections.defaultdict(list)
    for row in rows:
        if row.key.startswith("in:"):
            replies[row.key.split(":")[1]].append(row)
    result = Audit(sent=len(sent))
    for message in sent:
        if not message.accepted:
            result.refused += 1
            continue
        result.accepted += 1
        reached = [delivered[row.twilio_sid] for row in replies[message.sid]
                   if row.twilio_sid in delivered]
        status, attempts = states.get(message.sid, ("missing", 0))
        result.retried += attempts > 0
        if status == "done" and reached:
            result.answered += 1
            result.first_reply.append(min(m["created"] for m in reached) - message.at)
        else:
            result.lost.append(message.sid)
    claimed = {row.twilio_sid for row in rows if row.twilio_sid}
    result.resent = sum(1 for sid in delivered if sid not in claimed)
    by_number = collections.defaultdict(list)
    for message in sent:
        if message.accepted:
            by_number[message.number].append(message.sid)
    for number, sids in by_number.items():
        told = tracker_sids(trackers.get(number) or {})
        result.turns_twice += len(told) - len(set(told))
        if first_seen(told) != [sid for sid in sids if sid in set(told)]:
            result.out_of_order.append(number)
    result.out_of_order += replies_out_of_order(rows, delivered)
    return result


def tracker_sids(tracker: dict) -> list[str]:
    """MessageSids of the texter's messages in the tracker, in its order (one per text turn:
    a photo's extra ``:1`` turn is left out)."""
    return [str(event["message_id"]).split(":")[0] for event in tracker.get("events") or []
            if event.get("event") == "user" and str(event.get("message_id") or "").endswith(":0")]


def first_seen(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def replies_out_of_order(rows: list, delivered: dict[str, dict]) -> list[str]:
    """Conversations whose sent replies reached the phone in another order than queued."""
    wrong = []
    per_conversation = collections.defaultdict(list)
    for row in rows:
        if row.twilio_sid in delivered:
            per_conversation[row.conversation_id].append(delivered[row.twilio_sid])
    for conversation, messages in per_conversation.items():
        positions = [m["position"] for m in messages]
        if positions != sorted(positions):
            wrong.append(conversation)
    return wrong
