"""The case queue as agents work it: who may see a case, taking, transferring, handing back,
closing, notes and the audit log.

Cases are rows of ``handoff_requests`` (the conversation writes them, ``bot.agents.handoff``).
Every change here is one conditional UPDATE, so two agents pressing "take" at once cannot both get
the case. The audit log records who did what to which case and when, never message content.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine

from bot import DATA_DIR
from bot.agents.accounts import Agent
from bot.agents.handoff import ACTIVE, CLOSED, HELD, OPEN, RETURNED
from bot.agents.summary import iso
from bot.agents.tables import audit_log, case_notes, handoff_requests as cases
from bot.privacy import Keys
from bot.storage import migrate

NOTE_LIMIT = 2000
#: The hub itself, reading on an agent's behalf (sees every case, like a supervisor).
SYSTEM = Agent(0, "", "supervisor")


class CaseError(Exception):
    """A request the hub refuses: ``status`` is the HTTP status, the message is for the agent."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Change:
    """What an action did: the case's conversation, and whether the bot must now pause or resume."""
    case_id: str
    conversation_id: str
    pause: bool = False
    resume: bool = False


@lru_cache(maxsize=1)
def outcomes() -> list[dict[str, str]]:
    data = yaml.safe_load((DATA_DIR / "agents" / "outcomes.yml").read_text(encoding="utf-8"))
    return [{"id": item["id"], "label": item["label"]} for item in data["outcomes"]]


def may_see(agent: Agent, row) -> bool:
    """Agents: the queue and their own cases; supervisors: everything; trainers: training cases."""
    if agent.role == "supervisor":
        return True
    if agent.role == "trainer":
        return bool(row.training)
    if row.training:
        return False
    return row.status == OPEN or row.assigned_to == agent.username


def in_queue(agent: Agent, row) -> bool:
    """What an agent's queue and alerts show. Training cases never mix with real ones: they are
    the trainers' queue; a supervisor's queue and alerts hold real cases only (training cases
    stay reachable by id and in the training view, ``GET /api/cases?training=1``)."""
    if agent.role == "supervisor":
        return not row.training
    return may_see(agent, row)


def _may_act(agent: Agent, row) -> bool:
    """Changing a held or returned case is for its holder, or a supervisor."""
    return agent.role == "supervisor" or row.assigned_to == agent.username


