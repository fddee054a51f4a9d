"""When the bot's action server cannot run a texter's turn: a safe reply, and a person instead.

What Rasa 3.6 does by itself: a custom action it cannot reach (or that answers 5xx) is logged and
the turn goes on without that action's events. Every step of this bot is a custom action (the
language, the questions, the escalation), so the texter got nothing at all and no agent heard of it.

So the channel (``bot.channels.inbound.Dispatcher``):

- checks the action server (rasa-sdk's ``GET /health``) before each turn; while it is down the
  message waits, uncounted, and its turn runs when the server is back, whole;
- watches Rasa's calls to the action server during a turn (``WatchedEndpoint``): a turn in which
  one failed was half done. If the server is down, the turn is taken back with Rasa's own
  ``UserUtteranceReverted`` (nothing of it is sent) and waits like the others; if it is up (an
  action failed by itself), the half turn stays as Rasa recorded it, so that a broken action
  cannot hold a conversation forever;
- in every case tells the texter, in their language, that a person will read their message and to
  call 911 in danger (``utter_bot_unavailable`` of domain.yml, chosen and filled in by Rasa's own
  response generator on the ``language`` slot like every response), and puts the case in the
  agents' queue with the messages so far (reason ``bot_unavailable``).

A conversation an agent holds (Rasa paused) gets neither: a person is already reading it.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from functools import lru_cache
from typing import Any
from urllib.parse import urljoin

import aiohttp
from rasa.core.channels.channel import UserMessage
from rasa.core.nlg import TemplatedNaturalLanguageGenerator
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import Event, UserUttered, UserUtteranceReverted
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import ClientResponseError, EndpointConfig

from bot import PROJECT_ROOT
from bot.agents.handoff import SqlHandoffQueue
from bot.agents.summary import build_summary
from bot.channels.segments import split_message
from bot.channels.store import ChannelStore, Inbound
from bot.conversation import steps
from bot.conversation.answers import answers
from bot.conversation.facts import fact_slots
from bot.conversation.language import language_slots
from bot.nlu.components import LANGUAGE_DETECTION

logger = logging.getLogger(__name__)

#: Seconds the action server has to answer its health check.
HEALTH_TIMEOUT = 5.0
#: Seconds a good health check is trusted (a server that dies meanwhile fails the turn, which is
#: then taken back): turns at load do not each wait for one more request.
HEALTHY_FOR = 1.0
#: Failed calls to the action server in the turn running in this context (set per turn).
TURN_FAILURES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("turn_failures", default=None)


@lru_cache(maxsize=1)
def domain() -> Domain:
    """The project's domain.yml: the fallback's response and the slots its conditions name."""
    return Domain.load(PROJECT_ROOT / "domain.yml")


def render(name: str, slots: dict[str, Any], channel: str) -> list[str]:
    """A response of domain.yml as Rasa sends it for these slots, split for SMS."""
    generated = TemplatedNaturalLanguageGenerator(domain().responses).generate_from_slots(name, slots, channel)
    return split_message(generated["text"]) if generated and generated.get("text") else []


def unavailable_slots(slots: dict[str, Any], text: str, detection: dict[str, Any] | None) -> dict[str, Any]:
    """The slots the fallback is said with: the conversation's, its language updated from this
    message as the slot validation action would (it could not run), and the referral facts."""
    previous = slots.get("language")
    short_answer = answers().classify(text, previous) not in (None, "delete")
    slots = {**slots, **language_slots(previous, detection, short_answer)}
    return {**slots, **fact_slots(slots["language"])}


def unreverted(events: list[Event]) -> list[Event]:
    """A tracker's events without the turns ``UserUtteranceReverted`` took back (the texter's
    message and what followed it). Unlike ``applied_events()``, which folds a form's steps away,
    every texter message that stands is kept."""
    kept: list[Event] = []
    for event in events:
        if isinstance(event, UserUtteranceReverted):
            while kept and not isinstance(kept.pop(), UserUttered):
                pass
        else:
            kept.append(event)
    return kept


class WatchedEndpoint(EndpointConfig):
    """Rasa's action endpoint, noting in the running turn (``TURN_FAILURES``) each call that failed."""

    @classmethod
    def of(cls, endpoint: EndpointConfig) -> "WatchedEndpoint":
        return cls(endpoint.url, endpoint.params, endpoint.headers, endpoint.basic_auth, endpoint.token,
                   endpoint.token_name, endpoint.cafile, type=endpoint.type, **endpoint.kwargs)

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().request(*args, **kwargs)
        except ClientResponseError as error:
            if error.status != 400:  # 400 is a form rejecting its slot: Rasa's normal flow
                _note(f"HTTP {error.status}")
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            _note(type(error).__name__)
            raise


def _note(failure: str) -> None:
    failures = TURN_FAILURES.get()
    if failures is not None:
        failures.append(failure)


