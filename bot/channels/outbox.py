"""Outbound: the persisted outbox sent through Twilio's REST API with the library's async client.

Each conversation's messages leave in the order they were queued; a message that Twilio refuses
for a while (429, 5xx, network) is retried with doubling delays and holds back the later messages
of its conversation only. Opted-out numbers and WhatsApp conversations outside the 24-hour window
are never sent to: those messages are marked (``opted_out``, ``outside_window``) for the agent hub.
A message claimed but not confirmed when a process dies is sent again when its lease runs out:
at-least-once at that single point, because Twilio's Messages API has no idempotency key.
While the database is unavailable the sender claims nothing and keeps the result of a send it made
until it can record it (``bot.channels.outage``), so a restart of the database sends nothing twice.
"""
from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
from twilio.base import values
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from bot.channels.config import WHATSAPP_WINDOW, TwilioConfig
from bot.channels.outage import persist
from bot.channels.store import ChannelStore, Outgoing
from bot.channels.worker import ClaimLoop

logger = logging.getLogger(__name__)

UNSUBSCRIBED = 21610
OUTSIDE_WINDOW = 63016


def twilio_client(config: TwilioConfig) -> Client:
    """The official client on the async aiohttp transport, pointed at ``TWILIO_API_URL``."""
    client = Client(config.account_sid, config.auth_token,
                    http_client=AsyncTwilioHttpClient(timeout=15))
    client.api.base_url = config.api_url
    # Both clients log every request's URL and headers at INFO: noise, and a privacy risk.
    for name in ("twilio.http_client", "twilio.async_http_client"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return client


def retryable(error: TwilioRestException) -> bool:
    return error.status == 429 or error.status >= 500


class Sender(ClaimLoop):
    """Sends claimed outbox messages; wakes on new replies and polls for other processes' work."""

    def __init__(self, store: ChannelStore, config: TwilioConfig, status_url: str | None,
                 client: Client | None = None, concurrency: int = 16) -> None:
        super().__init__(concurrency)
        self.store, self.config, self.status_url = store, config, status_url
        self.client = client or twilio_client(config)

    async def fetch(self, limit: int) -> list[Outgoing]:
        return await self.store.call(self.store.claim_outgoing, limit)

    async def _mark(self, message_id: int, status: str, twilio_sid: str | None = None,
                    error_code: int | None = None, retry_at: float | None = None) -> None:
        """Record a send's result, waiting out a database outage: a send Twilio accepted but not
        recorded would be sent again by whoever took the message over."""
        await persist(lambda: self.store.call(self.store.mark_outgoing, message_id, status, twilio_sid,
                                              error_code, retry_at), self.database)

    async def close(self) -> None:
        session = getattr(self.client.http_client, "session", None)
        if session is not None:
            await session.close()

    async def handle(self, message: Outgoing) -> None:
        blocked = self._blocked(message)
        if blocked:
            logger.warning("outbox message %s not sent: %s", message.id, blocked)
            await self._mark(message.id, blocked)
            return
        try:
            sent = await self.client.messages.create_async(
                to=message.to, from_=message.from_, body=message.body,
                status_callback=self.status_url or values.unset)
        except TwilioRestException as error:
            await self._refused(message, error)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            logger.warning("outbox message %s: Twilio unreachable (%s)", message.id, type(error).__name__)
            await self._retry(message, None)
        else:
            await self._mark(message.id, "accepted", sent.sid)

    def _blocked(self, message: Outgoing) -> str | None:
        if message.opted_out:
            return "opted_out"
        if message.channel == "whatsapp" and time.time() - message.last_inbound_at > WHATSAPP_WINDOW:
            return "outside_window"
        return None

    async def _refused(self, message: Outgoing, error: TwilioRestException) -> None:
        if retryable(error):
            await self._retry(message, error.code)
            return
        if error.code == UNSUBSCRIBED:
            await self.store.call(self.store.set_opted_out, message.conversation_id, True)
            status = "opted_out"
        elif error.code == OUTSIDE_WINDOW:
            status = "outside_window"
        else:
            status = "failed"
        logger.error("outbox message %s refused by Twilio: HTTP %s code %s", message.id,
                     error.status, error.code)
        await self._mark(message.id, status, None, error.code)

    async def _retry(self, message: Outgoing, code: int | None) -> None:
        attempts = message.attempts + 1
        if attempts >= self.config.send_attempts:
            logger.error("outbox message %s failed after %d attempts", message.id, attempts)
            await self._mark(message.id, "failed", None, code)
            return
        retry_at = time.time() + self.config.backoff(attempts)
        await self._mark(message.id, "queued", None, code, retry_at)
