"""The agent hub: an aiohttp service (port 8080) with the console page, the JSON API and live
updates. API: README "Agent hub"; contract 6 of shared/DESIGN.md.

Everything the hub knows is in the shared database (cases, agents, channel messages); it talks to
Rasa only to pause, resume and speak in a conversation, so a hub restart loses nothing.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
import traceback
import uuid
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Awaitable, Callable

import sqlalchemy as sa
import yaml
from aiohttp import WSMsgType, web

from bot import DATA_DIR
from bot.agents.accounts import Accounts, Agent
from bot.agents.cases import SYSTEM, CaseBook, CaseError, Change, outcomes
from bot.agents.live import Live, tell_waiting_texters
from bot.agents.practice import PracticeTexter
from bot.agents.rasa_api import RasaApi, RasaUnavailable
from bot.agents.security import WebSecurity, add_security_headers, is_https
from bot.agents.summary import schema_errors
from bot.channels.segments import TWILIO_BODY_LIMIT, describe
from bot.channels.store import ChannelStore
from bot.conversation.steps import COVERED, handback
from bot.log_redaction import install as redact_logs, remember
from bot.privacy import default_keys
from bot.settings import Settings, secret
from bot.storage import database_url, make_engine

logger = logging.getLogger(__name__)
CONSOLE = Path(__file__).resolve().parent / "console"
COOKIE = "hotline_session"
#: State-changing requests must carry this header: a cross-site form cannot set it (CSRF guard).
CSRF_HEADER, CSRF_VALUE = "X-Requested-With", "hotline-console"
#: The console marks the requests it makes on its own (queue polling): they are not the agent's
#: activity and do not keep an idle session open.
BACKGROUND_HEADER = "X-Hotline-Background"
#: The console's sign of life over the live socket when the agent types, clicks or scrolls.
ACTIVITY = {"type": "active"}
#: WebSocket close code when the session ended (4000-4999 are the application's own).
SESSION_ENDED = 4401
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
HUB: web.AppKey["Hub"] = web.AppKey("hub")
BACKGROUND: web.AppKey[list] = web.AppKey("background", list)
PUBLIC = {"/", "/app.js", "/style.css", "/api/login", "/healthz"}
OPENAPI = DATA_DIR / "schemas" / "hub.openapi.yml"


@dataclass
class Hub:
    accounts: Accounts
    book: CaseBook
    store: ChannelStore
    rasa: RasaApi
    live: Live
    wait: float
    practice: PracticeTexter | None = None
    security: WebSecurity = field(default_factory=WebSecurity.from_env)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


#: aiohttp's own refusals (unknown path, wrong method, body too large) as sentences for the API.
HTTP_SENTENCES = {
    404: "There is no such page on the hub. Reload the console.",
    405: "The hub does not accept this method here. Reload the console.",
    413: "The request is too large. Shorten the text and send it again.",
}


@web.middleware
async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Origin, login and CSRF checks; every refusal and failure in a sentence the agent can act
    on. (The security headers are added to every response by ``add_security_headers``.)"""
    try:
        return await _checked_call(request, handler)
    except CaseError as error:
        return _error(error.status, str(error))
    except RasaUnavailable as error:
        logger.warning("Rasa call failed: %s", error)
        return _error(503, "The bot's server did not answer; nothing was changed. Try again in a moment.")
    except sa.exc.OperationalError as error:
        logger.error("database unavailable: %s", type(error.orig).__name__)
        return _error(503, "The database did not answer. Try again in a moment.")
    except web.HTTPException as error:
        if error.status < 400 or not request.path.startswith("/api/"):
            raise
        return _error(error.status, HTTP_SENTENCES.get(error.status, error.reason))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as error:  # noqa: BLE001 - the agent gets a sentence, the log the place, never content
        logger.error("unexpected %s in %s %s\n%s", type(error).__name__, request.method, _route(request),
                     "".join(traceback.format_tb(error.__traceback__)))
        return _error(500, "Something went wrong on the hub. Try again; if it happens again, tell the operator on call.")


