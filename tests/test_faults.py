"""Faults with real processes (issue 8, item 6): nothing a texter sends is lost or answered twice,
and nobody meets silence, when a part of the stack fails.

One stack for the module, its processes started one by one (``tests/support/processes.py``) on a
private PostgreSQL cluster the tests start, stop and restart themselves. Each test breaks one part
while a real conversation goes on through the Twilio stand-in's signed webhooks, then checks what
the texter received (the stand-in), Rasa's tracker (REST API with the token) and the agents' queue
(the hub's API and live socket, the handoff table). A test that breaks a process leaves it running
again. The unit tests at the top check the fallback's text in every language without processes.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import random
import threading
import time

import aiohttp
import pytest
import sqlalchemy as sa
import yaml

from bot import PROJECT_ROOT
from bot.agents.tables import handoff_requests
from bot.channels import store as channel
from bot.channels.fallback import render, unavailable_slots, unreverted
from bot.channels.inbound import CHANNEL_NAME, recorded_turns
from bot.conversation import steps
from bot.conversation.facts import fact_slots
from bot.nlu.language_id import LanguageIdentifier
from bot.storage import make_engine
from tests.support.processes import PrivateCluster, Processes, Texter
from tests.support.stack import wait_for

LANGUAGES = ["en", "fr", "es", "tl", "pa", "hi", "zh", "vi", "uk", "ar", "ko", "th"]
PHRASES = yaml.safe_load((PROJECT_ROOT / "tests" / "e2e" / "phrases.yml").read_text(encoding="utf-8"))["phrases"]
DOMAIN = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text(encoding="utf-8"))
FALLBACK = "utter_bot_unavailable"


def variation(name: str, language: str) -> str:
    """A response of domain.yml in ``language`` ("bilingual": the English/French one), as sent."""
    for candidate in DOMAIN["responses"][name]:
        conditions = {c["name"]: c["value"] for c in candidate.get("condition", [])}
        bilingual = conditions.get("language_supported") is False
        if bilingual if language == "bilingual" else not bilingual and conditions.get("language", "en") == language:
            return candidate["text"].format(**fact_slots("en" if bilingual else language)).strip()
    raise KeyError((name, language))


def _responses_by_text() -> dict[str, tuple[str, str]]:
    found = {}
    for name, variations in DOMAIN["responses"].items():
        for candidate in variations:
            language = "en"
            for condition in candidate.get("condition", []):
                language = condition["value"] if condition["name"] == "language" else "bilingual"
            text = candidate["text"].format(**fact_slots("en" if language == "bilingual" else language))
            found[text.strip()] = (name, language)
    return found


RESPONSES = _responses_by_text()


def named(texts: list[str]) -> list[tuple[str, str]]:
    """(response name, language) of each message the texter received."""
    return [RESPONSES.get(text.strip(), ("unknown", text)) for text in texts]


# --- the fallback's text, every language, no processes ----------------------------------------------

@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    return LanguageIdentifier()


@pytest.mark.parametrize("code", LANGUAGES)
def test_the_fallback_is_said_in_the_conversations_language_with_911(code):
    slots = unavailable_slots({"language": code, "language_supported": True}, "", None)
    sent = render(FALLBACK, slots, CHANNEL_NAME)
    assert sent == [variation(FALLBACK, code)]
    assert fact_slots(code)["emergency_phone"] in sent[0] and "{" not in sent[0]


@pytest.mark.parametrize("code", LANGUAGES)
def test_a_first_message_sets_the_fallbacks_language_when_none_is_known(code, identifier):
    """The action server that decides the language is down: the channel decides it the same way
    from what Rasa's NLU detected in the message itself."""
    text = PHRASES[code]["describe"]
    slots = unavailable_slots({}, text, identifier.identify(text).as_dict())
    assert render(FALLBACK, slots, CHANNEL_NAME) == [variation(FALLBACK, code)]


def test_a_language_the_bot_does_not_speak_gets_the_english_and_french_fallback(identifier):
    text = "Здравствуйте, мне нужна помощь, работодатель забрал паспорт"
    slots = unavailable_slots({}, text, identifier.identify(text).as_dict())
    assert render(FALLBACK, slots, CHANNEL_NAME) == [variation(FALLBACK, "bilingual")]


