"""The agent hub's API on SQLite and PostgreSQL, against a real Rasa server (pause, resume and the
transcript go through Rasa's HTTP API): login, roles, queue order, take, reply, notes, transfer,
handback, close, the audit log, the summary schema, and what happens when Rasa is down."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet, MultiFernet

from bot import PROJECT_ROOT
from bot.agents.accounts import Accounts
from bot.agents.app import COOKIE, CSRF_HEADER, CSRF_VALUE, Hub, make_app
from bot.agents.cases import SYSTEM, CaseBook
from bot.agents.handoff import SqlHandoffQueue
from bot.agents.live import Live
from bot.agents.rasa_api import RasaApi
from bot.agents.summary import build_summary
from bot.agents.tables import audit_log, case_notes
from bot.channels.store import ChannelStore
from bot.privacy import Keys
from bot.storage import make_engine
from tests.conftest import free_port
from tests.test_channel import new_database

TOKEN = "no-rasa-here"
HEADERS = {CSRF_HEADER: CSRF_VALUE}


@pytest.fixture(scope="module")
def rasa_api(stacks) -> tuple[str, str]:
    """The test stack's Rasa server and its API token."""
    stack = stacks.running()
    return f"http://127.0.0.1:{stack['rasa']}", (stack["home"] / "rasa_api_token.secret").read_text().strip()


@pytest.fixture(params=["sqlite", "postgresql"])
async def world(request, tmp_path):
    """The hub on a new database; Rasa is unreachable unless the test also asks for ``rasa``."""
    with new_database(request.param) as url:
        engine = make_engine(url or f"sqlite:///{tmp_path / 'hub.db'}")
        keys = Keys(b"h" * 32, MultiFernet([Fernet(Fernet.generate_key())]))
        book, store = CaseBook(engine, keys), ChannelStore(engine, keys)
        rasa = RasaApi(f"http://127.0.0.1:{free_port()}", TOKEN, timeout=2)
        hub = Hub(Accounts(engine), book, store, rasa, Live(book, store, poll=0.05), wait=3600)
        client = TestClient(TestServer(make_app(hub)))
        await client.start_server()
        world = SimpleNamespace(engine=engine, keys=keys, hub=hub, client=client, store=store,
                                queue=SqlHandoffQueue(engine, keys), rasa_url=None)
        yield world
        await client.close()
        await hub.rasa.close()
        engine.dispose()


@pytest.fixture
async def rasa(world, rasa_api):
    """The world's hub talking to the real Rasa server."""
    await world.hub.rasa.close()
    world.rasa_url, world.token = rasa_api
    world.hub.rasa = RasaApi(world.rasa_url, world.token)
    return world


def escalate(world, conversation: str, risk: str = "medium", language: str = "es", text: str = "hola",
             address: str | None = None) -> str:
    """A case as the action server writes it; with ``address``, the texter's number is known."""
    if address:
        conversation = world.store.accept(f"SM{uuid.uuid4().hex}", address, "+15145550000", text, [])[1]
    slots = {"language": language, "risk": risk, "imminent": risk == "imminent", "consent_handoff": "yes",
             "indicators": ["DOC"], "indicator_evidence": [{"indicator": "DOC", "text": text, "start": 0, "end": 4}]}
    summary = build_summary(conversation, slots, [{"event": "user", "text": text, "timestamp": time.time()}],
                            time.time())
    return world.queue.escalate(conversation, summary, "consent")


async def login(world, name: str, role: str = "agent") -> TestClient:
    """A logged-in client of its own (own cookie jar) for a new agent."""
    password = world.hub.accounts.add(name, role)
    client = TestClient(world.client.server)
    response = await client.post("/api/login", json={"username": name, "password": password}, headers=HEADERS)
    assert response.status == 200, await response.text()
    assert (await response.json())["role"] == role
    return client


