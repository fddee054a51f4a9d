"""The agent hub's access rules, on real HTTP: login throttling (SQL-backed, across restarts and hub
processes, SQLite and PostgreSQL), idle sessions, Origin checks, security headers on every response,
a role matrix over every route of the app, the OpenAPI description against the router, and
schemathesis against a running hub process (from its own venv, ``requirements/fuzz.txt``)."""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from types import SimpleNamespace
from typing import Callable

import aiohttp
import pytest
import sqlalchemy as sa
import yaml
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet, MultiFernet

from bot import DATA_DIR, PROJECT_ROOT
from bot.agents.accounts import SESSION_SECONDS, Accounts
from bot.agents.app import (BACKGROUND_HEADER, COOKIE, CSRF_HEADER, CSRF_VALUE, OPENAPI, SESSION_ENDED, Hub,
                            make_app)
from bot.agents.cases import CaseBook, outcomes
from bot.agents.handoff import SqlHandoffQueue
from bot.agents.live import Live
from bot.agents.practice import PracticeTexter
from bot.agents.rasa_api import RasaApi
from bot.agents.security import SECURITY_HEADERS, WebSecurity
from bot.agents.summary import build_summary
from bot.agents.tables import audit_log
from bot.channels.store import ChannelStore
from bot.conversation.steps import COVERED
from bot.privacy import Keys
from bot.storage import make_engine
from tests.conftest import free_port
from tests.test_channel import new_database

HEADERS = {CSRF_HEADER: CSRF_VALUE}
ROLES = ("anonymous", "agent", "supervisor", "trainer")
LOCKED = "Too many attempts. Wait 15 minutes or ask a supervisor"


# The hub on a new database ------------------------------------------------------------------

@asynccontextmanager
async def hub_world(url: str, rasa_url: str | None = None, token: str = "none", idle: float | None = None,
                    security: WebSecurity = WebSecurity()):
    """The hub app on ``url`` behind a real HTTP server; Rasa unreachable unless ``rasa_url``."""
    engine = make_engine(url)
    keys = Keys(b"s" * 32, MultiFernet([Fernet(Fernet.generate_key())]))
    book, store = CaseBook(engine, keys), ChannelStore(engine, keys)
    rasa_url = rasa_url or f"http://127.0.0.1:{free_port()}"
    rasa = RasaApi(rasa_url, token, timeout=5)
    hub = Hub(Accounts(engine, idle=idle), book, store, rasa, Live(book, store, poll=0.05), wait=3600,
              practice=PracticeTexter(keys, rasa, rasa_url), security=security)
    client = TestClient(TestServer(make_app(hub)))
    await client.start_server()
    try:
        yield SimpleNamespace(engine=engine, keys=keys, hub=hub, client=client, store=store,
                              queue=SqlHandoffQueue(engine, keys))
    finally:
        await client.close()
        await hub.rasa.close()
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    with new_database(request.param) as url:
        yield url or f"sqlite:///{tmp_path / 'hub.db'}"


@pytest.fixture
async def world(database_url):
    async with hub_world(database_url) as world:
        yield world


async def log_in(world, name: str, password: str, headers: dict | None = None):
    return await world.client.post("/api/login", json={"username": name, "password": password},
                                   headers={**HEADERS, **(headers or {})})


async def session(world, name: str, role: str = "agent", password: str | None = None) -> TestClient:
    """A logged-in client of its own (own cookie jar)."""
    password = password or world.hub.accounts.add(name, role)
    client = TestClient(world.client.server)
    response = await client.post("/api/login", json={"username": name, "password": password}, headers=HEADERS)
    assert response.status == 200, await response.text()
    return client


def audit_rows(world, action: str) -> list:
    with world.engine.connect() as db:
        return db.execute(sa.select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id)).all()


# Login throttling ---------------------------------------------------------------------------

