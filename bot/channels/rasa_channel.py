"""The project's Twilio input channel for Rasa: ``/webhooks/hotline_twilio/webhook`` and ``/status``.

Unlike Rasa's built-in ``twilio`` channel it checks ``X-Twilio-Signature``, answers the webhook as
soon as the message is stored (empty TwiML), processes turns in the background in order per
conversation, and sends through a persisted outbox with the async Twilio client. Enabled in
``credentials.yml`` as ``bot.channels.rasa_channel.HotlineTwilioInput``; settings come from the
environment (see ``bot.channels.config``).
"""
from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import uuid
from typing import Any, Awaitable, Callable, Text

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request

from bot.channels.config import STATUS_PATH, TwilioConfig
from bot.channels.inbound import CHANNEL_NAME, BadRequest, Dispatcher, form_params, parse_incoming, signed
from bot.channels.keywords import carrier_keywords
from bot.channels.outage import Outage, database_unavailable
from bot.channels.outbox import Sender
from bot.channels.segments import split_message
from bot.channels.store import ChannelStore
from bot.log_redaction import install as redact_logs, remember
from bot.privacy import default_keys
from bot.retention import DeletionRequests, Eraser
from bot.settings import Settings
from bot.storage import database_url, make_engine

logger = logging.getLogger(__name__)
redact_logs()

#: Twilio's webhooks are a few kilobytes (a 1,600-character body percent-encoded, 10 media links):
#: anything much larger is refused before it is parsed.
MAX_REQUEST = 64 * 1024
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class Runtime:
    """The store and the two background workers of one Rasa server process."""

    def __init__(self, config: TwilioConfig) -> None:
        self.config = config
        self.store: ChannelStore | None = None
        self.dispatcher: Dispatcher | None = None
        self.sender: Sender | None = None
        self.tasks: list[asyncio.Task] = []
        self.webhooks = Outage("database, for webhooks")

    async def start(self, handler: Callable[[UserMessage], Awaitable[Any]]) -> None:
        redact_logs()  # again: Rasa set its loggers' levels after this module was imported
        settings = Settings.from_env()
        engine = make_engine(database_url(settings))
        self.store = await asyncio.to_thread(ChannelStore, engine, default_keys(), self.config.lease)
        base = self.config.public_url or f"http://127.0.0.1:{settings.rasa_port}"
        self.sender = Sender(self.store, self.config, base + STATUS_PATH)
        self.dispatcher = Dispatcher(self.store, _remembering(handler), self.config, carrier_keywords(),
                                     on_replies=self.sender.wake.set)
        self.tasks = [asyncio.create_task(self.sender.run())]

    def start_turns(self, agent) -> None:
        """Turns start once Rasa's agent is loaded (messages stored meanwhile wait in the inbox)."""
        self.dispatcher.attach(agent)
        self.tasks.append(asyncio.create_task(self.dispatcher.run()))

    async def stored(self, write: Callable[[], Awaitable[Any]]) -> tuple[Any, response.HTTPResponse | None]:
        """A webhook's database write: its result, or the answer to give when the database is down
        (503, so that Twilio tries again later rather than taking a message nobody stored)."""
        try:
            result = await write()
        except Exception as error:  # noqa: BLE001 - only a database outage is answered here
            if not database_unavailable(error):
                raise
            self.webhooks.down(error)
            return None, response.text("database unavailable, try again later", status=503)
        self.webhooks.up()
        return result, None

    def start_eraser(self, agent) -> None:
        """Deletion requests are carried out here, where Rasa's lock and tracker store are."""
        requests = DeletionRequests(self.store.engine)
        self.tasks.append(asyncio.create_task(Eraser(requests, agent, self.store).run()))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.dispatcher:
            await self.dispatcher.close()
        if self.sender:
            await self.sender.close()

    def verified(self, request: Request) -> tuple[dict[str, str], response.HTTPResponse | None]:
        """Twilio's form parameters, or the answer for a request that must go no further."""
        if len(request.body or b"") > MAX_REQUEST:
            return {}, response.text("too large", status=413)
        params = form_params(request.body)
        if not signed(self.config, self.public_url(request), params,
                      request.headers.get("X-Twilio-Signature")):
            return params, response.text("forbidden", status=403)
        if self.store is None:
            return params, response.text("starting", status=503)
        return params, None

    def public_url(self, request: Request) -> str:
        """The URL Twilio signed: the configured public base, else the URL as received."""
        if not self.config.public_url:
            return request.url
        query = f"?{request.query_string}" if request.query_string else ""
        return f"{self.config.public_url}{request.path}{query}"


