"""Inbound: Twilio's webhook form checked and parsed, and turns processed in order, off the request.

The webhook only checks the signature, stores the message and answers; ``Dispatcher`` then feeds
stored messages to Rasa, one at a time per conversation, many conversations at once.
"""
from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
from dataclasses import dataclass, field
from typing import Awaitable, Callable, TypeVar
from urllib.parse import parse_qsl

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.shared.core.events import BotUttered, UserUttered
from twilio.request_validator import RequestValidator

from bot.agents.summary import AGENT
from bot.channels.config import ADDRESS, TwilioConfig
from bot.channels.fallback import ActionServer, Fallback, unreverted
from bot.channels.keywords import CarrierKeywords
from bot.channels.outage import database_unavailable, fail_loudly, persist
from bot.channels.segments import split_message
from bot.channels.store import ChannelStore, Inbound
from bot.channels.worker import ClaimLoop

logger = logging.getLogger(__name__)

CHANNEL_NAME = "hotline_twilio"
MAX_BODY = 5000
MAX_MEDIA = 10
# How long a thread may hold the interpreter before another runs (Python's default is 5 ms). Each
# database call of a webhook gives the interpreter up and waits this long to get it back while a
# turn computes, so the default made a webhook answer wait hundreds of milliseconds.
SWITCH_INTERVAL = 0.0005
# Rasa reads a message starting with "/" as an intent: texters must not be able to trigger one.
INTENT_PREFIX = re.compile(r"^[\s/]+")
# Text the dispatcher sends Rasa for channel events, as Rasa's own intent shortcut.
STOP_TURN, START_TURN, HELP_TURN, MEDIA_TURN = "/stop", "/greet", "/ask_help", "/share_media"
#: Seconds between checks of a turn held while the action server is down.
HOLD_RETRY = 2.0
T = TypeVar("T")


class BadRequest(ValueError):
    """A signed request that is not a usable Twilio message."""


@dataclass(frozen=True)
class Incoming:
    sid: str
    address: str
    hotline_number: str
    body: str
    media: list[dict] = field(default_factory=list)


def form_params(body: bytes) -> dict[str, str]:
    """Twilio's form body as a dict; undecodable bytes are replaced, not fatal."""
    text = body.decode("utf-8", errors="replace")
    return dict(parse_qsl(text, keep_blank_values=True))


def signed(config: TwilioConfig, url: str, params: dict[str, str], signature: str | None) -> bool:
    """Twilio's signature over the public URL and the form parameters.

    Without ``HOTLINE_PUBLIC_URL`` the URL is built from the client's Host header, which can hold
    anything: the validator raises ``ValueError`` on a port that is not a number or a lone "[", and
    ``UnicodeEncodeError`` on undecodable bytes. Twilio signed no such URL, so it is refused (403),
    not a server error (found by tests/test_fuzz_webhook.py).
    """
    if not signature or not config.auth_token:
        return False
    try:
        return RequestValidator(config.auth_token).validate(url, params, signature)
    except ValueError:
        return False


def clean_text(text: str) -> str:
    """What can be stored and processed: no NUL or lone surrogates, bounded length."""
    text = text.replace("\x00", "").encode("utf-8", errors="replace").decode("utf-8")
    return text[:MAX_BODY]


def parse_incoming(params: dict[str, str]) -> Incoming:
    sid = params.get("MessageSid") or params.get("SmsMessageSid") or ""
    address, hotline = params.get("From", ""), params.get("To", "")
    if not re.fullmatch(r"[A-Z]{2}[0-9a-fA-F]{32}", sid):
        raise BadRequest("MessageSid")
    # fullmatch: the pattern's "$" also matches before a final newline ("+15145550100\n").
    if not ADDRESS.fullmatch(address) or not ADDRESS.fullmatch(hotline):
        raise BadRequest("From/To")
    try:
        count = min(MAX_MEDIA, int(params.get("NumMedia") or 0))
    except ValueError as error:
        raise BadRequest("NumMedia") from error
    media = [{"url": params[f"MediaUrl{i}"], "content_type": params.get(f"MediaContentType{i}", "")}
             for i in range(count) if params.get(f"MediaUrl{i}")]
    return Incoming(sid=sid, address=address, hotline_number=hotline,
                    body=clean_text(params.get("Body", "")), media=media)