async def test_five_wrong_passwords_lock_the_username_with_429_retry_after_and_a_sentence(world):
    password = world.hub.accounts.add("ana")
    statuses = [(await log_in(world, "ana", f"guess-{n}")).status for n in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
    locked = await log_in(world, "ana", password)  # the right password does not help while locked
    assert locked.status == 429
    assert 890 <= int(locked.headers["Retry-After"]) <= 900
    assert (await locked.json())["error"].startswith(LOCKED)
    assert COOKIE not in locked.cookies
    failed, refused = audit_rows(world, "login_failed"), audit_rows(world, "login_locked")
    assert [row.agent for row in failed] == ["ana"] * 5 and [row.agent for row in refused] == ["ana"]
    assert all(row.detail == "127.0.0.1" for row in failed + refused)
    with world.engine.connect() as db:
        audit = " ".join(str(tuple(row)) for row in db.execute(sa.text("SELECT * FROM audit_log")))
        failures = db.execute(sa.text("SELECT scope, key FROM login_failures")).all()
    assert "guess-" not in audit and password not in audit
    assert len(failures) == 10 and all(re.fullmatch("[0-9a-f]{64}", key) for _, key in failures)  # digests only
    # Another username from the same address is not locked by ana's five failures.
    other = world.hub.accounts.add("bea")
    assert (await log_in(world, "bea", other)).status == 200


async def test_an_unknown_username_is_refused_locked_and_timed_like_a_known_one(world):
    world.hub.accounts.add("cid")
    timings: dict[str, list[float]] = {"cid": [], "nobody-here": []}
    answers = {}
    for attempt in range(4):
        for name in timings:
            start = time.perf_counter()
            response = await log_in(world, name, f"wrong-{attempt}")
            timings[name].append(time.perf_counter() - start)
            answers[name] = (response.status, (await response.json())["error"])
    assert answers["cid"] == answers["nobody-here"] and answers["cid"][0] == 401
    known, unknown = median(timings["cid"]), median(timings["nobody-here"])
    print(f"wrong password {known * 1000:.0f} ms, unknown username {unknown * 1000:.0f} ms (medians of 4)")
    assert 0.6 < unknown / known < 1.6
    assert (await log_in(world, "nobody-here", "fifth")).status == 429
    assert [row.agent for row in audit_rows(world, "login_failed")][-1] == "(unknown name)"


async def test_a_successful_login_clears_its_username_but_not_the_address(world):
    passwords = {name: world.hub.accounts.add(name) for name in ("dan", "eve")}
    for n in range(4):
        assert (await log_in(world, "dan", f"typo-{n}")).status == 401
    assert (await log_in(world, "dan", passwords["dan"])).status == 200
    assert (await log_in(world, "dan", "typo-again")).status == 401  # dan's count started again
    # 20 failures from one address (dan's 5 and 15 guesses at other names) lock the address...
    for n in range(15):
        assert (await log_in(world, f"guess{n}", "x")).status == (429 if n == 14 else 401)
    # ...so eve's right password from there is refused too, with the same sentence.
    refused = await log_in(world, "eve", passwords["eve"])
    assert refused.status == 429 and (await refused.json())["error"].startswith(LOCKED)


async def test_forwarded_for_counts_only_from_a_trusted_proxy(database_url):
    async with hub_world(database_url) as direct:
        direct.hub.accounts.add("fay")
        for n in range(5):  # each claims another address: ignored, the peer's address counts
            await log_in(direct, "other", "x", {"X-Forwarded-For": f"198.51.100.{n}"})
        assert {row.detail for row in audit_rows(direct, "login_failed")} == {"127.0.0.1"}
    # Behind two proxies of ours (127.0.0.1, then 10.1.1.1): the address before them counts.
    trusted = WebSecurity.from_env({"HOTLINE_TRUSTED_PROXIES": "127.0.0.0/8, ::1, 10.0.0.0/8"})
    async with hub_world(database_url, security=trusted) as proxied:
        with proxied.engine.begin() as db:  # the same database: start from clean tables
            db.execute(sa.text("DELETE FROM login_failures"))
            db.execute(sa.text("DELETE FROM audit_log"))
        password = proxied.hub.accounts.add("gil")
        for n in range(20):  # one address guessing many names
            await log_in(proxied, f"name{n}", "x", {"X-Forwarded-For": "203.0.113.9, 10.1.1.1"})
        blocked = await log_in(proxied, "gil", password, {"X-Forwarded-For": "203.0.113.9"})
        elsewhere = await log_in(proxied, "gil", password, {"X-Forwarded-For": "192.0.2.44"})
        assert (blocked.status, elsewhere.status) == (429, 200)
        assert {row.detail for row in audit_rows(proxied, "login_failed")} == {"203.0.113.9"}


async def test_a_supervisor_unlocks_a_locked_login(world):
    password = world.hub.accounts.add("hal")
    for n in range(5):
        await log_in(world, "hal", f"no-{n}")
    supervisor, agent = await session(world, "ida", "supervisor"), await session(world, "jon")
    assert (await agent.post("/api/agents/hal/unlock", headers=HEADERS)).status == 403
    assert (await supervisor.post("/api/agents/nobody/unlock", headers=HEADERS)).status == 404
    unlocked = await supervisor.post("/api/agents/hal/unlock", headers=HEADERS)
    assert (unlocked.status, await unlocked.json()) == (200, {"username": "hal", "cleared": 5})
    assert (await log_in(world, "hal", password)).status == 200
    assert [(row.agent, row.detail) for row in audit_rows(world, "unlock")] == [("ida", "hal")]
    await supervisor.close()
    await agent.close()


# Real hub processes: the lock lives in the database ----------------------------------------

@contextmanager
def hub_process(home: Path, database: str | None, extra_env: dict[str, str] | None = None):
    """``python -m bot.agents.app`` on a free port; yields its base URL."""
    port = free_port()
    env = {**os.environ, "HOTLINE_HOME": str(home), "HOTLINE_HUB_PORT": str(port),
           "HOTLINE_RASA_PORT": str(free_port()), **(extra_env or {})}
    env.pop("DATABASE_URL", None)
    if database:
        env["DATABASE_URL"] = database
    log = open(home / f"hub-{port}.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "bot.agents.app"], cwd=PROJECT_ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (home / f"hub-{port}.log").read_text()[-2000:]
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the hub did not start in 60 s"
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def post_login(base: str, name: str, password: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"{base}/api/login", data=json.dumps({"username": name, "password": password}).encode(),
                                     headers={"Content-Type": "application/json", **HEADERS})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_lock_holds_across_hub_processes_and_survives_a_restart(kind, tmp_path):
    with new_database(kind) as url:
        database = url or f"sqlite:///{tmp_path / 'hotline.db'}"
        password = Accounts(make_engine(database)).add("kim")
        with hub_process(tmp_path, url) as first, hub_process(tmp_path, url) as second:
            assert [post_login(first, "kim", "a")[0], post_login(second, "kim", "b")[0],
                    post_login(first, "kim", "c")[0], post_login(second, "kim", "d")[0]] == [401] * 4
            status, headers = post_login(first, "kim", "e")
            assert status == 429 and int(headers["Retry-After"]) > 800
            assert post_login(second, "kim", password)[0] == 429
        with hub_process(tmp_path, url) as restarted:
            assert post_login(restarted, "kim", password)[0] == 429


# Sessions -----------------------------------------------------------------------------------

async def test_sessions_end_when_idle_and_only_the_agents_activity_keeps_them(database_url):
    async with hub_world(database_url, idle=2.0) as world:
        client = await session(world, "lea")
        for _ in range(3):  # 3.6 s of activity: longer than the idle limit, still logged in
            await asyncio.sleep(1.2)
            assert (await client.get("/api/me")).status == 200
        for _ in range(6):  # the console's own polling is not activity
            await asyncio.sleep(0.5)
            await client.get("/api/cases", headers={BACKGROUND_HEADER: "1"})
        ended = await client.get("/api/me")
        assert ended.status == 401 and "without activity" in (await ended.json())["error"]
        await client.close()


def test_activity_never_stretches_a_session_past_twelve_hours(tmp_path):
    accounts = Accounts(make_engine(f"sqlite:///{tmp_path / 'hotline.db'}"), idle=1800)
    accounts.add("max")
    token = accounts.login(accounts.named("max"), now=0.0)
    for minute in range(0, 12 * 60, 20):  # a request every 20 minutes for a whole shift
        assert accounts.session_agent(token, now=minute * 60.0) is not None
    assert accounts.session_agent(token, now=SESSION_SECONDS - 1) is not None
    assert accounts.session_agent(token, now=SESSION_SECONDS + 1) is None
    idle = accounts.login(accounts.named("max"), now=100_000.0)
    assert accounts.session_agent(idle, now=100_000.0 + 1799) is not None
    assert accounts.session_agent(idle, now=100_000.0 + 1799 + 1801) is None


def test_a_bad_idle_setting_stops_the_hub_with_a_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOTLINE_SESSION_IDLE", "half an hour")
    with pytest.raises(ValueError, match="number of seconds, like 1800"):
        Accounts(make_engine(f"sqlite:///{tmp_path / 'hotline.db'}"))


async def test_the_live_socket_closes_when_its_session_idles_and_activity_keeps_it(database_url):
    async with hub_world(database_url, idle=2.0) as world:
        client = await session(world, "ned")
        socket = await client.ws_connect("/api/live")
        assert (await socket.receive_json(timeout=5))["type"] == "cases"
        for _ in range(4):  # the console reports the agent typing: 4 s, twice the idle limit
            await socket.send_json({"type": "active"})
            with pytest.raises(asyncio.TimeoutError):
                await socket.receive(timeout=1.0)
        started = time.monotonic()
        closing = await socket.receive(timeout=6)
        assert (closing.type, closing.data) == (WSMsgType.CLOSE, SESSION_ENDED)
        assert time.monotonic() - started < 4
        assert (await client.get("/api/me")).status == 401
        await client.close()


async def test_logging_out_closes_the_live_socket(world):
    world.hub.accounts.idle = 2.0  # the socket checks its session every idle/4 seconds
    client = await session(world, "oli")
    socket = await client.ws_connect("/api/live")
    await socket.receive_json(timeout=5)
    assert (await client.post("/api/logout", headers=HEADERS)).status == 204
    closing = await socket.receive(timeout=5)
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, SESSION_ENDED)
    await client.close()


# Origins and headers ------------------------------------------------------------------------

async def test_state_changes_from_another_origin_are_refused(world):
    client = await session(world, "pia")
    own = f"http://{world.client.server.host}:{world.client.server.port}"
    for headers, status in ((HEADERS, 200), ({**HEADERS, "Origin": own}, 200),
                            ({**HEADERS, "Origin": "https://evil.example"}, 403),
                            ({**HEADERS, "Origin": "null"}, 403),
                            ({**HEADERS, "Referer": "https://evil.example/page"}, 403),
                            ({**HEADERS, "Referer": f"{own}/"}, 200),
                            ({"Origin": own}, 403)):  # the same origin still needs the CSRF header
        response = await client.post("/api/segments", json={"text": "hola"}, headers=headers)
        assert response.status == status, (headers, await response.text())
    refused = await client.post("/api/segments", json={"text": "x"}, headers={**HEADERS, "Origin": "https://evil.example"})
    assert "another web site" in (await refused.json())["error"]
    login = await world.client.post("/api/login", json={"username": "pia", "password": "x"},
                                    headers={**HEADERS, "Origin": "https://evil.example"})
    assert login.status == 403  # login CSRF
    await client.close()


async def test_a_proxys_public_origin_can_be_allowed(database_url):
    allowed = WebSecurity.from_env({"HOTLINE_HUB_ORIGINS": "https://hub.hotline.example"})
    async with hub_world(database_url, security=allowed) as world:
        client = await session(world, "quin")
        for origin, status in (("https://hub.hotline.example", 200), ("https://other.example", 403)):
            response = await client.post("/api/segments", json={"text": "a"}, headers={**HEADERS, "Origin": origin})
            assert response.status == status
        await client.close()
    with pytest.raises(ValueError, match="origins like https://"):
        WebSecurity.from_env({"HOTLINE_HUB_ORIGINS": "hub.hotline.example"})


async def test_the_live_socket_refuses_another_origin(world):
    client = await session(world, "rae")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/api/live", headers={"Origin": "https://evil.example"})
    assert refused.value.status == 403
    own = f"http://{world.client.server.host}:{world.client.server.port}"
    socket = await client.ws_connect("/api/live", headers={"Origin": own})
    assert (await socket.receive_json(timeout=5))["type"] == "cases"
    await socket.close()
    await client.close()


async def test_every_response_has_the_security_headers(world):
    client = await session(world, "sam", "supervisor")
    checks = [(world.client, "GET", "/", {}, 200), (world.client, "GET", "/app.js", {}, 200),
              (world.client, "HEAD", "/style.css", {}, 200), (world.client, "GET", "/api/cases", {}, 401),
              (world.client, "GET", "/no/such/page", {}, 401), (client, "GET", "/no/such/page", {}, 404),
              (client, "GET", "/api/nothing", {}, 404), (client, "PUT", "/api/cases", HEADERS, 405),
              (client, "POST", "/api/cases/x/take", {}, 403), (client, "GET", "/api/stats", {}, 200),
              (client, "POST", "/api/segments", {**HEADERS, "Content-Type": "application/json"}, 400)]
    for who, method, path, headers, status in checks:
        response = await who.request(method, path, headers=headers, data=b"{" if method == "POST" else None)
        assert response.status == status, (method, path, await response.text())
        missing = {name for name, value in SECURITY_HEADERS.items() if response.headers.get(name) != value}
        assert not missing, (method, path, missing)
        assert "Strict-Transport-Security" not in response.headers  # plain HTTP: browsers ignore it anyway
        if path.startswith("/api/"):
            assert response.headers["Cache-Control"] == "no-store"
            assert "error" in await response.json() or status == 200
    behind_tls = await world.client.get("/", headers={"X-Forwarded-Proto": "https"})
    assert behind_tls.headers["Strict-Transport-Security"].startswith("max-age=")
    password = world.hub.accounts.add("tess")
    secure = await log_in(world, "tess", password, {"X-Forwarded-Proto": "https"})
    plain = await log_in(world, "tess", password)
    assert "Secure" in secure.headers["Set-Cookie"] and "Secure" not in plain.headers["Set-Cookie"]
    await client.close()


async def test_an_unexpected_error_gets_a_sentence_and_leaves_content_out_of_the_log(world, caplog):
    client = await session(world, "uma", "supervisor")

    number, words = "+1514555" + "0199", "mi " + "jefe"  # not in the traceback's source lines

    def broken():
        raise RuntimeError(f"{number} said: {words}")
    world.hub.book.stats = broken
    response = await client.get("/api/stats")
    assert response.status == 500
    assert "tell the operator on call" in (await response.json())["error"]
    assert response.headers["X-Frame-Options"] == "DENY"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "RuntimeError in GET /api/stats" in logged
    assert "5550199" not in logged and "mi jefe" not in logged
    await client.close()


# The role matrix over every route -----------------------------------------------------------

@dataclass(frozen=True)
class Call:
    """One request of the matrix: the route, the case it acts on (made afresh for every role),
    its body, and the status each role must get."""
    method: str
    route: str
    expect: dict[str, int]
    case: str | None = None  # waiting, training, others, mine, training_held
    body: dict | Callable[[str], dict] | None = None
    fresh_session: bool = False
    websocket: bool = False
    values: dict[str, str] = field(default_factory=dict)  # other path parameters


def everyone(status: int) -> dict[str, int]:
    return {role: status for role in ROLES}


def logged_in(status: int, **others: int) -> dict[str, int]:
    return {"anonymous": 401, **{role: status for role in ROLES[1:]}, **others}


CASE = "/api/cases/{case_id}"
MATRIX = [
    *(Call(method, path, everyone(200)) for path in ("/", "/app.js", "/style.css", "/healthz")
      for method in ("GET", "HEAD")),
    Call("POST", "/api/login", {**logged_in(200), "anonymous": 401}, fresh_session=True),  # own password
    Call("POST", "/api/logout", logged_in(204), fresh_session=True),
    Call("GET", "/api/me", logged_in(200)),
    Call("GET", "/api/openapi.json", logged_in(200)),
    Call("GET", "/api/agents", logged_in(200)),
    Call("POST", "/api/agents/{username}/unlock", logged_in(403, supervisor=200), values={"username": "zed"}),
    Call("GET", "/api/outcomes", logged_in(200)),
    Call("POST", "/api/segments", logged_in(200), body={"text": "hola"}),
    Call("GET", "/api/cases", logged_in(200)),
    Call("GET", CASE, logged_in(200, trainer=404), "waiting"),
    Call("GET", CASE, logged_in(200, agent=404), "training"),
    Call("GET", CASE, logged_in(404, supervisor=200), "others"),
    Call("POST", CASE + "/take", logged_in(200, trainer=404), "waiting"),
    Call("POST", CASE + "/take", logged_in(200, agent=404), "training"),
    Call("POST", CASE + "/take", logged_in(404, supervisor=409), "others"),
    Call("POST", CASE + "/reply", logged_in(202), "mine", {"text": "Hola, soy del equipo."}),
    Call("POST", CASE + "/reply", logged_in(409, trainer=404), "waiting", {"text": "hola"}),
    Call("POST", CASE + "/reply", logged_in(404, supervisor=409), "others", {"text": "hola"}),
    Call("POST", CASE + "/notes", logged_in(201, trainer=404), "waiting", {"text": "called back"}),
    Call("POST", CASE + "/notes", logged_in(201, agent=404), "training", {"text": "practice"}),
    Call("POST", CASE + "/notes", logged_in(404, supervisor=201), "others", {"text": "not mine"}),
    Call("POST", CASE + "/transfer", logged_in(200), "mine", lambda role: {"to": "coach" if role == "trainer" else "zed"}),
    Call("POST", CASE + "/transfer", logged_in(409, supervisor=200, trainer=404), "waiting", {"to": "zed"}),
    Call("POST", CASE + "/transfer", logged_in(404, supervisor=200), "others", {"to": "zed"}),
    Call("POST", CASE + "/transfer", logged_in(422, agent=404), "training_held", {"to": "zed"}),
    Call("POST", CASE + "/handback", logged_in(200), "mine", {"note": "", "covered": ["referrals"]}),
    Call("POST", CASE + "/handback", logged_in(409, trainer=404), "waiting", {"note": "", "covered": []}),
    Call("POST", CASE + "/handback", logged_in(404, supervisor=200), "others", {"note": "", "covered": []}),
    Call("POST", CASE + "/close", logged_in(200), "mine", {"outcome": "referred"}),
    Call("POST", CASE + "/close", logged_in(403, supervisor=200, trainer=404), "waiting", {"outcome": "referred"}),
    Call("POST", CASE + "/close", logged_in(404, supervisor=200), "others", {"outcome": "referred"}),
    Call("POST", CASE + "/close", logged_in(403, agent=404, supervisor=200), "training", {"outcome": "other"}),
    Call("GET", "/api/live", logged_in(101), websocket=True),
    Call("GET", "/api/practice/scripts", logged_in(403, trainer=200)),
    Call("POST", "/api/practice", logged_in(403, trainer=404), body={"script": "no/such/script"}),
    Call("GET", "/api/stats", logged_in(403, supervisor=200)),
]


def route_keys(app) -> set[tuple[str, str]]:
    return {(route.method, route.resource.canonical) for route in app.router.routes()}


USERS = {"agent": "al", "supervisor": "sue", "trainer": "tom"}


@pytest.fixture(scope="module")
def rasa_api(stacks) -> tuple[str, str]:
    """The test stack's real Rasa server and its API token (pause, resume, transcripts)."""
    stack = stacks.running()
    return f"http://127.0.0.1:{stack['rasa']}", (stack["home"] / "rasa_api_token.secret").read_text().strip()


class MatrixWorld:
    """Accounts for every role plus a case holder (``oz``) and transfer targets (``zed``, ``coach``)."""

    def __init__(self, world) -> None:
        self.world = world
        self.passwords = {name: world.hub.accounts.add(name, role) for name, role in
                          (("al", "agent"), ("sue", "supervisor"), ("tom", "trainer"), ("oz", "agent"),
                           ("zed", "agent"), ("coach", "trainer"))}
        self.clients: dict[str, aiohttp.ClientSession] = {}

    def _new_client(self) -> aiohttp.ClientSession:
        """A client with its own cookies (closing a TestClient would stop the shared server)."""
        return aiohttp.ClientSession(base_url=self.world.client.make_url("/"),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def client(self, role: str, fresh: bool = False) -> aiohttp.ClientSession:
        if role == "anonymous":
            return self._new_client()
        if fresh or role not in self.clients:
            client = self._new_client()
            name = USERS[role]
            response = await client.post("/api/login", json={"username": name, "password": self.passwords[name]},
                                         headers=HEADERS)
            assert response.status == 200
            if fresh:
                return client
            self.clients[role] = client
        return self.clients[role]

    def case(self, kind: str, role: str) -> str:
        """A new case in the state the call needs; ``mine`` is held by the caller (a training case
        for a trainer, who takes only those)."""
        training = kind in ("training", "training_held") or (kind == "mine" and role == "trainer")
        conversation = f"{'train' if training else 'sms'}-matrix-{uuid.uuid4().hex[:10]}"
        address = "+1514555" + str(uuid.uuid4().int)[:4] if kind == "mine" else None
        if address:
            conversation = self.world.store.accept(f"SM{uuid.uuid4().hex}", address, "+15145550000", "hola", [])[1]
        summary = build_summary(conversation, {"language": "es", "risk": "medium", "consent_handoff": "yes"},
                                [{"event": "user", "text": "hola", "timestamp": time.time()}], time.time())
        case_id = self.world.queue.escalate(conversation, summary, "consent")
        if training and address:
            with self.world.engine.begin() as db:
                db.execute(sa.text("UPDATE handoff_requests SET training = :t WHERE id = :id"), {"t": True, "id": case_id})
        holder = {"others": "oz", "training_held": "tom", "mine": USERS.get(role, "al")}.get(kind)
        if holder:
            self.world.hub.book.take(self.world.hub.accounts.named(holder), case_id)
        return case_id

    async def status(self, call: Call, role: str) -> int:
        client = await self.client(role, fresh=call.fresh_session)
        values = dict(call.values)
        if call.case:
            values["case_id"] = self.case(call.case, role)
        path = call.route.format(**values)
        try:
            if call.websocket:
                try:
                    socket = await client.ws_connect(path)
                except aiohttp.WSServerHandshakeError as error:
                    return error.status
                await socket.close()
                return 101
            body = call.body(role) if callable(call.body) else call.body
            if call.route == "/api/login":
                name = USERS.get(role, "nobody")
                body = {"username": name, "password": self.passwords.get(name, "wrong")}
            headers = HEADERS if call.method == "POST" else {}
            async with client.request(call.method, path, json=body, headers=headers) as response:
                return response.status
        finally:
            if role == "anonymous" or call.fresh_session:
                await client.close()


@pytest.mark.slow
async def test_role_matrix_covers_every_route_and_every_role(rasa_api, tmp_path):
    rasa_url, token = rasa_api
    async with hub_world(f"sqlite:///{tmp_path / 'hub.db'}", rasa_url, token) as world:
        routes = route_keys(world.client.server.app)
        covered = {(call.method, call.route) for call in MATRIX}
        assert routes - covered == set(), "routes without a matrix entry"
        assert covered - routes == set(), "matrix entries for routes the hub does not have"
        matrix = MatrixWorld(world)
        wrong, calls = [], 0
        for call in MATRIX:
            assert set(call.expect) == set(ROLES)
            for role in ROLES:
                got = await matrix.status(call, role)
                calls += 1
                if got != call.expect[role]:
                    wrong.append(f"{call.method} {call.route} [{call.case}] as {role}: {got}, expected {call.expect[role]}")
        for client in matrix.clients.values():
            await client.close()
        print(f"role matrix: {len(routes)} routes, {len(MATRIX)} entries x {len(ROLES)} roles = {calls} calls")
        assert wrong == []


# The OpenAPI description ----------------------------------------------------------------------

#: The console's own files: pages and scripts, not the JSON API.
CONSOLE_FILES = {"/", "/app.js", "/style.css"}


def described() -> set[tuple[str, str]]:
    document = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item
            if method in ("get", "post", "put", "patch", "delete")}


async def test_openapi_describes_every_route_and_nothing_else(world):
    routes = {(method, path) for method, path in route_keys(world.client.server.app)
              if method != "HEAD" and path not in CONSOLE_FILES}
    assert routes - described() == set(), "routes missing from data/schemas/hub.openapi.yml"
    assert described() - routes == set(), "described operations the hub does not have"
    document = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    summary = json.loads((DATA_DIR / "schemas" / "case_summary.v1.json").read_text())
    ours = document["components"]["schemas"]["CaseSummary"]
    assert set(ours["required"]) - {"training", "told_waiting"} <= set(summary["required"])
    assert set(ours["properties"]) - {"schema_errors"} <= set(summary["properties"])
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "post":
                assert any("csrf" in requirement for requirement in operation.get("security", [])), path
    bodies = {path: item["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
              for path, item in document["paths"].items() if path.endswith(("/close", "/handback"))}
    assert bodies["/api/cases/{case_id}/close"]["outcome"]["enum"] == [item["id"] for item in outcomes()]
    assert tuple(bodies["/api/cases/{case_id}/handback"]["covered"]["items"]["enum"]) == COVERED


async def test_openapi_is_served_to_logged_in_callers_only(world):
    assert (await world.client.get("/api/openapi.json")).status == 401
    client = await session(world, "vic", "trainer")
    served = await client.get("/api/openapi.json")
    assert served.status == 200 and served.content_type == "application/json"
    assert await served.json() == json.loads(json.dumps(yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))))
    await client.close()


