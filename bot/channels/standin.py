"""The local Twilio stand-in: development and tests only, never production.

It implements the subset of Twilio the project uses, with Twilio's shapes and error codes:
``POST /2010-04-01/Accounts/{sid}/Messages.json`` (Basic auth), status callbacks and inbound
webhooks signed with the ``twilio`` library's ``RequestValidator`` exactly as Twilio signs them,
carrier opt-out keywords on SMS (error 21610 afterwards), WhatsApp's 24-hour window (error 63016
in the status callback). Plus what Twilio cannot give here: ``GET /emulator/messages?to=`` (what
the bot sent), fault injection (``POST /emulator/faults``) and the texter simulator page at ``/``.
State is in memory: restarting the stand-in is a new phone network.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from email.utils import formatdate
from pathlib import Path

from aiohttp import ClientError, ClientSession, ClientTimeout, web
from twilio.request_validator import RequestValidator

from bot.channels.config import ADDRESS, WEBHOOK_PATH, WHATSAPP_WINDOW
from bot.channels.keywords import carrier_keywords
from bot.channels.segments import segment_count
from bot.log_redaction import install as redact_logs

logger = logging.getLogger(__name__)

SIMULATOR = Path(__file__).parent / "simulator"
API = "2010-04-01"
MAX_BODY = 1600
OPT_OUT_REPLY = ("You have successfully been unsubscribed. You will not receive any more messages "
                 "from this number. Reply START to resubscribe.")
OPT_IN_REPLY = ("You have successfully been re-subscribed to messages from this number. Reply HELP "
                "for help. Reply STOP to unsubscribe. Msg&Data Rates May Apply.")


def new_sid(prefix: str = "SM") -> str:
    return prefix + secrets.token_hex(16)


def twilio_error(status: int, code: int, message: str) -> web.Response:
    """Twilio's error body shape."""
    return web.json_response({"code": code, "message": message, "status": status,
                              "more_info": f"https://www.twilio.com/docs/errors/{code}"},
                             status=status)