def turn_texts(message: Inbound, keyword: str | None) -> list[str]:
    """What Rasa is sent for one inbound message: carrier keywords and media become intents."""
    if keyword == "opt_out":
        return [STOP_TURN]
    if keyword == "opt_in":
        return [START_TURN]
    if keyword == "help":
        return [HELP_TURN]
    texts = []
    body = INTENT_PREFIX.sub("", message.body)
    if body.strip() or not message.media:
        texts.append(body)
    if message.media:
        texts.append(MEDIA_TURN)
    return texts


Handler = Callable[[UserMessage], Awaitable[None]]


class TurnThread:
    """Rasa turns on their own event loop in a thread, so webhooks are answered while NLU runs.

    Rasa runs its NLU pipeline and action-result checks synchronously on the event loop (about
    20 ms a turn here); on the server's loop that would hold every webhook answer behind the
    turns in progress. On a second loop the webhook only waits for the interpreter's switch
    interval (5 ms). Rasa's agent is safe to share: its stores and action calls make their own
    connections per call, and the lock store still serialises each conversation.
    """

    def __init__(self) -> None:
        sys.setswitchinterval(SWITCH_INTERVAL)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="rasa-turns", daemon=True)
        self.thread.start()

    async def run(self, coroutine: Awaitable[T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Dispatcher(ClaimLoop):
    """Claims stored messages and runs their turns through Rasa, in order per conversation.

    A turn that cannot run for a reason that is not the message's waits, uncounted: while the
    database is unavailable (``bot.channels.outage``), and while the action server is down, when
    the texter and the agents are told at once (``bot.channels.fallback``). A turn tried again
    after a failure or a crash first looks in Rasa's tracker: if Rasa had recorded it, its replies
    are taken from there instead of running it (and answering it) twice.
    """

    def __init__(self, store: ChannelStore, handler: Handler, config: TwilioConfig,
                 keywords: CarrierKeywords, on_replies: Callable[[], None]) -> None:
        super().__init__(config.turn_concurrency)
        self.store, self.handler, self.config, self.keywords = store, handler, config, keywords
        self.on_replies = on_replies
        self.turns = TurnThread()
        self.agent = None
        self.actions: ActionServer | None = None
        self.fallback: Fallback | None = None
        #: Messages whose turn failed on the database: Rasa may have saved it before the failure.
        self.unsure: set[str] = set()

    def attach(self, agent) -> None:
        """Rasa's agent, once loaded: its tracker store raises instead of forgetting (see
        ``fail_loudly``), its action server is checked before each turn and watched during it.
        An agent without a model's processor (the channel tests' scripted dialogue) is left as is."""
        processor = getattr(agent, "processor", None)
        if processor is None:
            return
        self.agent = agent
        fail_loudly(agent.tracker_store)
        if processor.action_endpoint is not None:
            self.actions = ActionServer(agent)
            self.fallback = Fallback(agent, self.store)

    async def close(self) -> None:
        self.turns.stop()
        if self.actions:
            await self.actions.close()

    async def fetch(self, limit: int) -> list[Inbound]:
        return await self.store.call(self.store.claim_inbound, limit)

    async def handle(self, message: Inbound) -> None:
        try:
            await self._process(message)
        except Exception as error:  # noqa: BLE001 - every failure leaves the message retried or marked
            if database_unavailable(error):
                self.database.down(error)
                self.unsure.add(message.sid)
                await persist(lambda: self.store.call(self.store.hold_inbound, message,
                                                      self.config.retry_base, []), self.database)
                return
            logger.exception("turn of inbound message %s failed", message.id)
            delay = self.config.backoff(message.attempts + 1)
            retried = await self.store.call(self.store.retry_inbound, message, delay,
                                              self.config.turn_attempts)
            if not retried:
                logger.error("inbound message %s failed %d times; left for an agent",
                             message.id, self.config.turn_attempts)

    async def _process(self, message: Inbound) -> None:
        keyword = None if message.media else self.keywords.classify(message.body)
        opted_out = await self.store.call(self.store.is_opted_out, message.conversation_id)
        if opted_out and keyword != "opt_in":
            await self.store.call(self.store.complete, message, [], "opted_out")
            return
        if keyword == "opt_in" and not opted_out:
            # YES is also Twilio's opt-in word, and the answer to "may a person text you?": it
            # restarts a conversation only for a texter who had sent STOP.
            keyword = None
        if keyword in ("opt_out", "opt_in"):
            await self.store.call(self.store.set_opted_out, message.conversation_id,
                                    keyword == "opt_out")
        if self.actions and not await self.actions.healthy() and await self._hold(message, keyword):
            return
        failures = ActionServer.watch_turn()
        replies = await self._turns(message, keyword)
        if failures and self.fallback:
            logger.error("inbound message %s: the action server failed during its turn (%s)",
                         message.id, ", ".join(sorted(set(failures))))
            if not await self.actions.healthy(max_age=0) and \
                    await self.turns.run(self.fallback.take_back(message)):
                await self._hold(message, keyword, taken_back=True)
                return
            replies += await self.turns.run(self.fallback.after_failed_turn(message, CHANNEL_NAME))
        if await self.store.call(self.store.complete, message, replies):
            self.on_replies()
        self.unsure.discard(message.sid)

    async def _hold(self, message: Inbound, keyword: str | None, taken_back: bool = False) -> bool:
        """The action server is down: the turn waits, and the texter and the agents are told
        (not for STOP: the carrier confirms it). False when an agent holds the conversation: Rasa
        only records the message then, so the turn may run (a turn taken back waits regardless)."""
        replies: list[str] | None = []
        if keyword != "opt_out":
            replies = await self.turns.run(self.fallback.while_down(message, CHANNEL_NAME))
            if replies is None and not taken_back:
                return False
        if await self.store.call(self.store.hold_inbound, message, HOLD_RETRY, replies or []):
            self.on_replies()
        return True

    async def _turns(self, message: Inbound, keyword: str | None) -> list[str]:
        """Runs the message's turns through Rasa; returns the replies, split for SMS."""
        metadata = {"channel": message.channel, "media": message.media} if message.media else {
            "channel": message.channel}
        retried = message.attempts or message.sid in self.unsure
        recorded = await self._recorded(message) if retried and self.agent else {}
        texts: list[str] = []
        for index, text in enumerate(turn_texts(message, keyword)):
            message_id = f"{message.sid}:{index}"
            if message_id in recorded:
                texts += recorded[message_id]
                continue
            collector = CollectingOutputChannel()
            await self.turns.run(self.handler(UserMessage(
                text, collector, message.conversation_id, input_channel=CHANNEL_NAME,
                message_id=message_id, metadata=metadata)))
            texts += [sent["text"] for sent in collector.messages if sent.get("text")]
        return [part for text in texts for part in split_message(text)]

    async def _recorded(self, message: Inbound) -> dict[str, list[str]]:
        """Turns of ``message`` Rasa already recorded (a process died, or a database write failed,
        after Rasa saved the tracker and before the turn was marked done), with their replies."""
        tracker = await self.turns.run(self.agent.tracker_store.retrieve(message.conversation_id))
        return recorded_turns(unreverted(tracker.events) if tracker else [], message.sid)


def recorded_turns(events, sid: str) -> dict[str, list[str]]:
    """The texts the bot sent after each user event of the inbound message ``sid`` (Rasa message
    ids ``<sid>:<index>``), up to the next user event; an agent's lines are not the bot's replies.
    ``events`` are without the turns taken back (``unreverted``)."""
    found: dict[str, list[str]] = {}
    current = None
    for event in events:
        if isinstance(event, UserUttered):
            current = event.message_id if (event.message_id or "").startswith(f"{sid}:") else None
            if current:
                found[current] = []
        elif isinstance(event, BotUttered) and current and event.text and \
                (event.metadata or {}).get("from") != AGENT:
            found[current].append(event.text)
    return found