# Schemathesis against a running hub -----------------------------------------------------------

FUZZ_VENV = PROJECT_ROOT / ".venv-fuzz"
FUZZ_REQUIREMENTS = PROJECT_ROOT / "requirements" / "fuzz.txt"


def fuzz_venv() -> Path:
    """``.venv-fuzz/`` from the pinned requirements, made once (schemathesis cannot share Rasa's
    venv); remade when requirements/fuzz.txt changed."""
    schemathesis, stamp = FUZZ_VENV / "bin" / "schemathesis", FUZZ_VENV / "requirements.txt"
    wanted = FUZZ_REQUIREMENTS.read_text()
    if schemathesis.exists() and stamp.exists() and stamp.read_text() == wanted:
        return schemathesis
    shutil.rmtree(FUZZ_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(FUZZ_VENV)], check=True)
    pip = subprocess.run([str(FUZZ_VENV / "bin" / "pip"), "install", "--quiet", "--no-deps", "-r", str(FUZZ_REQUIREMENTS)],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-3000:]
    stamp.write_text(wanted)
    return schemathesis


def seed_cases(database: str, home: Path, count: int = 3) -> list[str]:
    """Cases in the hub's database, encrypted with the hub's own keys (from its HOTLINE_HOME)."""
    code = f"""
import json, time, uuid
from bot.agents.handoff import SqlHandoffQueue
from bot.agents.summary import build_summary
from bot.channels.store import ChannelStore
from bot.privacy import default_keys
from bot.storage import make_engine, migrate
engine = make_engine({database!r}); migrate(engine); keys = default_keys()
store, queue, ids = ChannelStore(engine, keys), SqlHandoffQueue(engine, keys), []
for n in range({count}):
    conversation = store.accept("SM" + uuid.uuid4().hex, "+1514555020" + str(n), "+15145550000", "hola", [])[1]
    summary = build_summary(conversation, {{"language": "es", "risk": "high", "consent_handoff": "yes"}},
                            [{{"event": "user", "text": "hola", "timestamp": time.time()}}], time.time())
    ids.append(queue.escalate(conversation, summary, "consent"))
print(json.dumps(ids))
"""
    env = {**os.environ, "HOTLINE_HOME": str(home)}
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_responses_match_the_description(rasa_api, tmp_path):
    """A real hub process (its Rasa: the test stack's), a supervisor's session, seeded cases that
    schemathesis uses half the time for {case_id}; a 5xx other than the documented 503s fails."""
    schemathesis = fuzz_venv()
    rasa_url, token = rasa_api
    database = f"sqlite:///{tmp_path / 'hotline.db'}"
    password = Accounts(make_engine(database)).add("fuzzer", "supervisor")
    Accounts(make_engine(database)).add("zed", "agent")
    cases = seed_cases(database, tmp_path)
    env = {"HOTLINE_RASA_PORT": rasa_url.rsplit(":", 1)[1], "RASA_AUTH_TOKEN": token}
    with hub_process(tmp_path, None, env) as base:
        status, headers = post_login(base, "fuzzer", password)
        assert status == 200
        cookie = re.search(rf"{COOKIE}=([^;]+)", headers["Set-Cookie"]).group(1)
        config = tmp_path / "schemathesis.toml"
        config.write_text(f"""
[dictionaries.cases]
values = {json.dumps(cases)}

[dictionaries.agents]
values = ["zed", "fuzzer"]

[parameters]
"path.case_id" = {{ dictionary = "cases", probability = 0.5 }}
"path.username" = {{ dictionary = "agents", probability = 0.5 }}
"body.to" = {{ dictionary = "agents", probability = 0.5 }}
""")
        report = tmp_path / "report.json"
        command = [str(schemathesis), "--config-file", str(config), "run", str(OPENAPI), "--url", base,
                   "--header", f"Cookie: {COOKIE}={cookie}", "--header", f"{CSRF_HEADER}: {CSRF_VALUE}",
                   "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                               "response_schema_conformance,ignored_auth",
                   "--exclude-path", "/api/logout", "--exclude-path", "/api/live",
                   "--max-examples", "150", "--seed", "8", "--workers", "1", "--phases", "examples,coverage,fuzzing",
                   "--report", "json", "--report-json-path", str(report), "--no-color",
                   "--generation-database", "none", "--request-timeout", "30"]
        started = time.monotonic()
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        took = time.monotonic() - started
    summary = result.stdout[-6000:]
    print(summary, f"\nschemathesis took {took:.0f} s")
    assert result.returncode == 0, summary + result.stderr[-3000:]


