"""Live updates for the console over WebSocket, and the hub's background rounds.

The hub learns of changes from the shared database (the action server writes cases, the Rasa
server stores texter messages), polling it a few times a second: no extra broker to run, and any
number of hub processes see the same thing. Each socket receives only what its agent may see.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from bot.agents.accounts import Agent
from bot.agents.cases import CaseBook, in_queue, may_see
from bot.agents.handoff import HELD, OPEN
from bot.agents.rasa_api import RasaApi, RasaUnavailable
from bot.agents.summary import iso
from bot.channels.store import ChannelStore

logger = logging.getLogger(__name__)


def queue_entry(book: CaseBook, row, now: float) -> dict[str, Any]:
    """A case as the queue lists it: the summary without the transcript (sent when opened)."""
    summary = book.summary(row, now)
    summary.pop("transcript", None)
    return summary


class Live:
    def __init__(self, book: CaseBook, store: ChannelStore, poll: float = 0.25) -> None:
        self.book, self.store, self.poll = book, store, poll
        self.sockets: dict[web.WebSocketResponse, Agent] = {}
        self.version: tuple | None = None
        self.rows: list = []  # the open cases as of ``version``
        self.alerted: set[str] = set()
        #: Imminent cases waiting when the hub started (maybe escalated while it was down): the
        #: first agent who connects and may see one is alerted of it.
        self.unannounced: set[str] = set()
        self.last_inbound = 0

    async def start(self) -> None:
        self.last_inbound = await asyncio.to_thread(self.store.last_inbound_id)
        rows = await asyncio.to_thread(self._all_active)
        self.alerted = {row.id for row in rows if row.risk == "imminent"}
        self.unannounced = {row.id for row in rows if row.risk == "imminent" and row.status == OPEN}

    def _all_active(self) -> list:
        return self.book.active()

    async def add(self, socket: web.WebSocketResponse, agent: Agent) -> None:
        """The agent's queue, then an alert for each imminent case still waiting that was there when
        the hub started and no agent was alerted of since."""
        self.sockets[socket] = agent
        rows = await asyncio.to_thread(self._all_active)
        await self._send_cases(socket, agent, rows)
        for row in rows:
            if row.id in self.unannounced and row.status == OPEN and in_queue(agent, row):
                self.unannounced.discard(row.id)
                await self._send(socket, self._alert(row))

    def remove(self, socket: web.WebSocketResponse) -> None:
        self.sockets.pop(socket, None)

    def online(self) -> set[str]:
        return {agent.username for agent in self.sockets.values()}

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - a database hiccup must not end live updates
                logger.exception("live update round failed; retrying")
            await asyncio.sleep(self.poll)

    async def tick(self) -> None:
        version = await asyncio.to_thread(self.book.version)
        if version != self.version:
            self.version = version
            self.rows = await asyncio.to_thread(self._all_active)
            await self._alert_new_imminent(self.rows)
            await asyncio.gather(*(self._send_cases(socket, agent, self.rows)
                                   for socket, agent in list(self.sockets.items())))
        await self._push_texter_messages()

    async def changed(self) -> None:
        """Push the queue now (after an agent's action) rather than at the next poll."""
        self.version = None
        await self.tick()

    async def _send_cases(self, socket, agent: Agent, rows: list) -> None:
        now = time.time()
        cases = [queue_entry(self.book, row, now) for row in rows if in_queue(agent, row)]
        await self._send(socket, {"type": "cases", "cases": cases})

    async def _alert_new_imminent(self, rows: list) -> None:
        for row in rows:
            if row.risk != "imminent" or row.id in self.alerted:
                continue
            self.alerted.add(row.id)
            alert = self._alert(row)
            await asyncio.gather(*(self._send(socket, alert) for socket, agent in list(self.sockets.items())
                                   if in_queue(agent, row)))

    def _alert(self, row) -> dict[str, Any]:
        summary = self.book.summary(row)
        return {"type": "alert", "case": {"id": row.id, "risk": row.risk, "language": summary.get("language"),
                                          "language_name": summary.get("language_name")}}

    async def _push_texter_messages(self) -> None:
        # Taking a case changes the version, so ``self.rows`` knows every held case already.
        held = {row.conversation_id: row for row in self.rows if row.status == HELD} if self.sockets else {}
        messages = await asyncio.to_thread(self.store.inbound_since, self.last_inbound, list(held))
        for message in messages:
            self.last_inbound = max(self.last_inbound, message.id)
            row = held[message.conversation_id]
            text = message.body or ("(photo)" if message.media else "")
            entry = {"from": "texter", "text": text, "language": None, "at": iso(message.received_at)}
            await asyncio.gather(*(self._send(socket, {"type": "message", "case_id": row.id, "entry": entry})
                                   for socket, agent in list(self.sockets.items()) if may_see(agent, row)))
        if not held:
            self.last_inbound = max(self.last_inbound, await asyncio.to_thread(self.store.last_inbound_id))

    async def _send(self, socket: web.WebSocketResponse, message: dict[str, Any]) -> None:
        try:
            await socket.send_json(message)
        except (ConnectionError, RuntimeError):
            self.remove(socket)


async def tell_waiting_texters(book: CaseBook, rasa: RasaApi, wait: float, every: float = 5.0) -> None:
    """When nobody has taken a case for ``wait`` seconds, the bot tells the texter honestly and
    gives the numbers to call (``action_no_agent_yet``); the case stays in the queue."""
    while True:
        try:
            for case_id, conversation_id in await asyncio.to_thread(book.due_for_waiting_message, wait):
                try:
                    await rasa.trigger_no_agent(conversation_id)
                except RasaUnavailable as error:
                    logger.warning("case %s: waiting message not sent (%s); next round", case_id, error)
                    await asyncio.to_thread(book.untold, case_id)
        except Exception:  # noqa: BLE001 - keep trying; the cases stay in the database
            logger.exception("waiting-message round failed")
        await asyncio.sleep(every)