async def test_login_sets_an_httponly_cookie_and_wrong_passwords_are_refused(world):
    password = world.hub.accounts.add("ana", "agent")
    wrong = await world.client.post("/api/login", json={"username": "ana", "password": "nope"}, headers=HEADERS)
    assert wrong.status == 401
    assert (await world.client.get("/api/cases")).status == 401
    response = await world.client.post("/api/login", json={"username": "ana", "password": password}, headers=HEADERS)
    assert response.status == 200
    cookie = response.headers["Set-Cookie"]
    assert COOKIE in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert (await world.client.get("/api/cases")).status == 200
    with world.engine.connect() as db:
        stored = db.execute(sa.text("SELECT password_hash FROM agents WHERE username = 'ana'")).scalar()
    assert stored.startswith("$argon2id$") and password not in stored


async def test_state_changes_need_the_console_header(world):
    client = await login(world, "bo")
    case_id = escalate(world, "sms-csrf")
    response = await client.post(f"/api/cases/{case_id}/take")
    assert response.status == 403
    await client.close()


async def test_queue_is_ordered_by_risk_then_waiting_time_and_validates(world):
    low = escalate(world, "sms-low", "low")
    first_high = escalate(world, "sms-high-1", "high")
    second_high = escalate(world, "sms-high-2", "high")
    imminent = escalate(world, "sms-imminent", "imminent")
    client = await login(world, "cy")
    cases = await (await client.get("/api/cases")).json()
    assert [case["id"] for case in cases] == [imminent, first_high, second_high, low]
    assert all("schema_errors" not in case for case in cases)
    top = cases[0]
    assert (top["risk"], top["language"], top["language_name"], top["interpreter_needed"]) == \
        ("imminent", "es", "Spanish", True)
    assert top["indicators"][0]["id"] == "DOC" and top["indicators"][0]["evidence"][0]["text"] == "hola"
    await client.close()


async def test_roles_agents_see_the_queue_trainers_only_training_supervisors_everything(rasa):
    """Training cases never mix with real ones: the trainers' queue, or a supervisor's training view."""
    world = rasa
    real = escalate(world, "sms-real")
    training = escalate(world, "train-replay-1")
    agent, trainer, supervisor = (await login(world, "di"), await login(world, "ed", "trainer"),
                                  await login(world, "fa", "supervisor"))
    assert {c["id"] for c in await (await agent.get("/api/cases")).json()} == {real}
    assert {c["id"] for c in await (await agent.get("/api/cases?training=1")).json()} == set()
    assert {c["id"] for c in await (await trainer.get("/api/cases")).json()} == {training}
    assert {c["id"] for c in await (await supervisor.get("/api/cases")).json()} == {real}
    assert {c["id"] for c in await (await supervisor.get("/api/cases?training=1")).json()} == {training}
    assert (await supervisor.get(f"/api/cases/{training}")).status == 200
    assert (await trainer.get(f"/api/cases/{real}")).status == 404
    # Once an agent takes a case, other agents no longer see it; the supervisor still does.
    other = await login(world, "gu")
    assert (await agent.post(f"/api/cases/{real}/take", headers=HEADERS)).status == 200
    assert (await (await other.get("/api/cases")).json()) == []
    assert (await other.post(f"/api/cases/{real}/take", headers=HEADERS)).status in (404, 409)
    assert {c["id"] for c in await (await supervisor.get("/api/cases")).json()} == {real}
    for client in (agent, trainer, supervisor, other):
        await client.close()


async def rasa_tracker(world, conversation: str) -> dict:
    async with world.client.session.get(f"{world.rasa_url}/conversations/{conversation}/tracker",
                                        params={"token": world.token}) as response:
        return await response.json()


