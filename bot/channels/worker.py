"""The loop shared by the turn dispatcher and the outbox sender: claim work, run it as tasks."""
from __future__ import annotations

import asyncio
from typing import Any

from bot.channels.outage import Outage, database_unavailable


class ClaimLoop:
    """Claims work from the store and runs each item as a task, at most ``concurrency`` at once.

    ``wake`` is set when this process adds work; polling every ``poll`` seconds picks up the work
    other processes (or retries that came due) left in the shared database. A database outage
    never ends the loop: claiming returns nothing until the database answers again.
    """

    def __init__(self, concurrency: int, poll: float = 0.5) -> None:
        self.concurrency = concurrency
        self.poll = poll
        self.wake = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()
        self.database = Outage("database")

    async def fetch(self, limit: int) -> list[Any]:
        """Claim up to ``limit`` items from the store (and renew the leases of those in progress)."""
        raise NotImplementedError

    async def claim(self, limit: int) -> list[Any]:
        try:
            claimed = await self.fetch(limit)
        except Exception as error:  # noqa: BLE001 - a database outage must not end the loop
            if not database_unavailable(error):
                raise
            self.database.down(error)
            return []
        self.database.up()
        return claimed

    async def handle(self, item: Any) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        while True:
            self.wake.clear()
            # Claiming also renews the leases of the work in progress, so it runs when all
            # slots are busy too (with a limit of 0, nothing new is claimed).
            for item in await self.claim(max(0, self.concurrency - len(self.tasks))):
                task = asyncio.create_task(self.handle(item))
                self.tasks.add(task)
                task.add_done_callback(self._finished)
            try:
                await asyncio.wait_for(self.wake.wait(), self.poll)
            except asyncio.TimeoutError:
                pass

    def _finished(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        self.wake.set()