def _route(request: web.Request) -> str:
    """The route's pattern (``/api/cases/{case_id}``), so a log line names no case or agent."""
    resource = request.match_info.route.resource
    return resource.canonical if resource else "(no route)"


def _changes_state(request: web.Request) -> bool:
    return request.method not in SAFE_METHODS


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def _checked_call(request: web.Request, handler) -> web.StreamResponse:
    hub: Hub = request.app[HUB]
    if (_changes_state(request) or _is_websocket(request)) and not hub.security.same_origin(request):
        return _error(403, "This request came from another web site. Open the console at the hub's own address.")
    if request.path not in PUBLIC:
        activity = not (_is_websocket(request) or request.headers.get(BACKGROUND_HEADER))
        agent = await asyncio.to_thread(hub.accounts.session_agent, request.cookies.get(COOKIE), None, activity)
        if agent is None:
            return _error(401, "Please log in. Sessions end after a shift or after a while without activity.")
        request["agent"] = agent
    if _changes_state(request) and request.headers.get(CSRF_HEADER) != CSRF_VALUE:
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
    """Throttled per username and per client address (``throttle.py``): while locked, no password
    is checked at all; a known and an unknown username are refused alike."""
    hub: Hub = request.app[HUB]
    body = await _json(request)
    username, password = _text(body, "username"), _text(body, "password")
    address = hub.security.client_address(request)
    throttle = hub.accounts.throttle
    wait = await asyncio.to_thread(throttle.retry_after, username, address)
    if wait:
        await asyncio.to_thread(_audit_login, hub, username, address, "login_locked")
        return _too_many_attempts(wait)
    agent = await asyncio.to_thread(hub.accounts.verify, username, password)
    if agent is None:
        await asyncio.to_thread(throttle.failed, username, address)
        await asyncio.to_thread(_audit_login, hub, username, address, "login_failed")
        wait = await asyncio.to_thread(throttle.retry_after, username, address)
        if wait:
            return _too_many_attempts(wait)
        return _error(401, f"Wrong username or password. Check Caps Lock; after {throttle.limits.user_failures} "
                           "wrong tries the login is locked for a while.")
    await asyncio.to_thread(throttle.clear, agent.username)
    token = await asyncio.to_thread(hub.accounts.login, agent)
    await asyncio.to_thread(hub.book.audit, agent, "login")
    response = web.json_response({"username": agent.username, "role": agent.role})
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=is_https(request), path="/")
    return response


def _audit_login(hub: Hub, username: str, address: str, action: str) -> None:
    """Who tried, from where: the name only when it is an account's (a name that is none may be a
    password typed in the wrong box), never the password."""
    name = username if hub.accounts.exists(username) else "(unknown name)"
    hub.book.audit(Agent(0, name, ""), action, None, address[:64])


def _too_many_attempts(wait: float) -> web.Response:
    minutes = max(1, math.ceil(wait / 60))
    response = _error(429, f"Too many attempts. Wait {minutes} minute{'s' if minutes > 1 else ''} "
                           "or ask a supervisor to unlock your login.")
    response.headers["Retry-After"] = str(math.ceil(wait))
    return response


async def unlock(request: web.Request) -> web.Response:
    """A supervisor lets a locked-out agent try again at once (the address's count stays)."""
    hub: Hub = request.app[HUB]
    supervisor: Agent = request["agent"]
    if supervisor.role != "supervisor":
        raise CaseError(403, "Only a supervisor can unlock a login.")
    username = request.match_info["username"]
    if not await asyncio.to_thread(hub.accounts.exists, username):
        raise CaseError(404, "There is no agent with that name.")
    cleared = await asyncio.to_thread(hub.accounts.throttle.clear, username)
    await asyncio.to_thread(hub.book.audit, supervisor, "unlock", None, username)
    return web.json_response({"username": username, "cleared": cleared})


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
    text = _text(await _json(request), "text")
    remember(text)
    note = await asyncio.to_thread(hub.book.add_note, request["agent"], request.match_info["case_id"], text)
    await hub.live.changed()
    return web.json_response(note, status=201)