async def test_take_pauses_the_bot_reply_reaches_the_outbox_handback_resumes_it(rasa):
    world = rasa
    case_id = escalate(world, "ignored", address="+15145550223", text="el patron tiene mi pasaporte")
    conversation = world.hub.book.row(SYSTEM, case_id).conversation_id
    client = await login(world, "hu")
    taken = await (await client.post(f"/api/cases/{case_id}/take", headers=HEADERS)).json()
    assert (taken.get("status"), taken.get("assigned_to")) == ("held", "hu"), taken
    assert (await rasa_tracker(world, conversation))["paused"] is True

    response = await client.post(f"/api/cases/{case_id}/reply", json={"text": "Hola, soy Ana. ¿Está a salvo?"},
                                 headers=HEADERS)
    assert response.status == 202
    assert await response.json() == {"segments": 1, "encoding": "UCS-2"}
    queued = world.store.claim_outgoing(now=time.time() + 1)
    assert [(m.to, m.body) for m in queued] == [("+15145550223", "Hola, soy Ana. ¿Está a salvo?")]
    case = await (await client.get(f"/api/cases/{case_id}")).json()
    assert case["transcript"][-1]["from"] == "agent"

    note = await client.post(f"/api/cases/{case_id}/handback", headers=HEADERS,
                             json={"note": "gave the hotline number", "covered": ["referrals"]})
    assert (await note.json())["status"] == "returned"
    tracker = await rasa_tracker(world, conversation)
    assert tracker["paused"] is False
    assert (tracker["slots"]["handoff"], tracker["slots"]["referred"]) == ("returned", True)

    closed = await client.post(f"/api/cases/{case_id}/close", json={"outcome": "referred"}, headers=HEADERS)
    assert (await closed.json())["status"] == "closed"
    assert (await (await client.get("/api/cases")).json()) == []
    await client.close()


async def test_a_texter_who_needs_a_person_again_after_handback_goes_back_to_the_queue(rasa):
    world = rasa
    case_id = escalate(world, "sms-again")
    client = await login(world, "ia")
    await client.post(f"/api/cases/{case_id}/take", headers=HEADERS)
    await client.post(f"/api/cases/{case_id}/handback", json={"note": "", "covered": []}, headers=HEADERS)
    assert escalate(world, "sms-again", "high") == case_id
    case = await (await client.get(f"/api/cases/{case_id}")).json()
    assert (case["status"], case["risk"], case["assigned_to"]) == ("waiting", "high", None)
    await client.close()


async def test_replies_need_the_case_and_respect_limits(rasa):
    world = rasa
    case_id = escalate(world, "ignored", address="whatsapp:+15145550224")
    holder, other = await login(world, "jo"), await login(world, "ko")
    assert (await holder.post(f"/api/cases/{case_id}/reply", json={"text": "hi"}, headers=HEADERS)).status == 409
    await holder.post(f"/api/cases/{case_id}/take", headers=HEADERS)
    assert (await other.post(f"/api/cases/{case_id}/reply", json={"text": "hi"}, headers=HEADERS)).status in (404, 409)
    for text in ("", "   ", "x" * 1601):
        assert (await holder.post(f"/api/cases/{case_id}/reply", json={"text": text}, headers=HEADERS)).status == 422
    assert (await holder.post(f"/api/cases/{case_id}/reply", data=b"\xff\xfe", headers=HEADERS)).status == 400
    # WhatsApp: 24 hours after the texter's last message the window is closed.
    with world.engine.begin() as db:
        db.execute(sa.text("UPDATE channel_addresses SET last_inbound_at = :t"), {"t": time.time() - 90_000})
    refused = await holder.post(f"/api/cases/{case_id}/reply", json={"text": "hi"}, headers=HEADERS)
    assert refused.status == 422 and "24 hours" in (await refused.json())["error"]
    assert (await (await holder.get(f"/api/cases/{case_id}")).json())["window_remaining"] == 0
    await holder.close()
    await other.close()


