"""The agent hub: an aiohttp service (port 8080) with the console page, the JSON API and live
updates. API: README "Agent hub"; contract 6 of shared/DESIGN.md.

Everything the hub knows is in the shared database (cases, agents, channel messages); it talks to
Rasa only to pause, resume and speak in a conversation, so a hub restart loses nothing.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import sqlalchemy as sa
from aiohttp import WSMsgType, web

from bot.agents.accounts import Accounts, Agent
from bot.agents.cases import SYSTEM, CaseBook, CaseError, Change, outcomes
from bot.agents.live import Live, tell_waiting_texters
from bot.agents.practice import PracticeTexter
from bot.agents.rasa_api import RasaApi, RasaUnavailable
from bot.agents.summary import schema_errors
from bot.channels.segments import TWILIO_BODY_LIMIT, describe
from bot.channels.store import ChannelStore
from bot.conversation.steps import COVERED, handback
from bot.privacy import default_keys
from bot.settings import Settings, secret
from bot.storage import database_url, make_engine

logger = logging.getLogger(__name__)
CONSOLE = Path(__file__).resolve().parent / "console"
COOKIE = "hotline_session"
#: State-changing requests must carry this header: a cross-site form cannot set it (CSRF guard).
CSRF_HEADER, CSRF_VALUE = "X-Requested-With", "hotline-console"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
HUB: web.AppKey["Hub"] = web.AppKey("hub")
BACKGROUND: web.AppKey[list] = web.AppKey("background", list)
PUBLIC = {"/", "/app.js", "/style.css", "/api/login", "/healthz"}


@dataclass
class Hub:
    accounts: Accounts
    book: CaseBook
    store: ChannelStore
    rasa: RasaApi
    live: Live
    wait: float
    practice: PracticeTexter | None = None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Login, CSRF header, security headers; refusals in a sentence the agent can act on."""
    try:
        response = await _checked_call(request, handler)
    except CaseError as error:
        response = _error(error.status, str(error))
    except RasaUnavailable as error:
        logger.warning("Rasa call failed: %s", error)
        response = _error(503, "The bot's server did not answer; nothing was changed. Try again in a moment.")
    except sa.exc.OperationalError as error:
        logger.error("database unavailable: %s", type(error.orig).__name__)
        response = _error(503, "The database did not answer. Try again in a moment.")
    if not isinstance(response, web.WebSocketResponse):
        response.headers.update(SECURITY_HEADERS)
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
    return response


async def _checked_call(request: web.Request, handler) -> web.StreamResponse:
    hub: Hub = request.app[HUB]
    if request.path not in PUBLIC:
        agent = await asyncio.to_thread(hub.accounts.session_agent, request.cookies.get(COOKIE))
        if agent is None:
            return _error(401, "Please log in.")
        request["agent"] = agent
    if request.method == "POST" and request.headers.get(CSRF_HEADER) != CSRF_VALUE:
        return _error(403, "Requests must come from the console.")
    return await handler(request)


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CaseError(400, "The request body must be JSON.") from None
    if not isinstance(body, dict):
        raise CaseError(400, "The request body must be a JSON object.")
    return body


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise CaseError(400, f"{name} must be text.")
    return value


# Session -----------------------------------------------------------------------------------

async def login(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB]
    body = await _json(request)
    agent = await asyncio.to_thread(hub.accounts.verify, _text(body, "username"), _text(body, "password"))
    if agent is None:
        return _error(401, "Wrong username or password.")
    token = await asyncio.to_thread(hub.accounts.login, agent)
    await asyncio.to_thread(hub.book.audit, agent, "login")
    response = web.json_response({"username": agent.username, "role": agent.role})
    secure = request.secure or request.headers.get("X-Forwarded-Proto") == "https"
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=secure, path="/")
    return response


async def logout(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB]
    await asyncio.to_thread(hub.accounts.logout, request.cookies.get(COOKIE, ""))
    response = web.Response(status=204)
    response.del_cookie(COOKIE, path="/")
    return response