class CaseBook:
    def __init__(self, engine: Engine, keys: Keys) -> None:
        self.engine, self.keys = engine, keys
        migrate(engine)

    # Reading -------------------------------------------------------------------------------

    def visible(self, agent: Agent, closed: bool = False, training: bool = False) -> list:
        """The agent's queue (or the training cases they may see): risk first (imminent on top),
        then the longest waiting."""
        shown = (lambda row: row.training and may_see(agent, row)) if training else (lambda row: in_queue(agent, row))
        return [row for row in self._rows((CLOSED,) if closed else ACTIVE) if shown(row)]

    def active(self) -> list:
        """Every open or held case, training ones included, in queue order (the live updates'
        source: each socket then gets its agent's own queue)."""
        return self._rows(ACTIVE)

    def _rows(self, statuses: tuple[str, ...]) -> list:
        query = (sa.select(cases).where(cases.c.status.in_(statuses))
                 .order_by(cases.c.priority.desc(), cases.c.created_at, cases.c.id))
        with self.engine.connect() as db:
            return list(db.execute(query))

    def row(self, agent: Agent, case_id: str):
        with self.engine.connect() as db:
            row = db.execute(sa.select(cases).where(cases.c.id == case_id)).first()
        if row is None or not may_see(agent, row):
            raise CaseError(404, "No such case, or it is not yours to see.")
        return row

    def summary(self, row, now: float | None = None) -> dict[str, Any]:
        """The case as the console shows it: the stored summary with the queue's own fields."""
        now = time.time() if now is None else now
        summary = json.loads(self.keys.decrypt(row.summary_enc) or "{}")
        waiting = max(0, int(now - row.created_at)) if row.status == OPEN else 0
        return {**summary, "id": row.id, "status": row.status, "risk": row.risk,
                "created_at": iso(row.created_at), "waiting_seconds": waiting,
                "assigned_to": row.assigned_to, "training": bool(row.training),
                "told_waiting": row.told_waiting_at is not None}

    def notes(self, case_id: str) -> list[dict[str, Any]]:
        query = sa.select(case_notes).where(case_notes.c.case_id == case_id).order_by(case_notes.c.id)
        with self.engine.connect() as db:
            return [{"by": row.author, "kind": row.kind, "text": self.keys.decrypt(row.note_enc) or "",
                     "at": iso(row.at)} for row in db.execute(query)]

    def version(self) -> tuple:
        """Changes whenever any case changes: the live updates compare it between polls."""
        with self.engine.connect() as db:
            return tuple(db.execute(sa.select(sa.func.count(cases.c.id), sa.func.max(cases.c.updated_at))).first())

    # Changing ------------------------------------------------------------------------------

    def take(self, agent: Agent, case_id: str) -> Change:
        row = self.row(agent, case_id)
        if row.status == CLOSED:
            raise CaseError(409, "This case is closed.")
        if row.status == HELD and row.assigned_to != agent.username:
            raise CaseError(409, f"{row.assigned_to} already has this case.")
        now = time.time()
        with self.engine.begin() as db:
            taken = db.execute(cases.update().where(
                cases.c.id == case_id,
                sa.or_(cases.c.status.in_((OPEN, RETURNED)), cases.c.assigned_to == agent.username))
                .values(status=HELD, assigned_to=agent.username, taken_at=now, updated_at=now)).rowcount
            if not taken:
                raise CaseError(409, "Someone else took this case a moment ago.")
            self._audit(db, agent, "take", case_id)
        return Change(case_id, row.conversation_id, pause=True)

    def transfer(self, agent: Agent, case_id: str, to: Agent) -> Change:
        row = self._held_by(agent, case_id, allow_waiting=agent.role == "supervisor")
        if to.role == "trainer" and not row.training:
            raise CaseError(422, "Trainers take only training cases.")
        if to.role == "agent" and row.training:  # it would vanish from its new holder's view
            raise CaseError(422, "Training cases go to a trainer or a supervisor.")
        now = time.time()
        with self.engine.begin() as db:
            db.execute(cases.update().where(cases.c.id == case_id).values(
                status=HELD, assigned_to=to.username, taken_at=now, updated_at=now))
            self._audit(db, agent, "transfer", case_id, to.username)
        return Change(case_id, row.conversation_id, pause=row.status != HELD)

    def handback(self, agent: Agent, case_id: str, note: str, covered: list[str]) -> Change:
        row = self._held_by(agent, case_id)
        now = time.time()
        with self.engine.begin() as db:
            db.execute(cases.update().where(cases.c.id == case_id).values(
                status=RETURNED, returned_at=now, updated_at=now))
            self._note(db, agent, case_id, "handback", _handback_text(note, covered), now)
            self._audit(db, agent, "handback", case_id, ",".join(covered)[:64])
        return Change(case_id, row.conversation_id, resume=True)

    def close(self, agent: Agent, case_id: str, outcome: str, note: str = "") -> Change:
        if outcome not in {item["id"] for item in outcomes()}:
            raise CaseError(422, "Choose an outcome from the list.")
        row = self.row(agent, case_id)
        if row.status == CLOSED:
            raise CaseError(409, "This case is already closed.")
        if not _may_act(agent, row):  # as the console offers it: a waiting case is taken before it is closed
            holder = f"{row.assigned_to} has this case" if row.assigned_to else "Take the case first"
            raise CaseError(403, f"{holder}; only its holder or a supervisor can close it.")
        now = time.time()
        with self.engine.begin() as db:
            db.execute(cases.update().where(cases.c.id == case_id).values(
                status=CLOSED, outcome=outcome, closed_at=now, updated_at=now))
            if note.strip():
                self._note(db, agent, case_id, "close", note, now)
            self._audit(db, agent, "close", case_id, outcome)
        return Change(case_id, row.conversation_id, resume=row.status == HELD)

    def add_note(self, agent: Agent, case_id: str, text: str) -> dict[str, Any]:
        self.row(agent, case_id)
        now = time.time()
        with self.engine.begin() as db:
            self._note(db, agent, case_id, "note", text, now)
            db.execute(cases.update().where(cases.c.id == case_id).values(updated_at=now))
            self._audit(db, agent, "note", case_id)
        return {"by": agent.username, "kind": "note", "text": text.strip(), "at": iso(now)}

    def held_for_reply(self, agent: Agent, case_id: str):
        """The case, when the agent holds it and may text the texter."""
        row = self.row(agent, case_id)
        if row.status != HELD or row.assigned_to != agent.username:
            raise CaseError(409, "Take the case before replying.")
        return row

    def audit(self, agent: Agent, action: str, case_id: str | None = None, detail: str | None = None) -> None:
        with self.engine.begin() as db:
            self._audit(db, agent, action, case_id, detail)

    def stats(self) -> dict[str, Any]:
        """The queue's figures for supervisors: real cases only, training cases are never counted."""
        real = cases.c.training == sa.false()
        with self.engine.connect() as db:
            open_by_risk = dict(db.execute(sa.select(cases.c.risk, sa.func.count()).where(
                real, cases.c.status.in_(ACTIVE)).group_by(cases.c.risk)).all())
            closed_by_outcome = dict(db.execute(sa.select(cases.c.outcome, sa.func.count()).where(
                real, cases.c.status == CLOSED).group_by(cases.c.outcome)).all())
        return {"open": sum(open_by_risk.values()), "open_by_risk": open_by_risk,
                "closed": sum(closed_by_outcome.values()),
                "closed_by_outcome": {str(k): v for k, v in closed_by_outcome.items()}}

    # The wait ------------------------------------------------------------------------------

    def due_for_waiting_message(self, wait: float, now: float | None = None) -> list[tuple[str, str]]:
        """Cases nobody has taken for ``wait`` seconds whose texter was not told yet; each is
        claimed (marked told) here so that only one hub process tells the texter."""
        now = time.time() if now is None else now
        query = sa.select(cases.c.id, cases.c.conversation_id).where(
            cases.c.status == OPEN, cases.c.told_waiting_at.is_(None), cases.c.created_at <= now - wait)
        claimed = []
        with self.engine.begin() as db:
            for row in db.execute(query).all():
                if db.execute(cases.update().where(cases.c.id == row.id, cases.c.told_waiting_at.is_(None))
                              .values(told_waiting_at=now, updated_at=now)).rowcount:
                    claimed.append((row.id, row.conversation_id))
        return claimed

    def untold(self, case_id: str) -> None:
        """The waiting message could not be sent: try again at the next round."""
        with self.engine.begin() as db:
            db.execute(cases.update().where(cases.c.id == case_id).values(told_waiting_at=None))

    def restore(self, before) -> None:
        """Undo an action whose pause or resume of the bot failed: the case as it was."""
        with self.engine.begin() as db:
            db.execute(cases.update().where(cases.c.id == before.id).values(
                status=before.status, assigned_to=before.assigned_to, taken_at=before.taken_at,
                returned_at=before.returned_at, outcome=before.outcome, closed_at=before.closed_at,
                updated_at=time.time()))

    # Internals -----------------------------------------------------------------------------

    def _held_by(self, agent: Agent, case_id: str, allow_waiting: bool = False):
        row = self.row(agent, case_id)
        if row.status == OPEN and allow_waiting:
            return row
        if row.status != HELD:
            raise CaseError(409, "Only a case someone holds can be handed on.")
        if not _may_act(agent, row):
            raise CaseError(403, f"{row.assigned_to} has this case; only they or a supervisor can do this.")
        return row

    def _note(self, db, agent: Agent, case_id: str, kind: str, text: str, now: float) -> None:
        text = text.strip()
        if not text:
            if kind == "note":
                raise CaseError(422, "The note is empty.")
            return
        if len(text) > NOTE_LIMIT:
            raise CaseError(422, f"Notes are at most {NOTE_LIMIT} characters.")
        db.execute(case_notes.insert().values(case_id=case_id, author=agent.username, kind=kind,
                                              note_enc=self.keys.encrypt(text), at=now))

    @staticmethod
    def _audit(db, agent: Agent, action: str, case_id: str | None = None, detail: str | None = None) -> None:
        db.execute(audit_log.insert().values(at=time.time(), agent=agent.username, action=action,
                                             case_id=case_id, detail=detail))


def _handback_text(note: str, covered: list[str]) -> str:
    covered_text = f"Covered: {', '.join(covered)}." if covered else ""
    return " ".join(part for part in (note.strip(), covered_text) if part)
