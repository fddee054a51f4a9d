"""Training mode: a trainer practises on a scripted texter, in the real console, on a training case.

The hub plays the texter of a conversation script (``data/replay``): it sends each turn to the
Rasa server's Twilio webhook, signed exactly as Twilio signs, from a fictional 555-01xx number, so
the conversation, the bot's questions and the handoff are the real ones and the case is a
TRAINING case (``bot.channels.store.is_training_address``): only trainers and supervisors see it,
it is marked in the console, and statistics leave it out. Turns before the handoff are played as
soon as the bot has answered the one before; each later turn is sent after the trainer replies,
so the trainer practises the conversation with the texter as an agent would.
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from twilio.request_validator import RequestValidator

from bot import DATA_DIR
from bot.agents.rasa_api import RasaApi, RasaUnavailable
from bot.channels.config import WEBHOOK_PATH
from bot.channels.store import conversation_id, random_training_number
from bot.privacy import Keys
from bot.replay.runner import turn_done, user_events
from bot.replay.script import Script, ScriptError, load_scripts

logger = logging.getLogger(__name__)

#: Persona scripts written for practice (lines for after the handoff), then the golden set.
SCRIPTS = (DATA_DIR / "replay" / "practice", DATA_DIR / "replay" / "golden")
#: How long the simulated texter waits for the bot to answer one turn.
TURN_TIMEOUT = 60.0
#: Pause before the texter's next line after the trainer replied (people do not answer instantly).
REPLY_PAUSE = 2.0
HANDED_OVER = ("queued", "emergency")


@dataclass
class Practice:
    script: Script
    address: str
    conversation_id: str
    trainer: str
    next_turn: int = 0
    task: asyncio.Task | None = field(default=None, repr=False)

    @property
    def remaining(self) -> int:
        return len(self.script.turns) - self.next_turn


class PracticeTexter:
    """The simulated texters of the practices running in this hub process."""

    def __init__(self, keys: Keys, rasa: RasaApi, rasa_url: str, scripts: tuple[Path, ...] = SCRIPTS,
                 env: dict[str, str] | None = None) -> None:
        env = dict(os.environ if env is None else env)
        self.keys, self.rasa, self.folders = keys, rasa, scripts
        self.webhook = rasa_url.rstrip("/") + WEBHOOK_PATH
        self.signed_url = (env.get("HOTLINE_PUBLIC_URL") or rasa_url).rstrip("/") + WEBHOOK_PATH
        self.validator = RequestValidator(env.get("TWILIO_AUTH_TOKEN", ""))
        self.hotline_number = env.get("HOTLINE_NUMBER", "+15145550000")
        self.account_sid = env.get("TWILIO_ACCOUNT_SID", "")
        self.practices: dict[str, Practice] = {}
        self.session: aiohttp.ClientSession | None = None

    def catalogue(self) -> list[dict[str, Any]]:
        """The scripts a trainer can practise on, by language then name."""
        return [{"name": name, "title": s.title, "language": s.language, "persona": s.persona,
                 "tags": s.tags, "turns": len(s.turns)} for name, s in self._scripts().items()]

    def _scripts(self) -> dict[str, Script]:
        """Every script by the name a trainer picks (``practice/es/rosa``, ``golden/es/minor``)."""
        found: dict[str, Script] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            try:
                scripts = load_scripts([folder])
            except ScriptError as error:
                logger.error("practice scripts in %s do not load: %s", folder.name, error)
                continue
            found.update({f"{folder.name}/{s.name}": s for s in scripts})
        return found

    def _script(self, name: str) -> Script | None:
        return self._scripts().get(name) if isinstance(name, str) else None

    async def start(self, name: str, trainer: str) -> Practice | None:
        """A new practice conversation on a fresh training number; None for an unknown script."""
        script = self._script(name)
        if script is None:
            return None
        address = await self._fresh_address()
        practice = Practice(script, address, conversation_id(self.keys, address), trainer)
        self.practices[practice.conversation_id] = practice
        practice.task = asyncio.create_task(self._until_handoff(practice))
        return practice

    async def trainer_replied(self, conversation: str) -> None:
        """The trainer answered in a practice case: the texter's next scripted line follows, after
        whatever the texter is still sending (a trainer may take the case and reply while the
        last line before the handoff is still being answered)."""
        practice = self.practices.get(conversation)
        if practice is None:
            return
        practice.task = asyncio.create_task(self._next_after_reply(practice, practice.task))

    async def close(self) -> None:
        for practice in self.practices.values():
            if practice.task:
                practice.task.cancel()
        if self.session:
            await self.session.close()

    async def _next_after_reply(self, practice: Practice, previous: asyncio.Task | None) -> None:
        if previous:
            await asyncio.gather(previous, return_exceptions=True)
        await asyncio.sleep(REPLY_PAUSE)
        if practice.remaining <= 0:
            return
        try:
            await self._send_turn(practice)
        except (RasaUnavailable, aiohttp.ClientError, asyncio.TimeoutError, RuntimeError) as error:
            logger.warning("practice %s stopped: %s", practice.script.name, error)

    async def _until_handoff(self, practice: Practice) -> None:
        """Play turns, each after the bot answered the last, until the case reaches an agent."""
        try:
            while practice.remaining > 0:
                tracker = await self._send_turn(practice)
                if (tracker.get("slots") or {}).get("handoff") in HANDED_OVER:
                    return
        except (RasaUnavailable, aiohttp.ClientError, asyncio.TimeoutError, RuntimeError) as error:
            logger.warning("practice %s stopped: %s", practice.script.name, error)

    async def _send_turn(self, practice: Practice) -> dict[str, Any]:
        turn = practice.script.turns[practice.next_turn]
        practice.next_turn += 1
        before = len(user_events(await self.rasa.tracker(practice.conversation_id)))
        await self._post(practice.address, turn.texter)
        deadline = asyncio.get_running_loop().time() + TURN_TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            tracker = await self.rasa.tracker(practice.conversation_id)
            if turn_done(tracker, before):
                return tracker
            await asyncio.sleep(0.3)
        raise RuntimeError("the bot did not answer the simulated texter in time")

    async def _post(self, address: str, body: str) -> None:
        """The texter's message as Twilio would post it, signed with the account's token."""
        sid = "SM" + secrets.token_hex(16)
        params = {"MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid, "AccountSid": self.account_sid,
                  "From": address, "To": self.hotline_number, "Body": body, "NumMedia": "0",
                  "NumSegments": "1", "SmsStatus": "received", "ApiVersion": "2010-04-01"}
        headers = {"X-Twilio-Signature": self.validator.compute_signature(self.signed_url, params)}
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        async with self.session.post(self.webhook, data=params, headers=headers) as reply:
            if reply.status != 200:
                raise RuntimeError(f"the webhook answered {reply.status}")

    async def _fresh_address(self) -> str:
        while True:
            address = random_training_number()
            conversation = conversation_id(self.keys, address)
            if conversation not in self.practices and not user_events(await self.rasa.tracker(conversation)):
                return address
