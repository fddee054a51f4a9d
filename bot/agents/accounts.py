"""Hotline agents, their roles and their login sessions.

Passwords are hashed with Argon2id (argon2-cffi, memory-hard) and never stored or logged in clear;
a new agent gets a generated password printed once. A session is a random token in an HttpOnly
cookie; only its SHA-256 is stored, so a copy of the database cannot be used to log in.

A session ends after a shift (12 hours) or after ``HOTLINE_SESSION_IDLE`` seconds without the
agent doing anything (default 30 minutes): a console forgotten on a shared desk at 3 a.m. closes
itself. Wrong passwords are throttled (``throttle.py``).
"""
from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine

from bot.agents.tables import agent_sessions, agents
from bot.agents.throttle import LoginThrottle
from bot.storage import migrate

ROLES = ("agent", "supervisor", "trainer")
#: A login lasts one long shift; the agent logs in again after it.
SESSION_SECONDS = 12 * 3600
#: Without a request (or a sign of life from the console) for this long, the session ends.
IDLE_SECONDS = 30 * 60
#: ``last_seen_at`` is written at most this often per session (or a tenth of the idle limit when
#: that is shorter): one UPDATE per request would be waste.
TOUCH_EVERY = 15.0
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


def idle_from_env() -> float:
    """HOTLINE_SESSION_IDLE in seconds; a value that is not a positive number stops the hub at start."""
    raw = os.environ.get("HOTLINE_SESSION_IDLE", "")
    if not raw:
        return IDLE_SECONDS
    try:
        idle = float(raw)
    except ValueError:
        idle = 0
    if not idle > 0:  # also refuses nan
        raise AccountError(f"HOTLINE_SESSION_IDLE must be a number of seconds, like 1800 (it is {raw!r})")
    return idle


class Accounts:
    def __init__(self, engine: Engine, idle: float | None = None) -> None:
        self.engine = engine
        self.idle = idle_from_env() if idle is None else idle
        self.touch_every = min(TOUCH_EVERY, self.idle / 10)
        self.throttle = LoginThrottle(engine)
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
            db.execute(agent_sessions.delete().where(agent_sessions.c.last_seen_at < now - self.idle))
            db.execute(agent_sessions.insert().values(token_hash=_token_hash(token), agent_id=agent.id,
                                                      created_at=now, expires_at=now + SESSION_SECONDS,
                                                      last_seen_at=now))
        return token

    def session_agent(self, token: str | None, now: float | None = None, touch: bool = True) -> Agent | None:
        """The agent of a live session. ``touch`` counts this as the agent's activity (a request);
        the live socket checks without touching, since an open socket is not a person at the desk."""
        if not token:
            return None
        now = time.time() if now is None else now
        query = (sa.select(agents.c.id, agents.c.username, agents.c.role, agent_sessions.c.last_seen_at)
                 .join(agent_sessions, agent_sessions.c.agent_id == agents.c.id)
                 .where(agent_sessions.c.token_hash == _token_hash(token), agent_sessions.c.expires_at > now,
                        agent_sessions.c.last_seen_at > now - self.idle, agents.c.disabled.is_(False)))
        with self.engine.connect() as db:
            row = db.execute(query).first()
        if row is None:
            return None
        if touch and now - row.last_seen_at >= self.touch_every:
            self.touch(token, now)
        return Agent(row.id, row.username, row.role)

    def touch(self, token: str, now: float | None = None) -> None:
        """The agent did something: the idle clock starts again (never past the 12-hour limit)."""
        now = time.time() if now is None else now
        with self.engine.begin() as db:
            db.execute(agent_sessions.update().where(agent_sessions.c.token_hash == _token_hash(token),
                                                     agent_sessions.c.last_seen_at > now - self.idle)
                       .values(last_seen_at=now))

    def logout(self, token: str) -> None:
        with self.engine.begin() as db:
            db.execute(agent_sessions.delete().where(agent_sessions.c.token_hash == _token_hash(token)))

    def all(self) -> list[Agent]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(agents.c.id, agents.c.username, agents.c.role)
                              .where(agents.c.disabled.is_(False)).order_by(agents.c.username))
            return [Agent(row.id, row.username, row.role) for row in rows]

    def exists(self, username: str) -> bool:
        """Whether the name is an account's (for the audit of failed logins, never for the answer)."""
        with self.engine.connect() as db:
            return db.execute(sa.select(agents.c.id).where(agents.c.username == username)).first() is not None

    def named(self, username: str) -> Agent | None:
        return next((agent for agent in self.all() if agent.username == username), None)