class ActionServer:
    """Rasa's action server, as the agent's endpoint names it: checked, and watched during turns."""

    def __init__(self, agent) -> None:
        endpoint = agent.processor.action_endpoint
        self.health_url = urljoin(endpoint.url, "health")  # rasa-sdk: /webhook and /health
        watched = WatchedEndpoint.of(endpoint)
        agent.action_endpoint = agent.processor.action_endpoint = watched
        self.session: aiohttp.ClientSession | None = None
        self.healthy_at = 0.0

    async def healthy(self, max_age: float = HEALTHY_FOR) -> bool:
        """Whether the action server answers, or answered less than ``max_age`` seconds ago."""
        if time.monotonic() - self.healthy_at < max_age:
            return True
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT))
        try:
            async with self.session.get(self.health_url) as reply:
                ok = reply.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            ok = False
        self.healthy_at = time.monotonic() if ok else 0.0
        return ok

    @staticmethod
    def watch_turn() -> list[str]:
        """A list the failed action calls of the turn about to run (in this task) are added to."""
        failures: list[str] = []
        TURN_FAILURES.set(failures)
        return failures

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class Fallback:
    """What the texter is told, and what the agents get, when the bot cannot answer."""

    def __init__(self, agent, store: ChannelStore) -> None:
        self.agent, self.store = agent, store
        self.queue = SqlHandoffQueue(store.engine, store.keys)
        #: Per conversation, the waiting message and how many were waiting when agents were last told.
        self.told: dict[str, tuple[str, int]] = {}

    async def while_down(self, message: Inbound, channel: str) -> list[str] | None:
        """``message`` waits for the action server. None when an agent holds the conversation (Rasa
        only records the message then: the turn may run); else the replies to send now, once per
        waiting message. The agents are told again when more messages are waiting."""
        conv = message.conversation_id
        tracker = await self._tracker(conv)
        if tracker.is_paused():
            return None
        waiting = await self.store.call(self.store.inbound_since, message.id - 1, [conv])
        if self.told.get(conv) == (message.sid, len(waiting)):
            return []
        first = self.told.get(conv, ("",))[0] != message.sid
        self.told[conv] = (message.sid, len(waiting))
        slots = await self._slots(tracker, message)
        events = [event.as_dict() for event in unreverted(tracker.events)] + [_user_event(m) for m in waiting]
        return await self._tell(conv, slots, events, channel, reply=first)

    async def take_back(self, message: Inbound) -> bool:
        """Revert the turns of ``message`` Rasa finished without an action (Rasa's
        ``UserUtteranceReverted``, under the conversation's lock), so that they run whole later.
        False when an agent holds the conversation: Rasa only recorded the message, it stays."""
        conv = message.conversation_id
        async with self.agent.lock_store.lock(conv):
            tracker = await self._tracker(conv)
            if tracker.is_paused():
                return False
            ours = [event for event in unreverted(tracker.events) if isinstance(event, UserUttered)
                    and (event.message_id or "").startswith(f"{message.sid}:")]
            for _ in ours:
                tracker.update(UserUtteranceReverted())
            await self.agent.tracker_store.save(tracker)
        return True

    async def after_failed_turn(self, message: Inbound, channel: str) -> list[str]:
        """An action failed during the turn of ``message`` while the action server is up (the
        action's own fault), and Rasa finished the turn without it: the replies to add, and the
        case goes to the agents."""
        tracker = await self._tracker(message.conversation_id)
        if tracker.is_paused():
            return []
        slots = await self._slots(tracker, message)
        events = [event.as_dict() for event in unreverted(tracker.events)]
        return await self._tell(message.conversation_id, slots, events, channel, reply=True)

    async def _tell(self, conv: str, slots: dict[str, Any], events: list[dict], channel: str,
                    reply: bool) -> list[str]:
        step = steps.bot_unavailable(slots)
        summary = build_summary(conv, {**slots, **step.slots}, events, time.time())
        await self.store.call(self.queue.escalate, conv, summary, step.escalate)
        logger.warning("conversation %s escalated: the bot's actions are unavailable", conv)
        return [part for name in step.responses for part in render(name, slots, channel)] if reply else []

    async def _tracker(self, conv: str) -> DialogueStateTracker:
        tracker = await self.agent.tracker_store.retrieve(conv)
        return tracker or DialogueStateTracker(conv, domain().slots)

    async def _slots(self, tracker: DialogueStateTracker, message: Inbound) -> dict[str, Any]:
        detection = None
        if message.body.strip():
            parsed = await self.agent.processor.parse_message(
                UserMessage(message.body, sender_id=message.conversation_id), tracker)
            detection = parsed.get(LANGUAGE_DETECTION)
        return unavailable_slots(tracker.current_slot_values(), message.body, detection)


def _user_event(message: Inbound) -> dict[str, Any]:
    """A waiting texter message as the case summary's transcript reads Rasa's user events."""
    return {"event": "user", "text": message.body, "timestamp": message.received_at}