async def test_transfer_notes_close_and_the_audit_log_has_no_content(rasa):
    world = rasa
    case_id = escalate(world, "sms-transfer", text="mi jefe me amenaza")
    first, second, supervisor = await login(world, "la"), await login(world, "mo"), await login(world, "ni", "supervisor")
    await first.post(f"/api/cases/{case_id}/take", headers=HEADERS)
    assert (await second.post(f"/api/cases/{case_id}/transfer", json={"to": "mo"}, headers=HEADERS)).status in (403, 404)
    moved = await first.post(f"/api/cases/{case_id}/transfer", json={"to": "mo"}, headers=HEADERS)
    assert (await moved.json())["assigned_to"] == "mo"
    assert (await second.post(f"/api/cases/{case_id}/notes", json={"text": "texter scared of boss"},
                              headers=HEADERS)).status == 201
    assert (await second.post(f"/api/cases/{case_id}/notes", json={"text": " "}, headers=HEADERS)).status == 422
    assert (await second.post(f"/api/cases/{case_id}/close", json={"outcome": "made-up"}, headers=HEADERS)).status == 422
    assert (await supervisor.post(f"/api/cases/{case_id}/close", json={"outcome": "safety_plan"},
                                  headers=HEADERS)).status == 200
    closed = await (await supervisor.get("/api/cases?status=closed")).json()
    assert [case["id"] for case in closed] == [case_id]
    with world.engine.connect() as db:
        actions = [(row.agent, row.action) for row in db.execute(sa.select(audit_log).order_by(audit_log.c.id))
                   if row.case_id == case_id]
        dump = " ".join(str(tuple(row)) for row in db.execute(sa.select(audit_log)))
        notes = [row.note_enc for row in db.execute(sa.select(case_notes))]
    assert actions == [("la", "take"), ("la", "transfer"), ("mo", "note"), ("ni", "close")]
    assert "scared" not in dump and "amenaza" not in dump
    assert notes and all("scared" not in note for note in notes)
    for client in (first, second, supervisor):
        await client.close()


async def test_opening_a_case_is_audited(rasa):
    world = rasa
    case_id = escalate(world, "sms-open")
    client = await login(world, "ol")
    case = await (await client.get(f"/api/cases/{case_id}")).json()
    assert case["transcript"] and case["notes"] == [] and case["window_remaining"] is None
    with world.engine.connect() as db:
        rows = db.execute(sa.select(audit_log.c.agent, audit_log.c.action).where(audit_log.c.case_id == case_id)).all()
    assert [tuple(row) for row in rows] == [("ol", "open")]
    await client.close()


@pytest.mark.parametrize("text,segments,encoding", [("hello", 1, "GSM-7"), ("é" * 161, 2, "GSM-7"),
                                                    ("ਸਤ ਸ੍ਰੀ ਅਕਾਲ", 1, "UCS-2"), ("😀" * 40, 2, "UCS-2")])
async def test_segment_counter(world, text, segments, encoding):
    client = await login(world, f"pa{segments}{len(text)}")
    answer = await (await client.post("/api/segments", json={"text": text}, headers=HEADERS)).json()
    assert (answer["segments"], answer["encoding"]) == (segments, encoding)
    await client.close()


async def test_when_rasa_is_down_taking_a_case_changes_nothing(world):
    case_id = escalate(world, "sms-down")
    client = await login(world, "qu")
    response = await client.post(f"/api/cases/{case_id}/take", headers=HEADERS)
    assert response.status == 503 and "nothing was changed" in (await response.json())["error"]
    case = await (await client.get(f"/api/cases/{case_id}")).json()
    assert (case["status"], case["assigned_to"], case["transcript_partial"]) == ("waiting", None, True)
    await client.close()


async def test_live_socket_sends_the_queue_and_alerts_imminent_cases(world):
    client = await login(world, "ra")
    socket = await client.ws_connect("/api/live")
    first = await socket.receive_json(timeout=5)
    assert first == {"type": "cases", "cases": []}
    case_id = escalate(world, "sms-live", "imminent")
    seen = [await socket.receive_json(timeout=5), await socket.receive_json(timeout=5)]
    assert {message["type"] for message in seen} == {"alert", "cases"}
    alert = next(message for message in seen if message["type"] == "alert")
    assert alert["case"] == {"id": case_id, "risk": "imminent", "language": "es", "language_name": "Spanish"}
    cases = next(message for message in seen if message["type"] == "cases")["cases"]
    assert [case["id"] for case in cases] == [case_id] and "transcript" not in cases[0]
    await socket.close()
    await client.close()