@dataclass
class Message:
    seq: int
    sid: str
    direction: str  # "inbound" (texter to hotline) or "outbound-api"
    to: str
    from_: str
    body: str
    media: list[str] = field(default_factory=list)
    status: str = "queued"
    error_code: int | None = None
    created: float = field(default_factory=time.time)

    @property
    def texter(self) -> str:
        return self.from_ if self.direction == "inbound" else self.to

    def iso_date(self) -> str:
        return datetime.fromtimestamp(self.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def twilio_json(self, account_sid: str) -> dict:
        """A Message resource as Twilio's API returns it."""
        return {
            "account_sid": account_sid, "api_version": API, "body": self.body,
            "date_created": formatdate(self.created, usegmt=True), "date_sent": None,
            "date_updated": formatdate(self.created, usegmt=True), "direction": self.direction,
            "error_code": self.error_code, "error_message": None, "from": self.from_,
            "messaging_service_sid": None, "num_media": str(len(self.media)),
            "num_segments": str(segment_count(self.body) or 1), "price": None, "price_unit": "USD",
            "sid": self.sid, "status": self.status, "subresource_uris": {
                "media": f"/{API}/Accounts/{account_sid}/Messages/{self.sid}/Media.json"},
            "to": self.to, "uri": f"/{API}/Accounts/{account_sid}/Messages/{self.sid}.json",
        }


@dataclass
class Faults:
    """Injected failures for the next ``count`` API calls (tests of retries)."""
    status: int = 0
    count: int = 0

    def take(self) -> int:
        if self.count <= 0:
            return 0
        self.count -= 1
        return self.status


class StandIn:
    def __init__(self, account_sid: str, auth_token: str, webhook_url: str,
                 hotline_number: str = "+15145550000", callback_delay: float = 0.02,
                 latency: float = 0.0) -> None:
        self.account_sid, self.auth_token = account_sid, auth_token
        self.webhook_url, self.hotline_number = webhook_url, hotline_number
        self.callback_delay = callback_delay
        self.latency = latency
        self.arrived = asyncio.Condition()
        self.validator = RequestValidator(auth_token)
        self.messages: list[Message] = []
        self.opted_out: set[str] = set()
        self.last_inbound: dict[str, float] = {}
        self.faults = Faults()
        self.session: ClientSession | None = None
        self.background: set[asyncio.Task] = set()

    # Twilio's REST API -----------------------------------------------------------------------

    def authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return (secrets.compare_digest(user, self.account_sid)
                and secrets.compare_digest(password, self.auth_token))

    async def create_message(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return twilio_error(401, 20003, "Authenticate")
        if request.match_info["sid"] != self.account_sid:
            return twilio_error(404, 20404, "The requested resource was not found")
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = self.faults.take()
        if fault == 429:
            return twilio_error(429, 20429, "Too Many Requests")
        if fault:
            return twilio_error(fault, 20500, "Internal Server Error")
        form = await request.post()
        refused = self.refuse(form)
        if refused:
            return refused
        message = self.record("outbound-api", form["To"], form["From"], form.get("Body", ""),
                              form.getall("MediaUrl", []))
        async with self.arrived:
            self.arrived.notify_all()
        callback = form.get("StatusCallback")
        if callback:
            self.spawn(self.deliver(message, callback))
        return web.json_response(message.twilio_json(self.account_sid), status=201)

    def refuse(self, form) -> web.Response | None:
        """Twilio's validation of a send, with its error codes."""
        to, sender, body = form.get("To"), form.get("From"), form.get("Body", "")
        if not to:
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not sender:
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        if not ADDRESS.match(to):
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not body and not form.getall("MediaUrl", []):
            return twilio_error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY:
            return twilio_error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        if to in self.opted_out:
            return twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
        return None

    async def deliver(self, message: Message, callback: str) -> None:
        """Status callbacks as Twilio sends them: sent, then delivered (or failed outside the window)."""
        await asyncio.sleep(self.callback_delay)
        if message.to.startswith("whatsapp:") and \
                time.time() - self.last_inbound.get(message.to, 0) > WHATSAPP_WINDOW:
            message.status, message.error_code = "failed", 63016
            await self.post_signed(callback, self.status_params(message))
            return
        for status in ("sent", "delivered"):
            message.status = status
            await self.post_signed(callback, self.status_params(message))
            await asyncio.sleep(self.callback_delay)

    def status_params(self, message: Message) -> dict[str, str]:
        params = {"MessageSid": message.sid, "SmsSid": message.sid, "MessageStatus": message.status,
                  "SmsStatus": message.status, "AccountSid": self.account_sid, "From": message.from_,
                  "To": message.to, "ApiVersion": API}
        if message.error_code:
            params["ErrorCode"] = str(message.error_code)
        return params

    # Texters ---------------------------------------------------------------------------------

    async def send_from_texter(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except ValueError:
            return web.json_response({"message": "expected JSON"}, status=400)
        channel = data.get("channel", "sms")
        number = str(data.get("from", "")).removeprefix("whatsapp:")
        address = f"whatsapp:{number}" if channel == "whatsapp" else number
        if channel not in ("sms", "whatsapp") or not ADDRESS.match(address):
            return web.json_response({"message": "a phone number like +15145550123 is needed"}, status=400)
        body = str(data.get("body", ""))[:MAX_BODY]
        media = [str(data["media_url"])] if data.get("media_url") else []
        if not body and not media:
            return web.json_response({"message": "type a message or attach a photo"}, status=400)
        message, status = await self.text_hotline(address, body, media)
        return web.json_response({"sid": message.sid, "webhook_status": status})

    async def text_hotline(self, address: str, body: str, media: list[str]) -> tuple[Message, int]:
        """A texter's message: carrier keywords first (SMS), then the signed webhook."""
        hotline = f"whatsapp:{self.hotline_number}" if address.startswith("whatsapp:") else self.hotline_number
        message = self.record("inbound", hotline, address, body, media, status="received")
        self.last_inbound[address] = message.created
        if not address.startswith("whatsapp:"):
            self.carrier_keyword(address, hotline, body)
        status = await self.post_signed(self.webhook_url, self.inbound_params(message))
        return message, status

    def carrier_keyword(self, address: str, hotline: str, body: str) -> None:
        kind = carrier_keywords().classify(body)
        if kind == "opt_out" and address not in self.opted_out:
            self.opted_out.add(address)
            self.record("outbound-reply", address, hotline, OPT_OUT_REPLY, status="delivered")
        elif kind == "opt_in" and address in self.opted_out:
            self.opted_out.discard(address)
            self.record("outbound-reply", address, hotline, OPT_IN_REPLY, status="delivered")

    def inbound_params(self, message: Message) -> dict[str, str]:
        params = {"MessageSid": message.sid, "SmsMessageSid": message.sid, "SmsSid": message.sid,
                  "AccountSid": self.account_sid, "From": message.from_, "To": message.to,
                  "Body": message.body, "NumMedia": str(len(message.media)),
                  "NumSegments": str(segment_count(message.body) or 1), "SmsStatus": "received",
                  "ApiVersion": API}
        for index, url in enumerate(message.media):
            params[f"MediaUrl{index}"] = url
            params[f"MediaContentType{index}"] = "image/jpeg"
        if message.from_.startswith("whatsapp:"):
            params["WaId"] = message.from_.removeprefix("whatsapp:+")
        return params

    async def post_signed(self, url: str, params: dict[str, str]) -> int:
        """POST form parameters with Twilio's X-Twilio-Signature; returns the HTTP status (0: down)."""
        headers = {"X-Twilio-Signature": self.validator.compute_signature(url, params)}
        try:
            async with self.session.post(url, data=params, headers=headers) as reply:
                return reply.status
        except (ClientError, asyncio.TimeoutError, OSError):
            logger.warning("could not reach %s", url.split("?")[0])
            return 0

    # Bookkeeping and the emulator API ------------------------------------------------------------

    def record(self, direction: str, to: str, sender: str, body: str, media: list[str] | None = None,
               status: str = "queued") -> Message:
        message = Message(seq=len(self.messages) + 1, sid=new_sid(), direction=direction, to=to,
                          from_=sender, body=body, media=list(media or []), status=status)
        self.messages.append(message)
        return message

    def spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def sent_messages(self, request: web.Request) -> web.Response:
        to = request.query.get("to")
        return web.json_response([
            {"sid": m.sid, "to": m.to, "from": m.from_, "body": m.body, "date_created": m.iso_date(),
             "status": m.status, "error_code": m.error_code, "created": m.created, "direction": m.direction}
            for m in self.sent(to)])

    def sent(self, to: str | None) -> list[Message]:
        return [m for m in self.messages if m.direction != "inbound" and (to is None or m.to == to)]

    async def wait_sent(self, request: web.Request) -> web.Response:
        """Long poll for load tests: answers when ``count`` messages were sent to ``to`` (or timeout)."""
        to, count = request.query.get("to"), int(request.query.get("count", 1))
        timeout = min(60.0, float(request.query.get("timeout", 30)))
        try:
            async with self.arrived:
                await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.sent(to)) >= count), timeout)
        except asyncio.TimeoutError:
            pass
        return await self.sent_messages(request)

    async def threads(self, _request: web.Request) -> web.Response:
        latest: dict[str, Message] = {}
        for message in self.messages:
            latest[message.texter] = message
        return web.json_response([
            {"address": address, "channel": "whatsapp" if address.startswith("whatsapp:") else "sms",
             "last_at": message.iso_date(), "opted_out": address in self.opted_out}
            for address, message in sorted(latest.items(), key=lambda item: -item[1].created)])

    async def thread(self, request: web.Request) -> web.Response:
        address = request.query.get("address", "")
        after = int(request.query.get("after", 0) or 0)
        return web.json_response([
            {"seq": m.seq, "direction": "in" if m.direction == "inbound" else "out", "body": m.body,
             "media": m.media, "date_created": m.iso_date(), "status": m.status}
            for m in self.messages if m.texter == address and m.seq > after])

    async def set_faults(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.faults = Faults(status=int(data.get("status", 500)), count=int(data.get("count", 1)))
        return web.json_response(asdict(self.faults))

    async def reset(self, _request: web.Request) -> web.Response:
        self.messages.clear()
        self.opted_out.clear()
        self.last_inbound.clear()
        self.faults = Faults()
        return web.json_response({"ok": True})

    async def page(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(SIMULATOR / "index.html")

    async def on_startup(self, _app: web.Application) -> None:
        self.session = ClientSession(timeout=ClientTimeout(total=30))

    async def on_cleanup(self, _app: web.Application) -> None:
        for task in list(self.background):
            task.cancel()
        await self.session.close()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post(f"/{API}/Accounts/{{sid}}/Messages.json", self.create_message)
        app.router.add_get("/emulator/messages", self.sent_messages)
        app.router.add_get("/emulator/wait", self.wait_sent)
        app.router.add_delete("/emulator/messages", self.reset)
        app.router.add_get("/emulator/threads", self.threads)
        app.router.add_get("/emulator/thread", self.thread)
        app.router.add_post("/emulator/send", self.send_from_texter)
        app.router.add_post("/emulator/faults", self.set_faults)
        app.router.add_get("/", self.page)
        app.router.add_static("/simulator/", SIMULATOR)
        app.on_startup.append(self.on_startup)
        app.on_cleanup.append(self.on_cleanup)
        return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local Twilio stand-in (development and tests only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("HOTLINE_TWILIO_PORT", 8099)))
    parser.add_argument("--webhook-url", default=None,
                        help="where texters' messages are posted (default: the Rasa webhook)")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds each API call takes, to mimic Twilio's real response time")
    args = parser.parse_args(argv)
    public = os.environ.get("HOTLINE_PUBLIC_URL") or \
        f"http://127.0.0.1:{os.environ.get('HOTLINE_RASA_PORT', 5005)}"
    standin = StandIn(os.environ["TWILIO_ACCOUNT_SID"], os.environ["TWILIO_AUTH_TOKEN"],
                      args.webhook_url or public.rstrip("/") + WEBHOOK_PATH,
                      os.environ.get("HOTLINE_NUMBER", "+15145550000"), latency=args.latency)
    logging.basicConfig(level=logging.WARNING)
    redact_logs()
    web.run_app(standin.app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