def test_every_fallback_is_different_and_names_a_person_and_911():
    texts = [variation(FALLBACK, code) for code in LANGUAGES]
    assert len(set(texts)) == len(LANGUAGES)
    assert all("911" in text for text in texts)


def test_in_cover_mode_only_the_agents_are_told():
    """A message from the hotline on a phone that may be read could put the texter at risk."""
    step = steps.bot_unavailable({"cover_active": True, "language": "es"})
    assert step.responses == [] and step.escalate == steps.UNAVAILABLE
    assert steps.bot_unavailable({"language": "es"}).responses == [FALLBACK]


def test_replies_of_a_turn_rasa_recorded_are_found_by_its_message_id():
    from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered

    events = [UserUttered("hello", message_id="SMa:0"), BotUttered("first"), ActionExecuted("action_listen"),
              UserUttered("yes", message_id="SMb:0"), BotUttered("second"), BotUttered("third"),
              BotUttered("an agent", metadata={"from": "agent"}), UserUttered("later", message_id="SMc:0"),
              BotUttered("fourth")]
    assert recorded_turns(events, "SMb") == {"SMb:0": ["second", "third"]}
    assert recorded_turns(events, "SMz") == {}


async def test_a_turn_rasa_finished_without_its_actions_is_taken_back(tmp_path):
    """The action server died during a turn: the half turn is reverted with Rasa's own event in the
    real tracker store, under the conversation's lock, so that it runs whole later; the turn before
    it stays. An agent's conversation (paused) is left as it is."""
    from types import SimpleNamespace

    from rasa.core.lock_store import InMemoryLockStore
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.events import ActionExecuted, BotUttered, ConversationPaused, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot.channels.fallback import Fallback, domain
    from bot.privacy import load_keys
    from bot.settings import Settings

    trackers = SQLTrackerStore(domain(), dialect="sqlite", db=str(tmp_path / "trackers.db"))
    agent = SimpleNamespace(lock_store=InMemoryLockStore(), tracker_store=trackers)
    keys = load_keys(Settings.from_env({"HOTLINE_HOME": str(tmp_path)}), {})
    fallback = Fallback(agent, channel.ChannelStore(make_engine(f"sqlite:///{tmp_path / 'hotline.db'}"), keys))
    for conv, paused in (("sms-a", False), ("sms-b", True)):
        events = [UserUttered("hola", message_id="SMa:0"), BotUttered("¿Está a salvo?"),
                  ActionExecuted("action_listen"), *([ConversationPaused()] if paused else []),
                  UserUttered("si", message_id="SMb:0"), BotUttered("half a reply")]
        await trackers.save(DialogueStateTracker.from_events(conv, events, domain().slots))
        message = channel.Inbound(id=2, sid="SMb", conversation_id=conv, channel="sms", body="si")
        assert await fallback.take_back(message) is not paused
        standing = unreverted((await trackers.retrieve(conv)).events)
        assert recorded_turns(standing, "SMa") == {"SMa:0": ["¿Está a salvo?"]}
        assert recorded_turns(standing, "SMb") == ({"SMb:0": ["half a reply"]} if paused else {})


# --- the stack ----------------------------------------------------------------------------------

_numbers = itertools.count(random.randrange(100_000, 900_000) * 10)


def number() -> str:
    """A texter number not used before in this run (never the training range 555-01xx)."""
    return f"+1438{next(_numbers) % 10_000_000:07d}"


@pytest.fixture(scope="module")
def cluster():
    cluster = PrivateCluster()
    cluster.init()
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="module")
def stack(trained_model, cluster, tmp_path_factory):
    processes = Processes(trained_model, tmp_path_factory.mktemp("faults"), cluster.create_database("hotline"),
                          {"HOTLINE_RETRY_BASE": "0.2", "HOTLINE_CLAIM_LEASE": "10",
                           "HOTLINE_HANDOFF_WAIT": "3600"})
    processes.start()
    yield processes
    processes.stop_all()


