"""The hub's side of Rasa's HTTP API (``rasa run --enable-api --auth-token``): pause and resume a
conversation, append an agent's reply to its tracker, trigger the "nobody took it" intent, read
the transcript. Rasa's own mechanisms: its pause/resume events stop and restart predictions, and
``trigger_intent`` runs a rule as if the texter had sent the intent, replying through the channel
the texter last used.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

from bot.agents.summary import AGENT, transcript

NO_AGENT_INTENT = "EXTERNAL_no_agent"


class RasaUnavailable(Exception):
    """Rasa did not answer or refused: the hub tells the agent and changes nothing it cannot undo."""


class RasaApi:
    def __init__(self, base_url: str, token: str, timeout: float = 10.0) -> None:
        self.base_url, self.token = base_url.rstrip("/"), token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self.session:
            await self.session.close()

    async def _call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=self.timeout)
        url = f"{self.base_url}{path}"
        try:
            async with self.session.request(method, url, json=body,
                                            params={"token": self.token, **params}) as response:
                if response.status >= 400:
                    raise RasaUnavailable(f"Rasa answered {response.status} to {method} {path.split('/')[1]}")
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise RasaUnavailable(f"Rasa is not reachable ({type(error).__name__})") from error

    @staticmethod
    def _events(conversation_id: str) -> str:
        return f"/conversations/{quote(conversation_id, safe='')}/tracker/events"

    async def pause(self, conversation_id: str) -> None:
        await self._call("POST", self._events(conversation_id), [{"event": "pause"}])

    async def resume(self, conversation_id: str, slots: dict[str, Any] | None = None) -> None:
        events = [{"event": "resume"}] + [{"event": "slot", "name": name, "value": value}
                                         for name, value in (slots or {}).items()]
        await self._call("POST", self._events(conversation_id), events)

    async def record_agent_message(self, conversation_id: str, text: str, agent: str) -> None:
        """The agent's reply in the tracker: the transcript shows it and the bot knows it was said."""
        await self._call("POST", self._events(conversation_id),
                         [{"event": "bot", "text": text, "metadata": {"from": AGENT, "agent": agent}}])

    async def trigger_no_agent(self, conversation_id: str) -> None:
        await self._call("POST", f"/conversations/{quote(conversation_id, safe='')}/trigger_intent",
                         {"name": NO_AGENT_INTENT}, output_channel="latest")

    async def tracker(self, conversation_id: str) -> dict[str, Any]:
        """The whole tracker (slots and every event): the practice texter waits on it."""
        return await self._call("GET", f"/conversations/{quote(conversation_id, safe='')}/tracker",
                                include_events="ALL")

    async def transcript(self, conversation_id: str) -> list[dict[str, Any]]:
        tracker = await self._call("GET", f"/conversations/{quote(conversation_id, safe='')}/tracker",
                                   include_events="ALL")
        return transcript(tracker.get("events") or [])