def _remembering(handler: Callable[[UserMessage], Awaitable[Any]]) -> Callable[[UserMessage], Awaitable[Any]]:
    """Rasa's handler, after telling the log scrubber the turn's text (also for messages stored
    before a restart, which this process's webhook never saw)."""
    async def handle(message: UserMessage) -> Any:
        remember(message.text)
        return await handler(message)
    return handle


class OutboxOutput(OutputChannel):
    """Replies Rasa sends outside a texter's turn (the hub's ``trigger_intent``): queued in the
    outbox like any reply, each under its own key, and sent by this process's sender."""

    @classmethod
    def name(cls) -> Text:
        return CHANNEL_NAME

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.batch = uuid.uuid4().hex
        self.numbers = itertools.count()

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        store = self.runtime.store
        for part in split_message(text):
            key = f"ext:{self.batch}:{next(self.numbers)}"
            await store.call(store.enqueue, recipient_id, key, "bot", part)
        self.runtime.sender.wake.set()


class HotlineTwilioInput(InputChannel):
    @classmethod
    def name(cls) -> Text:
        return CHANNEL_NAME

    @classmethod
    def from_credentials(cls, credentials: dict[Text, Any] | None) -> "HotlineTwilioInput":
        return cls(TwilioConfig.from_env())

    def __init__(self, config: TwilioConfig) -> None:
        self.config = config
        self.runtime = Runtime(config)

    def get_output_channel(self) -> OutputChannel | None:
        return OutboxOutput(self.runtime) if self.runtime.store else None

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        runtime = self.runtime
        hook = Blueprint("hotline_twilio_webhook", __name__)

        @hook.listener("before_server_start")
        async def start(_app, _loop) -> None:
            await runtime.start(on_new_message)

        @hook.listener("after_server_start")
        async def settle(app, _loop) -> None:
            runtime.start_turns(app.ctx.agent)
            runtime.start_eraser(app.ctx.agent)
            # The model and Rasa are loaded by now: millions of long-lived objects that every full
            # garbage collection would walk again, stopping all threads (webhook answers took up
            # to 400 ms under load). Freezing them keeps full collections to what turns allocate.
            gc.freeze()

        @hook.listener("before_server_stop")
        async def stop(_app, _loop) -> None:
            await runtime.stop()

        @hook.route("/", methods=["GET"])
        async def health(_request: Request) -> response.HTTPResponse:
            if runtime.store is None:
                return response.json({"status": "starting"}, status=503)
            return response.json({"status": "ok"})

        @hook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> response.HTTPResponse:
            params, refusal = runtime.verified(request)
            if refusal:
                return refusal
            try:
                message = parse_incoming(params)
            except BadRequest as error:
                logger.warning("signed webhook without a usable %s", error)
                return response.text("bad request", status=400)
            remember(message.address, message.body, *(item["url"] for item in message.media))
            accepted, refusal = await runtime.stored(lambda: runtime.store.call(
                runtime.store.accept, message.sid, message.address, message.hotline_number,
                message.body, message.media))
            if refusal:
                return refusal
            if accepted[0]:
                runtime.dispatcher.wake.set()
            return response.text(EMPTY_TWIML, content_type="text/xml")

        @hook.route("/status", methods=["POST"])
        async def status(request: Request) -> response.HTTPResponse:
            params, refusal = runtime.verified(request)
            if refusal:
                return refusal
            sid, state = params.get("MessageSid", ""), params.get("MessageStatus", "")
            if not sid or not state:
                return response.text("bad request", status=400)
            code = params.get("ErrorCode")
            _, refusal = await runtime.stored(lambda: runtime.store.call(
                runtime.store.record_delivery, sid, state, int(code) if code and code.isascii() and code.isdigit() else None))
            return refusal or response.text("", status=204)

        return hook
