"""Playing scripts through a running stack and observing what the texter and the agents would see.

Each turn goes through the Twilio stand-in, which signs it and posts it to the Rasa server's
Twilio webhook exactly as Twilio would. A turn is over when Rasa's tracker shows the texter's
message followed by ``action_listen`` (or the conversation is paused for an agent) and the
stand-in has stopped receiving the replies. Then the runner reads:

- the replies the texter got, from the stand-in (what a phone would show, with SMS segments);
- which responses the bot chose, by name, from the tracker's bot events (``utter_action``), so
  expectations hold in every language;
- the conversation's language, indicators and risk from the tracker's slots, and this message's own
  language and triage from its parse data;
- the case, from the agent hub's API, as a trainer account sees it.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote

import aiohttp
from rasa.shared.core.constants import EXTERNAL_MESSAGE_PREFIX

from bot.channels.segments import segment_count
from bot.channels.store import conversation_id, random_training_number
from bot.privacy import Keys
from bot.replay.checks import check
from bot.replay.script import Script, Turn

#: How long one turn may take before it counts as lost (Rasa on 2 cores answers in about a second).
TURN_TIMEOUT = 60.0
#: After the tracker shows the turn done, replies still on their way through the outbox.
DELIVERY_TIMEOUT = 15.0
#: Replies are complete when nothing new arrived for this long (longer when none is expected).
SETTLE = 0.5
QUIET = 2.0
SILENT_WAIT = 4.0
POLL = 0.15


@dataclass
class Endpoints:
    """Where the stack listens, and what the runner needs to read it: Rasa's API token, the keyed
    hash of numbers (conversation ids) and a trainer's hub login."""
    twilio: str
    rasa: str
    hub: str
    rasa_token: str
    keys: Keys
    hub_user: str | None = None
    hub_password: str | None = None


@dataclass
class TurnResult:
    index: int
    turn: Turn
    address: str
    language: str | None = None
    message_indicators: list[str] = field(default_factory=list)
    message_risk: str | None = None
    responses: list[str] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    case: dict[str, Any] | None = None
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class ScriptResult:
    script: Script
    address: str
    turns: list[TurnResult] = field(default_factory=list)
    end_failures: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.error and not self.end_failures and not any(t.failures for t in self.turns)

    @property
    def failures(self) -> list[str]:
        lines = [f"turn {t.index}: {f}" for t in self.turns for f in t.failures]
        lines += [f"end: {f}" for f in self.end_failures]
        return lines + ([f"error: {self.error}"] if self.error else [])

    def triage(self) -> dict[str, Any]:
        """What ``--compare`` compares: the conversation's triage at the end and whether it was
        handed to an agent."""
        last = self.turns[-1] if self.turns else None
        state = last.state if last else {}
        return {"language": state.get("language"), "indicators": sorted(state.get("indicators") or []),
                "risk": state.get("risk"), "imminent": state.get("imminent"),
                "handoff": bool(last and last.case)}