async def reply(request: web.Request) -> web.Response:
    """The agent's reply goes to the texter through the channel's outbox (the Rasa server's sender
    delivers it, in order with the bot's messages) and into the transcript."""
    hub: Hub = request.app[HUB]
    agent: Agent = request["agent"]
    text = _text(await _json(request), "text").strip()
    remember(text)
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
    """Live updates for as long as the session lasts. The session is checked between messages
    (here, not in a second task: a second task closing the socket races the handler's own close);
    the console's activity messages keep an agent who is at the desk from being logged out."""
    hub: Hub = request.app[HUB]
    token = request.cookies.get(COOKIE, "")
    every = min(30.0, hub.accounts.idle / 4)
    socket = web.WebSocketResponse(heartbeat=20)
    await socket.prepare(request)
    await hub.live.add(socket, request["agent"])
    try:
        checked = time.monotonic()
        while not socket.closed:
            message = await _next_message(socket, every)
            if message is not None and message.type in _SOCKET_ENDS:
                break
            if message is not None and message.type == WSMsgType.TEXT and _is_activity(message.data):
                await asyncio.to_thread(hub.accounts.touch, token)
            if time.monotonic() - checked >= every:
                checked = time.monotonic()
                if await asyncio.to_thread(hub.accounts.session_agent, token, None, False) is None:
                    await socket.close(code=SESSION_ENDED, message=b"session ended")
    finally:
        hub.live.remove(socket)
    return socket


_SOCKET_ENDS = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


async def _next_message(socket: web.WebSocketResponse, timeout: float):
    """The console's next message, or None after ``timeout`` (time to look at the session again)."""
    try:
        return await socket.receive(timeout=timeout)
    except asyncio.TimeoutError:
        return None


def _is_activity(data: str) -> bool:
    try:
        return json.loads(data) == ACTIVITY
    except ValueError:
        return False


@lru_cache(maxsize=1)
def openapi() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))


async def openapi_json(_request: web.Request) -> web.Response:
    """The API's OpenAPI description, to logged-in callers only: nobody outside the hotline needs
    it, and the hub shows as little as it can to whoever is not logged in."""
    return web.json_response(openapi())


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _console_file(name: str, content_type: str):
    async def serve(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(CONSOLE / name, headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
    return serve


def make_app(hub: Hub) -> web.Application:
    """The routes. API reads have no HEAD twin: opening a case is audited, a HEAD must not be."""
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app[HUB] = hub
    app.on_response_prepare.append(add_security_headers)
    app.router.add_get("/", _console_file("index.html", "text/html; charset=utf-8"))
    app.router.add_get("/app.js", _console_file("app.js", "text/javascript; charset=utf-8"))
    app.router.add_get("/style.css", _console_file("style.css", "text/css; charset=utf-8"))
    app.router.add_get("/healthz", health)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    api_get = partial(app.router.add_get, allow_head=False)
    api_get("/api/me", me)
    api_get("/api/openapi.json", openapi_json)
    api_get("/api/agents", list_agents)
    app.router.add_post("/api/agents/{username}/unlock", unlock)
    api_get("/api/outcomes", list_outcomes)
    app.router.add_post("/api/segments", segments)
    api_get("/api/cases", list_cases)
    api_get("/api/cases/{case_id}", get_case)
    app.router.add_post("/api/cases/{case_id}/take", take)
    app.router.add_post("/api/cases/{case_id}/reply", reply)
    app.router.add_post("/api/cases/{case_id}/notes", add_note)
    app.router.add_post("/api/cases/{case_id}/transfer", transfer)
    app.router.add_post("/api/cases/{case_id}/handback", hand_back)
    app.router.add_post("/api/cases/{case_id}/close", close)
    api_get("/api/live", live_socket)
    api_get("/api/practice/scripts", practice_scripts)
    app.router.add_post("/api/practice", start_practice)
    api_get("/api/stats", stats)
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
    redact_logs()
    web.run_app(make_app(build_hub(settings)), host=settings.bind, port=settings.hub_port, print=None)


if __name__ == "__main__":
    run_hub()
