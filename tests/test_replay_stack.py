"""Trainer replay against the whole stack with the trained model: the golden set passes, and a
script that expects the wrong thing fails with a non-zero exit, a JUnit failure and an HTML page
that shows it."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import yaml

from bot import PROJECT_ROOT
from bot.agents.accounts import Accounts
from bot.privacy import load_keys
from bot.replay import session
from bot.replay.report import terminal_summary, write_html, write_junit
from bot.replay.runner import Endpoints, play_all
from bot.replay.script import load_scripts
from bot.settings import Settings
from bot.storage import database_url, make_engine


@pytest.fixture(scope="module")
def trainer(stacks):
    stack = stacks.running()
    settings = Settings.from_env(stack["env"])
    password = Accounts(make_engine(database_url(settings))).add("golden-trainer", "trainer")
    return stack, "golden-trainer", password


def endpoints(stack, user: str, password: str) -> Endpoints:
    settings = Settings.from_env(stack["env"])
    return Endpoints(
        twilio=f"http://127.0.0.1:{stack['twilio']}", rasa=f"http://127.0.0.1:{stack['rasa']}",
        hub=f"http://127.0.0.1:{stack['hub']}",
        rasa_token=(settings.home / "rasa_api_token.secret").read_text().strip(),
        keys=load_keys(settings, stack["env"]), hub_user=user, hub_password=password,
    )


def script_file(tmp_path, name: str, text: str):
    """A script in a folder of its own (reports name scripts folder/file)."""
    path = tmp_path / name
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_golden_set_passes_against_the_trained_model(trainer, tmp_path):
    stack, user, password = trainer
    scripts = load_scripts([session.GOLDEN])
    results = asyncio.run(play_all(scripts, endpoints(stack, user, password), concurrency=6))
    seconds = sum(r.seconds for r in results)
    write_junit(results, tmp_path / "golden.xml", seconds)
    write_html(results, tmp_path / "golden.html", seconds)
    assert all(r.passed for r in results), terminal_summary(results, seconds)


def test_a_wrong_expectation_fails_the_command_with_reports(trainer, tmp_path):
    stack, user, password = trainer
    script = script_file(tmp_path, "wrong/danger.yml",
                         "title: Danger said as not dangerous\nlanguage: en\nturns:\n"
                         "  - texter: he is outside my door with a knife right now\n"
                         "    expect:\n      risk: none\n      not_responses: [utter_emergency]\n")
    env = {**stack["env"], "HOTLINE_REPLAY_USER": user, "HOTLINE_REPLAY_PASSWORD": password,
           "TWILIO_API_URL": f"http://127.0.0.1:{stack['twilio']}"}
    run = subprocess.run(
        [sys.executable, "-m", "bot.cli", "replay", str(script), "--no-progress",
         "--junit", str(tmp_path / "r.xml"), "--html", str(tmp_path / "r.html")],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "expected risk none, got imminent" in run.stdout and "expected no utter_emergency" in run.stdout
    failure = ET.parse(tmp_path / "r.xml").getroot().find(".//failure")
    assert failure is not None and "expected risk none, got imminent" in failure.text
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "FAILED" in page and "with a knife right now" in page and "class='failure'" in page


def test_a_recorded_case_is_redacted_and_replays(trainer, tmp_path):
    """A conversation with a name, a number and a place goes through the stack; its case, recorded
    by `hotline replay --record`, names none of them and replays with the same triage."""
    stack, user, password = trainer
    script = script_file(
        tmp_path, "live/named.yml",
        "title: A texter who gives her name and number\nlanguage: en\nturns:\n"
        "  - texter: my name is Rosalind Okafor, my number is 519 555 0147. i work at Sunny Farms in Leamington"
        " and the boss keeps my passport\n"
        "  - texter: 'yes'\n  - texter: 'yes'\n  - texter: 'no'\n  - texter: skip\n  - texter: skip\n"
        "  - texter: 'yes'\n  - texter: 'yes'\n"
        "    expect:\n      handoff: true\n      imminent: false\n")
    results = asyncio.run(play_all(load_scripts([script]), endpoints(stack, user, password)))
    assert results[0].passed, terminal_summary(results, 1.0)
    case_id = results[0].turns[-1].case["id"]
    env = {**stack["env"], "HOTLINE_REPLAY_USER": user, "HOTLINE_REPLAY_PASSWORD": password}
    out = tmp_path / "recorded" / "en" / "case.yml"
    run = subprocess.run([sys.executable, "-m", "bot.cli", "replay", "--record", case_id, "--out", str(out)],
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    text = out.read_text(encoding="utf-8")
    for secret in ("Rosalind", "Okafor", "Sunny Farms", "Leamington", "0147", "519 555"):
        assert secret not in text, text
    recorded = yaml.safe_load(text)
    assert "keeps my passport" in recorded["turns"][0]["texter"] and recorded["expect_end"]["indicators"] == ["DOC"]
    replayed = asyncio.run(play_all(load_scripts([out]), endpoints(stack, user, password)))
    assert replayed[0].passed, terminal_summary(replayed, 1.0)