async def me(request: web.Request) -> web.Response:
    agent: Agent = request["agent"]
    return web.json_response({"username": agent.username, "role": agent.role})


async def list_agents(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB]
    online = hub.live.online()
    return web.json_response([{"username": a.username, "role": a.role, "online": a.username in online}
                              for a in await asyncio.to_thread(hub.accounts.all)])


# Cases -------------------------------------------------------------------------------------

async def list_cases(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB]
    closed = request.query.get("status") == "closed"
    training = request.query.get("training") == "1"
    rows = await asyncio.to_thread(hub.book.visible, request["agent"], closed, training)
    # ?conversation=<id>: one conversation's cases (trainer replay finds its script's case this way).
    conversation = request.query.get("conversation")
    if conversation:
        rows = [row for row in rows if row.conversation_id == conversation]
    now = time.time()
    return web.json_response([_checked(hub.book.summary(row, now)) for row in rows])


def _checked(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as served; one that breaks the schema is still shown (an agent must see the
    case) but flagged, and the breach is logged without content."""
    errors = schema_errors(summary)
    if errors:
        logger.error("case %s breaks the summary schema: %s", summary.get("id"), "; ".join(errors))
        summary["schema_errors"] = errors
    return summary


async def get_case(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB]
    agent: Agent = request["agent"]
    row = await asyncio.to_thread(hub.book.row, agent, request.match_info["case_id"])
    case = await _full_case(hub, row)
    await asyncio.to_thread(hub.book.audit, agent, "open", row.id)
    return web.json_response(case)


async def _full_case(hub: Hub, row) -> dict[str, Any]:
    """The case view: the summary, the whole transcript, notes, the WhatsApp window, the outcome."""
    case = _checked(hub.book.summary(row))
    try:  # Rasa's tracker has every line since; the summary's copy stops at the last escalation
        case["transcript"] = await hub.rasa.transcript(row.conversation_id) or case["transcript"]
    except RasaUnavailable as error:
        logger.warning("transcript from the summary: %s", error)
        case["transcript_partial"] = True
    case["notes"] = await asyncio.to_thread(hub.book.notes, row.id)
    case["window_remaining"] = await asyncio.to_thread(hub.store.window_remaining, row.conversation_id)
    case["outcome"] = row.outcome
    return case


async def _after(request: web.Request, change: Change, undo: Callable[[], Any] | None = None,
                 slots: dict[str, Any] | None = None) -> web.Response:
    """Pause or resume the bot as the change requires, then answer with the case as it is now."""
    hub: Hub = request.app[HUB]
    try:
        if change.pause:
            await hub.rasa.pause(change.conversation_id)
        if change.resume:
            await hub.rasa.resume(change.conversation_id, slots)
    except RasaUnavailable:
        if undo:
            await asyncio.to_thread(undo)
        raise
    await hub.live.changed()
    # Read as a supervisor: after a transfer the caller may no longer see the case it just handed on.
    row = await asyncio.to_thread(hub.book.row, SYSTEM, change.case_id)
    return web.json_response(await _full_case(hub, row))


async def take(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB]
    agent, case_id = request["agent"], request.match_info["case_id"]
    before = await asyncio.to_thread(hub.book.row, agent, case_id)
    change = await asyncio.to_thread(hub.book.take, agent, case_id)
    return await _after(request, change, lambda: hub.book.restore(before))


async def transfer(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB]
    agent, case_id = request["agent"], request.match_info["case_id"]
    to = await asyncio.to_thread(hub.accounts.named, _text(await _json(request), "to"))
    if to is None:
        raise CaseError(422, "There is no agent with that name.")
    before = await asyncio.to_thread(hub.book.row, agent, case_id)
    change = await asyncio.to_thread(hub.book.transfer, agent, case_id, to)
    return await _after(request, change, lambda: hub.book.restore(before))


async def hand_back(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB]
    agent, case_id = request["agent"], request.match_info["case_id"]
    body = await _json(request)
    covered = body.get("covered") or []
    if not isinstance(covered, list) or any(item not in COVERED for item in covered):
        raise CaseError(422, f"covered lists what you covered: {', '.join(COVERED)}.")
    before = await asyncio.to_thread(hub.book.row, agent, case_id)
    change = await asyncio.to_thread(hub.book.handback, agent, case_id, _text(body, "note"), covered)
    return await _after(request, change, lambda: hub.book.restore(before), handback(covered))


async def close(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB]
    agent, case_id = request["agent"], request.match_info["case_id"]
    body = await _json(request)
    before = await asyncio.to_thread(hub.book.row, agent, case_id)
    change = await asyncio.to_thread(hub.book.close, agent, case_id, _text(body, "outcome"), _text(body, "note"))
    return await _after(request, change, lambda: hub.book.restore(before), handback([]))


async def add_note(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB]
    note = await asyncio.to_thread(hub.book.add_note, request["agent"], request.match_info["case_id"],
                                   _text(await _json(request), "text"))
    await hub.live.changed()
    return web.json_response(note, status=201)


async def reply(request: web.Request) -> web.Response:
    """The agent's reply goes to the texter through the channel's outbox (the Rasa server's sender
    delivers it, in order with the bot's messages) and into the transcript."""
    hub: Hub = request.app[HUB]
    agent: Agent = request["agent"]
    text = _text(await _json(request), "text").strip()
    if not text:
        raise CaseError(422, "The reply is empty.")
    if len(text) > TWILIO_BODY_LIMIT:
        raise CaseError(422, f"Replies are at most {TWILIO_BODY_LIMIT} characters; split it in two.")
    row = await asyncio.to_thread(hub.book.held_for_reply, agent, request.match_info["case_id"])
    if await asyncio.to_thread(hub.store.window_remaining, row.conversation_id) == 0:
        raise CaseError(422, "WhatsApp allows replies only within 24 hours of the texter's last message.")
    try:
        await asyncio.to_thread(hub.store.enqueue, row.conversation_id, f"agent:{uuid.uuid4().hex}", "agent", text)
    except KeyError:
        raise CaseError(422, "This conversation has no phone number to reply to (a test conversation).") from None
    await asyncio.to_thread(hub.book.audit, agent, "reply", row.id)
    try:
        await hub.rasa.record_agent_message(row.conversation_id, text, agent.username)
    except RasaUnavailable as error:  # the reply is queued and will be sent; only the transcript misses it
        logger.warning("reply queued but not recorded in the transcript: %s", error)
    if row.training and hub.practice:
        await hub.practice.trainer_replied(row.conversation_id)
    info = describe(text)
    return web.json_response({"segments": info.segments, "encoding": info.encoding}, status=202)


async def segments(request: web.Request) -> web.Response:
    text = _text(await _json(request), "text")
    info = describe(text)
    return web.json_response({"segments": info.segments, "encoding": info.encoding, "characters": len(text)})


# Training mode and statistics ---------------------------------------------------------------

def _practising(request: web.Request) -> PracticeTexter:
    """Trainers practise (their queue is where practice cases arrive); nobody else starts one."""
    if request["agent"].role != "trainer":
        raise CaseError(403, "Practice cases are for trainers.")
    practice = request.app[HUB].practice
    if practice is None:
        raise CaseError(503, "Training mode is not available on this hub.")
    return practice


async def practice_scripts(request: web.Request) -> web.Response:
    return web.json_response(_practising(request).catalogue())


async def start_practice(request: web.Request) -> web.Response:
    """A practice case from a persona script: the simulated texter starts writing at once."""
    hub: Hub = request.app[HUB]
    agent: Agent = request["agent"]
    practice = await _practising(request).start(_text(await _json(request), "script"), agent.username)
    if practice is None:
        raise CaseError(404, "There is no such practice script.")
    await asyncio.to_thread(hub.book.audit, agent, "practice", None, practice.script.name)
    return web.json_response({"script": practice.script.name, "title": practice.script.title,
                              "turns": len(practice.script.turns)}, status=202)


async def stats(request: web.Request) -> web.Response:
    if request["agent"].role != "supervisor":
        raise CaseError(403, "Statistics are for supervisors.")
    return web.json_response(await asyncio.to_thread(request.app[HUB].book.stats))


async def list_outcomes(_request: web.Request) -> web.Response:
    return web.json_response(outcomes())


async def live_socket(request: web.Request) -> web.WebSocketResponse:
    hub: Hub = request.app[HUB]
    socket = web.WebSocketResponse(heartbeat=20)
    await socket.prepare(request)
    await hub.live.add(socket, request["agent"])
    try:
        async for message in socket:
            if message.type == WSMsgType.ERROR:
                break
    finally:
        hub.live.remove(socket)
    return socket


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _console_file(name: str, content_type: str):
    async def serve(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(CONSOLE / name, headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
    return serve


def make_app(hub: Hub) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app[HUB] = hub
    app.router.add_get("/", _console_file("index.html", "text/html; charset=utf-8"))
    app.router.add_get("/app.js", _console_file("app.js", "text/javascript; charset=utf-8"))
    app.router.add_get("/style.css", _console_file("style.css", "text/css; charset=utf-8"))
    app.router.add_get("/healthz", health)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/me", me)
    app.router.add_get("/api/agents", list_agents)
    app.router.add_get("/api/outcomes", list_outcomes)
    app.router.add_post("/api/segments", segments)
    app.router.add_get("/api/cases", list_cases)
    app.router.add_get("/api/cases/{case_id}", get_case)
    app.router.add_post("/api/cases/{case_id}/take", take)
    app.router.add_post("/api/cases/{case_id}/reply", reply)
    app.router.add_post("/api/cases/{case_id}/notes", add_note)
    app.router.add_post("/api/cases/{case_id}/transfer", transfer)
    app.router.add_post("/api/cases/{case_id}/handback", hand_back)
    app.router.add_post("/api/cases/{case_id}/close", close)
    app.router.add_get("/api/live", live_socket)
    app.router.add_get("/api/practice/scripts", practice_scripts)
    app.router.add_post("/api/practice", start_practice)
    app.router.add_get("/api/stats", stats)
    app.on_startup.append(_start_background)
    app.on_cleanup.append(_stop_background)
    return app


async def _start_background(app: web.Application) -> None:
    hub: Hub = app[HUB]
    await hub.live.start()
    app[BACKGROUND] = [asyncio.create_task(hub.live.run()),
                         asyncio.create_task(tell_waiting_texters(hub.book, hub.rasa, hub.wait))]


async def _stop_background(app: web.Application) -> None:
    hub: Hub = app[HUB]
    for task in app.get(BACKGROUND, []):
        task.cancel()
    await asyncio.gather(*app.get(BACKGROUND, []), return_exceptions=True)
    for socket in list(hub.live.sockets):
        await socket.close()
    if hub.practice:
        await hub.practice.close()
    await hub.rasa.close()


def build_hub(settings: Settings) -> Hub:
    """The hub on these settings: the shared database, Rasa's API with the stack's token."""
    engine = make_engine(database_url(settings))
    keys = default_keys()
    book = CaseBook(engine, keys)
    store = ChannelStore(engine, keys)
    rasa_url = f"http://127.0.0.1:{settings.rasa_port}"
    rasa = RasaApi(rasa_url, secret(settings, "rasa_api_token", "RASA_AUTH_TOKEN"))
    return Hub(Accounts(engine), book, store, rasa, Live(book, store),
               wait=float(os.environ.get("HOTLINE_HANDOFF_WAIT", "300")),
               practice=PracticeTexter(keys, rasa, rasa_url))


def run_hub() -> None:
    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # access lines name case ids only, still noise
    web.run_app(make_app(build_hub(settings)), host=settings.bind, port=settings.hub_port, print=None)


if __name__ == "__main__":
    run_hub()