@pytest.fixture(autouse=True)
def whole_again(request):
    """After a stack test, whatever it broke runs again (also when it failed half way)."""
    yield
    if "stack" not in request.fixturenames:
        return
    cluster, stack = request.getfixturevalue("cluster"), request.getfixturevalue("stack")
    if not cluster.running():
        cluster.start()
    for name, child in stack.children.items():
        if not child.alive():
            stack.start(name)
    stack.faults(500, 0)


def engine_of(stack: Processes):
    return make_engine(stack.env["DATABASE_URL"])


def exchange(texter: Texter, text: str, expect: int = 1, timeout: float = 60) -> list[tuple[str, str]]:
    """One message through the stand-in; the replies it brought, once nothing more came."""
    before = len(texter.received())
    assert texter.send(text) == 200
    texter.wait_for(before + expect, timeout)
    return named(texter.settled()[before:])


def user_texts(stack: Processes, texter: Texter) -> list[str]:
    return [event["text"] for event in stack.tracker(texter.number)["events"] if event["event"] == "user"]


def open_case(stack: Processes, texter: Texter) -> dict | None:
    """The texter's case in the handoff table, its summary decrypted."""
    engine = engine_of(stack)
    with engine.connect() as db:
        row = db.execute(sa.select(handoff_requests).where(
            handoff_requests.c.conversation_id == texter.conversation)).first()
    engine.dispose()
    if row is None:
        return None
    return {**json.loads(stack.keys.decrypt(row.summary_enc)), "id": row.id, "status": row.status,
            "reason": row.reason}


