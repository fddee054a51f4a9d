"""The database or the tracker store out of reach for a while (a PostgreSQL restart, a network cut).

Such a failure says nothing about the message being worked on, so the channel neither counts it
against the message (three failed turns leave a message for an agent) nor gives up on a write that
must not be lost (a send Twilio accepted, a turn put back in the queue): it waits and tries again.
Each outage is logged once when it starts and once when it ends, not at every failed try.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, TypeVar

import sqlalchemy as sa
from rasa.core.tracker_store import FailSafeTrackerStore

logger = logging.getLogger(__name__)
T = TypeVar("T")
#: Seconds between tries of a write that must not be lost while the database is unavailable.
RETRY_EVERY = 1.0


class TrackerStoreFailed(RuntimeError):
    """Rasa's tracker store could not read or save a conversation (the cause is chained)."""


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database could not be reached, rather than a fault of the
    message or the code: a connection refused or cut, a server shutting down, SQLite busy."""
    if isinstance(error, TrackerStoreFailed):
        return error.__cause__ is not None and database_unavailable(error.__cause__)
    if isinstance(error, sa.exc.DBAPIError):
        return error.connection_invalidated or isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError))
    return False


def _raise(error: Exception) -> None:
    raise TrackerStoreFailed(type(error).__name__) from error


def fail_loudly(tracker_store) -> None:
    """Make Rasa's tracker store raise when the database fails, so that the turn fails and is tried
    again later.

    Rasa's agent always wraps the tracker store in ``FailSafeTrackerStore``, which answers a failed
    read with no tracker (the texter would get the opening again, mid-conversation) and a failed
    write by keeping the tracker in memory (lost at the next restart, and the message marked done).
    Its ``on_tracker_store_error`` hook is what Rasa offers to change that.
    """
    if isinstance(tracker_store, FailSafeTrackerStore):
        tracker_store._on_tracker_store_error = _raise


class Outage:
    """When a dependency went down, logged once at the start and once at the end."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.since: float | None = None

    def down(self, error: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            logger.error("%s unavailable (%s); the work waits and is retried", self.what, type(error).__name__)

    def up(self) -> None:
        if self.since is not None:
            logger.warning("%s back after %.1f s", self.what, time.monotonic() - self.since)
            self.since = None


async def persist(write: Callable[[], Awaitable[T]], outage: Outage) -> T:
    """Retry ``write`` while the database is unavailable, until it succeeds. Giving up is no
    option: this process renews the leases of everything it has claimed while it lives, so work
    left claimed would never be taken over (a stopped process's claims are, after the lease)."""
    while True:
        try:
            result = await write()
        except Exception as error:  # noqa: BLE001 - only database outages are retried, see below
            if not database_unavailable(error):
                raise
            outage.down(error)
            await asyncio.sleep(RETRY_EVERY)
        else:
            outage.up()
            return result