class StackClient:
    """HTTP calls to the stand-in, Rasa's API and the hub, on one session."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self.session: aiohttp.ClientSession | None = None
        self.hub_login: asyncio.Lock = asyncio.Lock()
        self.logged_in = False

    async def __aenter__(self) -> "StackClient":
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90),
                                             cookie_jar=aiohttp.CookieJar(unsafe=True))
        return self

    async def __aexit__(self, *_exc) -> None:
        await self.session.close()

    def conversation_id(self, address: str) -> str:
        return conversation_id(self.endpoints.keys, address)

    async def send(self, address: str, text: str) -> None:
        channel = "whatsapp" if address.startswith("whatsapp:") else "sms"
        payload = {"from": address.removeprefix("whatsapp:"), "channel": channel, "body": text}
        async with self.session.post(f"{self.endpoints.twilio}/emulator/send", json=payload) as reply:
            body = await reply.json(content_type=None)
            if reply.status != 200 or body.get("webhook_status") != 200:
                raise RuntimeError(f"the webhook refused the message (stand-in {reply.status}, "
                                   f"webhook {body.get('webhook_status')}): {body.get('message', '')}")

    async def delivered(self, address: str) -> list[dict[str, Any]]:
        """The bot's messages to ``address`` the stand-in accepted (carrier notices left out)."""
        async with self.session.get(f"{self.endpoints.twilio}/emulator/messages", params={"to": address}) as reply:
            reply.raise_for_status()
            return [m for m in await reply.json() if m.get("direction", "outbound-api") == "outbound-api"]

    async def tracker(self, address: str) -> dict[str, Any]:
        conversation = quote(self.conversation_id(address), safe="")
        async with self.session.get(f"{self.endpoints.rasa}/conversations/{conversation}/tracker",
                                    params={"token": self.endpoints.rasa_token, "include_events": "ALL"}) as reply:
            if reply.status in (401, 403):
                raise RuntimeError("Rasa refused the API token (RASA_AUTH_TOKEN or .hotline/rasa_api_token.secret)")
            reply.raise_for_status()
            return await reply.json()

    async def case(self, address: str) -> dict[str, Any] | None:
        """The hub's latest case of this conversation, as a trainer sees it (None: no case)."""
        if not self.endpoints.hub_user:
            raise RuntimeError("a trainer's hub login is needed to read cases (HOTLINE_REPLAY_USER and "
                               "HOTLINE_REPLAY_PASSWORD, or --spawn)")
        await self._login()
        params = {"conversation": self.conversation_id(address)}
        cases: list[dict[str, Any]] = []
        for status in ("open", "closed"):
            async with self.session.get(f"{self.endpoints.hub}/api/cases",
                                        params={**params, "status": status}) as reply:
                reply.raise_for_status()
                cases += await reply.json()
        return max(cases, key=lambda c: c.get("created_at") or "", default=None)

    async def case_by_id(self, case_id: str) -> dict[str, Any]:
        """One case with its whole transcript, as the replay account may see it."""
        if not self.endpoints.hub_user:
            raise RuntimeError("a hub login is needed: HOTLINE_REPLAY_USER and HOTLINE_REPLAY_PASSWORD")
        await self._login()
        async with self.session.get(f"{self.endpoints.hub}/api/cases/{quote(case_id, safe='')}") as reply:
            if reply.status != 200:
                body = await reply.json(content_type=None)
                raise RuntimeError(f"the hub answered {reply.status}: {(body or {}).get('error', '')}")
            return await reply.json()

    async def _login(self) -> None:
        async with self.hub_login:
            if self.logged_in:
                return
            credentials = {"username": self.endpoints.hub_user, "password": self.endpoints.hub_password}
            from bot.agents.app import CSRF_HEADER, CSRF_VALUE

            async with self.session.post(f"{self.endpoints.hub}/api/login", json=credentials,
                                         headers={CSRF_HEADER: CSRF_VALUE}) as reply:
                if reply.status != 200:
                    raise RuntimeError(f"the hub refused the trainer login ({reply.status})")
            self.logged_in = True


def user_events(tracker: dict[str, Any]) -> list[int]:
    """Positions of the texter's messages; intents the hub triggers ("nobody took the case yet")
    are user events too in Rasa, and are left out."""
    return [i for i, e in enumerate(tracker.get("events") or [])
            if e.get("event") == "user" and not str(e.get("text") or "").startswith(EXTERNAL_MESSAGE_PREFIX)]


def turn_done(tracker: dict[str, Any], users_before: int) -> bool:
    """The texter's new message was handled: an ``action_listen`` follows it, or the conversation
    is paused (an agent has it: the message is recorded and the bot stays quiet)."""
    users = user_events(tracker)
    if len(users) <= users_before:
        return False
    events = tracker.get("events") or []
    listened = any(e.get("event") == "action" and e.get("name") == "action_listen" for e in events[users[-1]:])
    return listened or bool(tracker.get("paused"))


def conversation_state(tracker: dict[str, Any]) -> dict[str, Any]:
    """The conversation's triage as the summary shows it (the detected language when unsupported)."""
    slots = tracker.get("slots") or {}
    supported = slots.get("language_supported") is not False
    return {"language": slots.get("language") if supported else slots.get("detected_language") or slots.get("language"),
            "indicators": list(slots.get("indicators") or []), "risk": slots.get("risk") or "none",
            "imminent": bool(slots.get("imminent"))}