# The console in a real browser ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.browser
def test_the_console_passes_its_own_origin_checks_and_a_supervisor_unlocks_a_login(tmp_path):
    """Chromium against a hub process: the console's requests and live socket carry the browser's
    Origin and pass; the headers break nothing on the page; the unlock form lets an agent back in."""
    from playwright.sync_api import expect, sync_playwright

    from tests.test_simulator_browser import CHROMIUM

    database = f"sqlite:///{tmp_path / 'hotline.db'}"
    accounts = Accounts(make_engine(database))
    supervisor, agent = accounts.add("sol", "supervisor"), accounts.add("ray", "agent")
    with hub_process(tmp_path, None) as base:
        for n in range(5):
            post_login(base, "ray", f"wrong-{n}")
        assert post_login(base, "ray", agent)[0] == 429
        problems: list[str] = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=["--no-sandbox"] if os.geteuid() == 0 else [])
            page = browser.new_page()
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda message: message.type == "error" and "status of 401" not in message.text
                    and problems.append(message.text))  # 401: GET /api/me before logging in
            page.set_default_timeout(10_000)
            page.goto(f"{base}/")
            page.fill("#username", "sol")
            page.fill("#password", supervisor)
            page.click("#login")
            expect(page.locator("#live-state")).to_have_text("Live")
            page.fill("#unlock-name", "ray")
            page.click("#unlock-start")
            expect(page.locator("#status")).to_have_text("ray can log in again now.")
            browser.close()
        assert problems == []
        assert post_login(base, "ray", agent)[0] == 200