def retried_until_accepted(texter: Texter, text: str, statuses: list[int], timeout: float = 300) -> threading.Thread:
    """Twilio's webhook for one message (one MessageSid), sent again every second while refused,
    in a thread; ``statuses`` collects every answer."""
    def deliver() -> None:
        sid, deadline = None, time.monotonic() + timeout
        while time.monotonic() < deadline:
            sid, status = texter.webhook(text, sid)
            statuses.append(status)
            if 200 <= status < 300:
                return
            time.sleep(1.0)

    thread = threading.Thread(target=deliver, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_rasa_killed_mid_conversation_continues_where_it_was(stack):
    texter, phrases = Texter(stack, number()), PHRASES["fr"]
    opening = exchange(texter, phrases["greet"], expect=2)
    assert opening[-1] == ("utter_ask_safe_now", "fr")
    assert exchange(texter, phrases["yes"]) == [("utter_ask_can_text_freely", "fr")]
    received = len(texter.received())
    assert texter.send(phrases["no"]) == 200  # stored; its turn is running or about to
    stack.kill("rasa")
    refused: list[int] = []
    later = retried_until_accepted(texter, phrases["skip"], refused)  # Twilio retries while Rasa is down
    stack.start("rasa")
    later.join(30)
    assert refused[0] != 200 and refused[-1] == 200
    texter.wait_for(received + 3, timeout=90)
    assert named(texter.settled(quiet=3)[received:]) == [
        ("utter_clear_thread", "fr"), ("utter_ask_phone_may_be_read", "fr"), ("utter_ask_situation", "fr")]
    assert user_texts(stack, texter) == [phrases[key] for key in ("greet", "yes", "no", "skip")]


@pytest.mark.slow
def test_a_turn_rasa_recorded_before_the_process_died_is_not_run_again(stack):
    """The narrow window of a crash after Rasa saved the tracker and before the turn was marked
    done: recreated in the database (claim taken over, replies not queued). The turn is not run
    again (the texter's answer would count for the next question); its replies come from Rasa's
    tracker instead."""
    texter, phrases = Texter(stack, number()), PHRASES["es"]
    exchange(texter, phrases["greet"], expect=2)
    before = len(texter.received())
    sid, status = texter.webhook(phrases["yes"])
    assert status == 200
    sent = texter.wait_for(before + 1)[before:]
    assert named(sent) == [("utter_ask_can_text_freely", "es")]
    engine = engine_of(stack)
    with engine.begin() as db:
        db.execute(channel.outbox.delete().where(channel.outbox.c.key.like(f"in:{sid}:%")))
        db.execute(channel.inbound.update().where(channel.inbound.c.sid == sid).values(
            status="pending", attempts=1, claimed_by=None))
    requeued = wait_for(lambda: _outbox_bodies(engine, stack, sid), timeout=30)
    engine.dispose()
    assert requeued == sent
    assert user_texts(stack, texter) == [phrases["greet"], phrases["yes"]]
    assert exchange(texter, phrases["no"], expect=2)[-1] == ("utter_ask_phone_may_be_read", "es")


def _outbox_bodies(engine, stack: Processes, sid: str) -> list[str]:
    """The replies queued for the inbound message ``sid``, once all were delivered."""
    with engine.connect() as db:
        rows = db.execute(sa.select(channel.outbox.c.body_enc, channel.outbox.c.status).where(
            channel.outbox.c.key.like(f"in:{sid}:%")).order_by(channel.outbox.c.id)).all()
    if not rows or any(row.status != "delivered" for row in rows):
        return []
    return [stack.keys.decrypt(row.body_enc) for row in rows]


@pytest.mark.slow
def test_action_server_down_gets_a_safe_reply_in_the_texters_language_and_a_person(stack):
    texters = {code: Texter(stack, number()) for code in ("es", "zh", "ar")}
    for code in ("es", "zh"):
        assert exchange(texters[code], PHRASES[code]["greet"], expect=2)[-1] == ("utter_ask_safe_now", code)
    stack.kill("actions")
    texts = {"es": PHRASES["es"]["yes"], "zh": PHRASES["zh"]["yes"], "ar": PHRASES["ar"]["describe"]}
    counts = {code: len(texter.received()) for code, texter in texters.items()}
    for code, texter in texters.items():
        assert texter.send(texts[code]) == 200
    for code, texter in texters.items():
        texter.wait_for(counts[code] + 1, timeout=30)
    time.sleep(5)  # the held turns are checked again every 2 s: the texter is told once
    for code, texter in texters.items():
        assert named(texter.received()[counts[code]:]) == [(FALLBACK, code)], code
        case = open_case(stack, texter)
        assert case and case["reason"] == steps.UNAVAILABLE and case["language"] == code
        assert case["transcript"][-1]["text"] == texts[code]
    agent = stack.agent_session("faults-agent-" + number()[-6:])
    agent.login()
    status, queue = agent.get("/api/cases")
    assert status == 200
    assert {open_case(stack, t)["id"] for t in texters.values()} <= {case["id"] for case in queue}

    stack.start("actions")
    replies = {code: texter.wait_for(counts[code] + 2, timeout=60) for code, texter in texters.items()}
    assert named(replies["es"][counts["es"] + 1:]) == [("utter_ask_can_text_freely", "es")]
    assert named(replies["zh"][counts["zh"] + 1:]) == [("utter_ask_can_text_freely", "zh")]
    assert ("utter_greet", "ar") in named(texters["ar"].settled()[counts["ar"] + 1:])
    assert user_texts(stack, texters["es"]) == [PHRASES["es"]["greet"], texts["es"]]


@pytest.mark.slow
def test_postgresql_restarted_while_messages_arrive_loses_nothing_and_answers_once(stack, cluster):
    first, second = Texter(stack, number()), Texter(stack, number())
    phrases = PHRASES["en"]
    for texter in (first, second):
        assert exchange(texter, phrases["greet"], expect=2)[-1] == ("utter_ask_safe_now", "en")
    counts = {texter.number: len(texter.received()) for texter in (first, second)}
    assert first.send(phrases["yes"]) == 200  # accepted; processed now or when the database is back
    cluster.stop()
    stopped = time.monotonic()
    statuses: list[int] = []
    threads = [retried_until_accepted(first, phrases["no"], statuses),
               retried_until_accepted(second, phrases["yes"], statuses)]
    wait_for(lambda: len(statuses) >= 4, timeout=20)
    time.sleep(max(0.0, 10 - (time.monotonic() - stopped)))
    cluster.start()
    for thread in threads:
        thread.join(60)
    assert 503 in statuses and statuses.count(200) == 2, statuses
    first.wait_for(counts[first.number] + 3, timeout=90)
    second.wait_for(counts[second.number] + 1, timeout=90)
    assert named(first.settled(quiet=3)[counts[first.number]:]) == [
        ("utter_ask_can_text_freely", "en"), ("utter_clear_thread", "en"), ("utter_ask_phone_may_be_read", "en")]
    assert named(second.settled(quiet=3)[counts[second.number]:]) == [("utter_ask_can_text_freely", "en")]
    assert user_texts(stack, first) == [phrases["greet"], phrases["yes"], phrases["no"]]
    assert user_texts(stack, second) == [phrases["greet"], phrases["yes"]]
    engine = engine_of(stack)
    with engine.connect() as db:
        states = [row.status for row in db.execute(sa.select(channel.inbound.c.status).where(
            channel.inbound.c.conversation_id.in_([first.conversation, second.conversation])))]
    engine.dispose()
    assert states == ["done"] * 5


@pytest.mark.slow
@pytest.mark.parametrize("status", [500, 429])
def test_twilio_refusing_for_a_while_delivers_each_reply_once_later(stack, status):
    texter, phrases = Texter(stack, number()), PHRASES["tl"]
    stack.faults(status, 3)
    opening = exchange(texter, phrases["greet"], expect=2, timeout=60)
    assert opening[-1] == ("utter_ask_safe_now", "tl") and len(set(opening)) == len(opening)
    stack.faults(status, 2)
    assert exchange(texter, phrases["yes"]) == [("utter_ask_can_text_freely", "tl")]
    engine = engine_of(stack)
    with engine.connect() as db:
        rows = db.execute(sa.select(channel.outbox.c.status, channel.outbox.c.attempts)
                          .where(channel.outbox.c.conversation_id == texter.conversation)).all()
    engine.dispose()
    assert sum(row.attempts for row in rows) >= len(rows) + 5, "the refused sends were tried again"
    assert {row.status for row in rows} == {"delivered"}


@pytest.mark.slow
def test_hub_down_during_a_handoff_the_case_is_waiting_when_it_is_back(stack):
    texter, phrases = Texter(stack, number()), PHRASES["uk"]
    in_danger = Texter(stack, number())
    stack.stop("agent hub")
    assert exchange(texter, phrases["ask_human"], expect=2)[-1] == ("utter_ask_consent_handoff", "uk")
    assert exchange(texter, phrases["yes"]) == [("utter_ask_contact_back", "uk")]
    assert exchange(texter, phrases["no"]) == [("utter_handoff_started", "uk")]
    assert ("utter_emergency", "ko") in exchange(in_danger, PHRASES["ko"]["emergency"], expect=2)
    case, danger = open_case(stack, texter), open_case(stack, in_danger)
    assert case and case["reason"] == "consent" and case["status"] == "waiting"
    assert danger and danger["risk"] == "imminent"
    stack.start("agent hub")
    agent = stack.agent_session("faults-hub-" + number()[-6:])
    agent.login()
    status, queue = agent.get("/api/cases")
    assert status == 200 and {case["id"], danger["id"]} <= {entry["id"] for entry in queue}
    live = asyncio.run(_live_messages(stack.hub, agent.cookie_header()))
    assert live[0]["type"] == "cases" and {case["id"], danger["id"]} <= {entry["id"] for entry in live[0]["cases"]}
    assert [message["case"]["id"] for message in live[1:] if message["type"] == "alert"] == [danger["id"]]
    status, opened = agent.get(f"/api/cases/{case['id']}")
    assert status == 200 and [line["text"] for line in opened["transcript"] if line["from"] == "texter"] == [
        phrases["ask_human"], phrases["yes"], phrases["no"]]


async def _live_messages(hub: str, cookie: str, quiet: float = 3.0) -> list[dict]:
    """What the console's live socket sends first: the queue, then any alerts."""
    messages = []
    async with aiohttp.ClientSession(headers={"Cookie": cookie}) as session:
        async with session.ws_connect(hub.replace("http", "ws") + "/api/live") as socket:
            messages.append(await socket.receive_json(timeout=20))
            try:
                while True:
                    messages.append(await socket.receive_json(timeout=quiet))
            except asyncio.TimeoutError:
                pass
    return messages