class Runner:
    def __init__(self, client: StackClient, reserved: set[str] | None = None) -> None:
        self.client = client
        self.reserved = reserved if reserved is not None else set()

    async def fresh_number(self) -> str:
        """A fictional 555-01xx number nobody has used on this stack, by SMS or WhatsApp: training
        cases, a new conversation each run (a used number would carry its old tracker into the script)."""
        while True:
            number = random_training_number()
            if number in self.reserved:
                continue
            self.reserved.add(number)
            if not any([user_events(await self.client.tracker(a)) for a in (number, f"whatsapp:{number}")]):
                return number

    async def play(self, script: Script, on_turn: Callable[[], None] | None = None) -> ScriptResult:
        started = time.monotonic()
        result = ScriptResult(script=script, address="")
        try:
            number = result.address = await self.fresh_number()
            for index, turn in enumerate(script.turns, 1):
                if turn.delay:
                    await asyncio.sleep(turn.delay)
                channel = turn.channel or script.channel
                address = f"whatsapp:{number}" if channel == "whatsapp" else number
                try:
                    observed = await self.turn(index, turn, address)
                except (RuntimeError, aiohttp.ClientError, asyncio.TimeoutError) as error:
                    raise RuntimeError(f"turn {index}: {error or type(error).__name__}") from error
                observed.failures = check(turn.expect, observed)
                result.turns.append(observed)
                if on_turn:
                    on_turn()
            if script.expect_end and result.turns:
                result.end_failures = check(script.expect_end, result.turns[-1])
        except (RuntimeError, aiohttp.ClientError, asyncio.TimeoutError) as error:
            result.error = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        result.seconds = time.monotonic() - started
        return result

    async def turn(self, index: int, turn: Turn, address: str) -> TurnResult:
        started = time.monotonic()
        users_before = len(user_events(await self.client.tracker(address)))
        replies_before = len(await self.client.delivered(address))
        await self.client.send(address, turn.texter)
        tracker = await self._until_done(address, users_before, quiet_ok=turn.expect.get("silent") is True)
        events = tracker.get("events") or []
        handled = len(user_events(tracker)) > users_before
        last_user = user_events(tracker)[-1] if handled else len(events)
        bots = [e for e in events[last_user:] if e.get("event") == "bot"]
        parse = (events[last_user].get("parse_data") or {}) if handled else {}
        triage = parse.get("triage") or {}
        replies = await self._replies(address, replies_before, expected=len(bots))
        result = TurnResult(
            index=index, turn=turn, address=address,
            language=(parse.get("language_detection") or {}).get("language"),
            message_indicators=list(triage.get("indicators") or []), message_risk=triage.get("risk"),
            responses=[(e.get("metadata") or {}).get("utter_action") or "(text)" for e in bots],
            replies=[{"body": m["body"], "segments": segment_count(m["body"]) or 1, "status": m.get("status")}
                     for m in replies],
            state=conversation_state(tracker),
        )
        if self.client.endpoints.hub_user:
            result.case = await self.client.case(address)
        result.seconds = time.monotonic() - started
        return result

    async def _until_done(self, address: str, users_before: int, quiet_ok: bool) -> dict[str, Any]:
        """The tracker once the turn is handled. A turn expected to be silent may never reach Rasa
        (the channel drops messages from a texter who sent STOP): then nothing changing for
        ``SILENT_WAIT`` seconds ends it."""
        started = time.monotonic()
        while True:
            tracker = await self.client.tracker(address)
            if turn_done(tracker, users_before):
                return tracker
            waited = time.monotonic() - started
            if quiet_ok and waited > SILENT_WAIT and len(user_events(tracker)) == users_before:
                return tracker
            if waited > TURN_TIMEOUT:
                raise RuntimeError(f"the bot did not handle the message within {TURN_TIMEOUT:.0f} s")
            await asyncio.sleep(POLL)

    async def _replies(self, address: str, before: int, expected: int) -> list[dict[str, Any]]:
        """The new messages to the texter, once they stop arriving: at least one per bot event
        (long ones are split), or nothing new for ``QUIET`` seconds (STOP, cover mode)."""
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        seen, changed = before, time.monotonic()
        while True:
            messages = await self.client.delivered(address)
            now = time.monotonic()
            if len(messages) != seen:
                seen, changed = len(messages), now
            new = len(messages) - before
            complete = expected and new >= expected and now - changed >= SETTLE
            if complete or now - changed >= QUIET or now > deadline:
                return messages[before:]
            await asyncio.sleep(POLL)


async def play_all(scripts: list[Script], endpoints: Endpoints, concurrency: int = 4,
                   on_turn: Callable[[], None] | None = None) -> list[ScriptResult]:
    """Every script, ``concurrency`` at a time, each on its own number; results in script order."""
    limit = asyncio.Semaphore(max(1, concurrency))
    async with StackClient(endpoints) as client:
        runner = Runner(client)

        async def one(script: Script) -> ScriptResult:
            async with limit:
                return await runner.play(script, on_turn)

        return list(await asyncio.gather(*(one(s) for s in scripts)))
