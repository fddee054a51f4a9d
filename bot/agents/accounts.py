"""Hotline agents, their roles and their login sessions.

Passwords are hashed with Argon2id (argon2-cffi, memory-hard) and never stored or logged in clear;
a new agent gets a generated password printed once. A session is a random token in an HttpOnly
cookie; only its SHA-256 is stored, so a copy of the database cannot be used to log in.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine

from bot.agents.tables import agent_sessions, agents
from bot.storage import migrate

ROLES = ("agent", "supervisor", "trainer")
#: A login lasts one long shift; the agent logs in again after it.
SESSION_SECONDS = 12 * 3600
_hasher = PasswordHasher()
#: Verified against when the username is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Agent:
    id: int
    username: str
    role: str


class AccountError(ValueError):
    """A request about accounts that cannot be done (the message says why, for the operator)."""


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrate(engine)

    def add(self, username: str, role: str = "agent") -> str:
        """Create an agent; returns the generated password (shown once, stored only hashed)."""
        username = username.strip()
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}")
        if not username or len(username) > 64 or not username.isprintable() or " " in username:
            raise AccountError("a username is 1 to 64 characters, without spaces")
        password = secrets.token_urlsafe(15)
        with self.engine.begin() as db:
            if db.execute(sa.select(agents.c.id).where(agents.c.username == username)).first():
                raise AccountError(f"an agent named {username} already exists")
            db.execute(agents.insert().values(username=username, role=role, disabled=False,
                                              password_hash=_hasher.hash(password), created_at=time.time()))
        return password

    def verify(self, username: str, password: str) -> Agent | None:
        with self.engine.connect() as db:
            row = db.execute(sa.select(agents).where(agents.c.username == username,
                                                     agents.c.disabled.is_(False))).first()
        try:
            _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        return Agent(row.id, row.username, row.role) if row else None

    def login(self, agent: Agent, now: float | None = None) -> str:
        """A new session for the agent; returns the token for the cookie."""
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(32)
        with self.engine.begin() as db:
            db.execute(agent_sessions.delete().where(agent_sessions.c.expires_at < now))
            db.execute(agent_sessions.insert().values(token_hash=_token_hash(token), agent_id=agent.id,
                                                      created_at=now, expires_at=now + SESSION_SECONDS))
        return token

    def session_agent(self, token: str | None, now: float | None = None) -> Agent | None:
        if not token:
            return None
        now = time.time() if now is None else now
        query = (sa.select(agents.c.id, agents.c.username, agents.c.role)
                 .join(agent_sessions, agent_sessions.c.agent_id == agents.c.id)
                 .where(agent_sessions.c.token_hash == _token_hash(token),
                        agent_sessions.c.expires_at > now, agents.c.disabled.is_(False)))
        with self.engine.connect() as db:
            row = db.execute(query).first()
        return Agent(row.id, row.username, row.role) if row else None

    def logout(self, token: str) -> None:
        with self.engine.begin() as db:
            db.execute(agent_sessions.delete().where(agent_sessions.c.token_hash == _token_hash(token)))

    def all(self) -> list[Agent]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(agents.c.id, agents.c.username, agents.c.role)
                              .where(agents.c.disabled.is_(False)).order_by(agents.c.username))
            return [Agent(row.id, row.username, row.role) for row in rows]

    def named(self, username: str) -> Agent | None:
        return next((agent for agent in self.all() if agent.username == username), None)
