"""Login throttling: too many wrong passwords lock a username, and a client address, for a while.

Failures are rows in SQL (``login_failures``), not counters in memory, so a lock survives a hub
restart and holds across every hub process sharing the database. Usernames and addresses are
stored only as SHA-256 digests: a username field sometimes receives a password typed in the wrong
box, and that must not sit in the database in clear.

A key is locked while it has ``limit`` failures within ``window`` seconds of its latest failure
and that latest failure is less than ``lockout`` seconds old. Attempts refused while locked are
not counted, so the lock ends on time even while someone keeps trying.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.agents.tables import login_failures

USER, ADDRESS = "user", "address"


@dataclass(frozen=True)
class Limits:
    """A username is the target of guessing (low limit); an address can be a whole office behind
    one NAT, where several agents mistype on the same morning (higher limit)."""
    user_failures: int = 5
    address_failures: int = 20
    window: float = 15 * 60
    lockout: float = 15 * 60


def _key(scope: str, value: str) -> str:
    return hashlib.sha256(f"{scope}:{value}".encode()).hexdigest()


class LoginThrottle:
    def __init__(self, engine: Engine, limits: Limits = Limits()) -> None:
        self.engine, self.limits = engine, limits

    def retry_after(self, username: str, address: str, now: float | None = None) -> float:
        """Seconds before this username may try again from this address; 0 when it may now."""
        now = time.time() if now is None else now
        with self.engine.connect() as db:
            return max(self._locked_for(db, USER, username, self.limits.user_failures, now),
                       self._locked_for(db, ADDRESS, address, self.limits.address_failures, now))

    def failed(self, username: str, address: str, now: float | None = None) -> None:
        """Count a wrong password (or unknown username: they must look the same) against both."""
        now = time.time() if now is None else now
        forgotten = now - self.limits.window - self.limits.lockout
        with self.engine.begin() as db:
            db.execute(login_failures.delete().where(login_failures.c.at < forgotten))
            db.execute(login_failures.insert(), [{"scope": USER, "key": _key(USER, username), "at": now},
                                                 {"scope": ADDRESS, "key": _key(ADDRESS, address), "at": now}])

    def clear(self, username: str) -> int:
        """Forget the username's failures: after a successful login, or a supervisor's unlock. The
        address's failures stay: one agent logging in must not reset a guesser on the same address."""
        with self.engine.begin() as db:
            return db.execute(login_failures.delete().where(login_failures.c.scope == USER,
                                                            login_failures.c.key == _key(USER, username))).rowcount

    def _locked_for(self, db, scope: str, value: str, limit: int, now: float) -> float:
        since = now - self.limits.window - self.limits.lockout
        times = db.execute(sa.select(login_failures.c.at)
                           .where(login_failures.c.scope == scope, login_failures.c.key == _key(scope, value),
                                  login_failures.c.at > since)
                           .order_by(login_failures.c.at.desc()).limit(limit)).scalars().all()
        if len(times) < limit:
            return 0.0
        latest, oldest = times[0], times[-1]
        if latest - oldest > self.limits.window:
            return 0.0
        return max(0.0, latest + self.limits.lockout - now)