def test_hotline_agents_add_prints_a_password_that_logs_in(tmp_path):
    env = {**os.environ, "HOTLINE_HOME": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    command = [sys.executable, "-m", "bot.cli", "agents", "add", "sam", "--role", "supervisor"]
    first = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    password = first.stdout.strip()
    assert len(password) >= 20
    again = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 1 and "already exists" in again.stderr
    accounts = Accounts(make_engine(f"sqlite:///{tmp_path / 'hotline.db'}"))
    agent = accounts.verify("sam", password)
    assert (agent.username, agent.role) == ("sam", "supervisor")
    assert accounts.verify("sam", password + "x") is None and accounts.verify("nobody", password) is None


def test_sessions_expire_and_logout_ends_them(tmp_path):
    accounts = Accounts(make_engine(f"sqlite:///{tmp_path / 'hotline.db'}"))
    accounts.add("tia")
    agent = accounts.named("tia")
    token = accounts.login(agent, now=1000.0)
    assert accounts.session_agent(token, now=1001.0) == agent
    assert accounts.session_agent(token, now=1000.0 + 13 * 3600) is None
    fresh = accounts.login(agent)
    accounts.logout(fresh)
    assert accounts.session_agent(fresh) is None


async def test_a_database_that_goes_away_gets_a_clear_answer(world):
    client = await login(world, "uma")
    case_id = escalate(world, "sms-db")
    world.hub.book.engine = world.hub.accounts.engine = make_engine("postgresql://postgres@127.0.0.1:1/none")
    for response in (await client.get("/api/cases"), await client.post(f"/api/cases/{case_id}/take", headers=HEADERS)):
        assert response.status == 503 and "database" in (await response.json())["error"]
    await client.close()


def test_the_transcript_leaves_out_intents_the_bot_and_hub_trigger():
    """A media turn ("/share_media") and the hub's "nobody took it yet" trigger are not texter words."""
    from bot.agents.summary import transcript

    events = [{"event": "user", "text": "mi jefe tiene mi pasaporte", "timestamp": 1.0},
              {"event": "user", "text": "/share_media", "timestamp": 2.0},
              {"event": "user", "text": "EXTERNAL: EXTERNAL_no_agent", "timestamp": 3.0},
              {"event": "bot", "text": "Nadie ha tomado su caso todavía.", "timestamp": 4.0}]
    assert [(line["from"], line["text"]) for line in transcript(events)] == [
        ("texter", "mi jefe tiene mi pasaporte"), ("bot", "Nadie ha tomado su caso todavía.")]


async def test_a_practice_emergency_alerts_trainers_never_supervisors(world):
    """A trainer's practice case in danger must not sound the alarm for the supervisor on duty."""
    supervisor, trainer = await login(world, "sv", "supervisor"), await login(world, "tr", "trainer")
    sockets = {name: await client.ws_connect("/api/live") for name, client in (("sv", supervisor), ("tr", trainer))}
    for socket in sockets.values():
        assert (await socket.receive_json(timeout=5))["type"] == "cases"
    case_id = escalate(world, "train-practice-1", "imminent")
    trainer_saw = [await sockets["tr"].receive_json(timeout=5), await sockets["tr"].receive_json(timeout=5)]
    assert {m["type"] for m in trainer_saw} == {"alert", "cases"}
    supervisor_saw = await sockets["sv"].receive_json(timeout=5)
    assert supervisor_saw == {"type": "cases", "cases": []}
    with pytest.raises(asyncio.TimeoutError):
        await sockets["sv"].receive_json(timeout=1.5)
    assert case_id in {c["id"] for c in await (await supervisor.get("/api/cases?training=1")).json()}
    for socket in sockets.values():
        await socket.close()
    await supervisor.close()
    await trainer.close()
