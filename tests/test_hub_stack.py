"""The agent hub inside the whole stack (`hotline up`): a texter's signed webhook becomes a case at the
top of the queue, the agent takes it (the bot falls silent), texts with the texter live, hands back
(the bot speaks again), closes; nobody taking a case gets the texter an honest message. The same
path through the console in Debian's Chromium, with screenshots kept as test artifacts."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest
import yaml

from bot import DATA_DIR, PROJECT_ROOT
from bot.agents.app import CSRF_HEADER, CSRF_VALUE
from bot.conversation.facts import fact_slots
from bot.replay.script import load_script
from tests.conftest import HANDOFF_WAIT
from tests.support.stack import sent_to, text_from, wait_for

pytestmark = pytest.mark.slow
HEADERS = {CSRF_HEADER: CSRF_VALUE}
ARTIFACTS = Path(os.environ.get("HOTLINE_TEST_ARTIFACTS", PROJECT_ROOT / "test-artifacts"))


@pytest.fixture(scope="module")
def stack(stacks):
    return stacks.running()


def add_agent(stack, name: str, role: str = "agent") -> str:
    result = subprocess.run([sys.executable, "-m", "bot.cli", "agents", "add", name, "--role", role],
                            cwd=PROJECT_ROOT, env=stack["env"], capture_output=True, text=True, check=True)
    return result.stdout.strip()


def response_text(name: str, language: str) -> str:
    """A response of the domain in a language, with the referral facts filled in."""
    domain = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text(encoding="utf-8"))
    for variation in domain["responses"][name]:
        conditions = {c["name"]: c["value"] for c in variation.get("condition", [])}
        if conditions.get("language", "en") == language and "language_supported" not in conditions:
            return variation["text"].format(**fact_slots(language)).strip()
    raise KeyError(name)


class Console:
    """An agent's API session (aiohttp, own cookie jar) on the stack's hub."""

    def __init__(self, stack, name: str, role: str = "agent") -> None:
        self.base = f"http://127.0.0.1:{stack['hub']}"
        self.name, self.password = name, add_agent(stack, name, role)

    async def __aenter__(self) -> "Console":
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        answer = await self.post("/api/login", {"username": self.name, "password": self.password})
        assert answer["username"] == self.name
        return self

    async def __aexit__(self, *_exc) -> None:
        await self.session.close()

    async def get(self, path: str):
        async with self.session.get(self.base + path) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def post(self, path: str, body: dict | None = None):
        async with self.session.post(self.base + path, json=body or {}, headers=HEADERS) as response:
            assert response.status < 400, await response.text()
            return await response.json()


def evidence_texts(case: dict) -> list[str]:
    """The texter's words the summary quotes: danger now, then each indicator's evidence."""
    return [item["text"] for item in case.get("danger", [])] + \
        [item["text"] for indicator in case["indicators"] for item in indicator["evidence"]]


def case_of(cases: list[dict], words: str) -> dict | None:
    return next((case for case in cases if any(words in text for text in evidence_texts(case))), None)


async def test_spanish_imminent_danger_reaches_the_top_of_the_queue_with_its_evidence(stack):
    async with Console(stack, "ana") as agent:
        text_from(stack, "+15145550301", "tengo una pregunta sobre mi trabajo de limpieza")
        text = "ayuda, mi jefe me está golpeando ahora mismo"
        text_from(stack, "+15145550302", text)
        cases = []
        for _ in range(150):
            cases = await agent.get("/api/cases")
            if case_of(cases, "golpeando"):
                break
            await asyncio.sleep(0.2)
        top = case_of(cases, "golpeando")
        ahead = cases[:cases.index(top)]
        assert all(case["risk"] == "imminent" for case in ahead), "nothing less urgent is ahead of it"
        assert (top["risk"], top["imminent"], top["language"], top["channel"]) == ("imminent", True, "es", "sms")
        assert any("golpeando" in text for text in evidence_texts(top))
        assert top["transcript"][0] == {**top["transcript"][0], "from": "texter", "text": text}
        assert "schema_errors" not in top


async def test_warm_handoff_pauses_the_bot_relays_both_ways_and_handback_resumes_it(stack):
    texter = "+15145550303"
    async with Console(stack, "bea") as agent:
        socket = await agent.session.ws_connect(agent.base.replace("http", "ws") + "/api/live")
        assert (await socket.receive_json(timeout=10))["type"] == "cases"
        text_from(stack, texter, "he is outside with a knife, help me")
        alert = None
        while alert is None:
            message = await socket.receive_json(timeout=30)
            alert = message if message["type"] == "alert" else None
        case_id = alert["case"]["id"]
        assert wait_for(lambda: len(sent_to(stack, texter)) >= 2)  # 911 first, then "an agent is told"

        taken = await agent.post(f"/api/cases/{case_id}/take")
        assert (taken["status"], taken["assigned_to"]) == ("held", "bea")
        before = len(sent_to(stack, texter))
        text_from(stack, texter, "he left now. i am in the bathroom")
        live = None
        while live is None:
            message = await socket.receive_json(timeout=30)
            live = message if message["type"] == "message" and message["case_id"] == case_id else None
        assert live["entry"]["text"] == "he left now. i am in the bathroom"
        await asyncio.sleep(3)
        assert len(sent_to(stack, texter)) == before, "the bot must stay silent while an agent has the case"

        reply = "Hi, I'm Sam from the hotline. Can you lock the door?"
        answer = await agent.post(f"/api/cases/{case_id}/reply", {"text": reply})
        assert answer == {"segments": 1, "encoding": "GSM-7"}
        assert wait_for(lambda: any(m["body"] == reply for m in sent_to(stack, texter)), 20)

        case = await agent.get(f"/api/cases/{case_id}")
        assert [line["from"] for line in case["transcript"][-2:]] == ["texter", "agent"]
        await agent.post(f"/api/cases/{case_id}/handback", {"note": "safe for now", "covered": ["referrals"]})
        count = len(sent_to(stack, texter))
        text_from(stack, texter, "thank you")
        assert wait_for(lambda: len(sent_to(stack, texter)) > count, 30), "the bot answers again after handback"

        closed = await agent.post(f"/api/cases/{case_id}/close", {"outcome": "safety_plan", "note": "door locked"})
        assert closed["status"] == "closed"
        await socket.close()


async def test_nobody_takes_the_case_the_texter_is_told_honestly_and_it_stays_queued(stack):
    texter = "+15145550304"
    async with Console(stack, "cai") as agent:
        text_from(stack, texter, "alguien me está pegando ahora mismo, ayuda")
        message = response_text("utter_no_agent_yet", "es")
        assert wait_for(lambda: any(m["body"] == message for m in sent_to(stack, texter)), HANDOFF_WAIT + 40), \
            [m["body"] for m in sent_to(stack, texter)]
        assert sum(m["body"] == message for m in sent_to(stack, texter)) == 1
        case = case_of(await agent.get("/api/cases"), "pegando")
        assert (case["status"], case["told_waiting"]) == ("waiting", True)


def test_console_in_chromium_login_live_case_reply_handback_close(stack):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    password = add_agent(stack, "dee")
    texter = "+15145550305"
    base = f"http://127.0.0.1:{stack['hub']}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(base + "/")
        page.fill("#username", "dee")
        page.fill("#password", password)
        page.click("#login")
        expect(page.locator("#queue-heading")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "console-1-queue.png"))
        page.click("#theme-toggle")  # the 3 a.m. theme, remembered across reloads
        page.reload()
        expect(page.locator("html")).to_have_attribute("data-theme", "dark")
        page.screenshot(path=str(ARTIFACTS / "console-1-queue-dark.png"))
        page.click("#theme-toggle")
        expect(page.locator("html")).to_have_attribute("data-theme", "light")

        text_from(stack, texter, "il arrive maintenant avec un couteau, aidez-moi")
        ours = wait_for(lambda: case_of(page.request.get(base + "/api/cases").json(), "couteau"), 30)
        row = page.locator(f'#queue [data-case-id="{ours["id"]}"]')
        expect(row).to_be_visible(timeout=10_000)
        expect(page.locator("#alert-banner")).to_be_visible(timeout=10_000)
        row.click()
        expect(page.locator("#transcript")).to_contain_text("couteau", timeout=10_000)
        page.click("#take")
        expect(page.locator("#reply-text")).to_be_enabled(timeout=10_000)
        page.fill("#reply-text", "Bonjour, ici Léa de la ligne d'aide. Êtes-vous à l'abri ?")
        expect(page.locator("#segments")).to_contain_text("1 segment", timeout=5_000)
        page.screenshot(path=str(ARTIFACTS / "console-2-case.png"))
        page.click("#send")
        assert wait_for(lambda: any("ici Léa" in m["body"] for m in sent_to(stack, texter)), 20)

        page.fill("#handback-note", "911 conseillé")
        page.check("input[name=covered][value=emergency]")
        page.click("#handback")
        expect(page.locator("#hold-state")).to_contain_text("eturned", timeout=10_000)
        page.select_option("#close-outcome", "emergency_services")
        page.click("#close")
        expect(page.locator("#status")).to_contain_text("losed", timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "console-3-closed.png"))
        browser.close()
    assert errors == []


async def test_a_trainer_practises_on_a_scripted_texter_kept_apart_from_real_cases(stack):
    """Training mode: the simulated texter reaches the trainer's queue as a TRAINING case that agents
    never see and statistics never count; each trainer reply brings the texter's next line."""
    async with Console(stack, "tara", "trainer") as trainer, Console(stack, "abe") as agent, \
            Console(stack, "sue", "supervisor") as supervisor:
        names = {s["name"]: s for s in await trainer.get("/api/practice/scripts")}
        practice = next(name for name, s in names.items() if name.startswith("practice/en/"))
        assert "golden/es/minor" in names and "golden/ar/stop" in names
        async with agent.session.get(agent.base + "/api/practice/scripts") as refused:
            assert refused.status == 403
        counted = await supervisor.get("/api/stats")
        started = await trainer.post("/api/practice", {"script": practice})
        assert (started["title"], started["turns"]) == (names[practice]["title"], names[practice]["turns"])

        first_line = load_script(DATA_DIR / "replay" / f"{practice}.yml").turns[0].texter

        async def training_case():
            """This practice's case (the trainers' queue may hold other training cases)."""
            for case in await trainer.get("/api/cases"):
                texter = [line["text"] for line in case["transcript"] if line["from"] == "texter"]
                if case["training"] and case["status"] == "waiting" and texter[:1] == [first_line]:
                    return case
            return None
        case = None
        for _ in range(300):
            case = await training_case()
            if case:
                break
            await asyncio.sleep(0.3)
        assert case, "the practice never reached the trainer's queue"
        assert case["id"] not in {c["id"] for c in await agent.get("/api/cases")}
        assert await supervisor.get("/api/stats") == counted
        await trainer.post(f"/api/cases/{case['id']}/take")
        texter_lines = len([l for l in (await trainer.get(f"/api/cases/{case['id']}"))["transcript"] if l["from"] == "texter"])
        await trainer.post(f"/api/cases/{case['id']}/reply", {"text": "Hi, this is Tara from the hotline. Are you safe?"})
        for _ in range(150):
            transcript = (await trainer.get(f"/api/cases/{case['id']}"))["transcript"]
            if len([l for l in transcript if l["from"] == "texter"]) > texter_lines:
                break
            await asyncio.sleep(0.3)
        assert transcript[-1]["from"] == "texter", transcript[-3:]
        assert any(l["from"] == "agent" and "Tara" in l["text"] for l in transcript)
        assert await supervisor.get("/api/stats") == counted


def test_console_practice_form_for_trainers_only(stack):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{stack['hub']}"
    accounts = {"tim": add_agent(stack, "tim", "trainer"), "ali": add_agent(stack, "ali")}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        for name, password in accounts.items():
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(base + "/")
            page.fill("#username", name)
            page.fill("#password", password)
            page.click("#login")
            expect(page.locator("#queue-heading")).to_be_visible()
            if name == "ali":
                expect(page.locator("#practice-form")).to_be_hidden()
                continue
            expect(page.locator("#practice-form")).to_be_visible()
            expect(page.locator("#practice-script option")).to_have_count(
                len(page.request.get(base + "/api/practice/scripts").json()) + 1, timeout=10_000)
            page.click("#practice-start")
            expect(page.locator("#status")).to_contain_text("Choose a scripted texter")
            page.select_option("#practice-script", "golden/fr/cover_word")
            page.click("#practice-start")
            expect(page.locator("#status")).to_contain_text("Practice started", timeout=10_000)
            page.screenshot(path=str(ARTIFACTS / "console-4-practice.png"))
            assert errors == []
        browser.close()
