"""Trainer replay without a stack: scripts are checked before they run, every expectation can fail,
reports say what failed, and ``--compare`` lists exactly the conversations whose triage changed."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from bot.replay import session
from bot.replay.checks import check
from bot.replay.report import terminal_summary, write_html, write_junit
from bot.replay.runner import ScriptResult, TurnResult, turn_done, user_events
from bot.replay.script import ScriptError, Turn, load_script, load_scripts

LANGUAGES = ["en", "fr", "es", "tl", "hi", "pa", "zh", "ko", "vi", "th", "ar", "uk"]


def write(tmp_path: Path, data, name: str = "script.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True) if not isinstance(data, str) else data,
                    encoding="utf-8")
    return path


def minimal(**extra) -> dict:
    return {"title": "t", "language": "en", "turns": [{"texter": "hi"}], **extra}


@pytest.mark.parametrize("change, message", [
    ({"turns": [{"texter": "hi", "expect": {"responses": ["utter_gret"]}}]}, "unknown utter_gret"),
    ({"turns": [{"texter": "hi", "expect": {"not_responses": ["utter_stopp"]}}]}, "unknown utter_stopp"),
    ({"turns": [{"texter": "hi", "expect": {"indicators": ["PASSPORT"]}}]}, "unknown PASSPORT"),
    ({"turns": [{"texter": "hi", "expect": {"risk": "severe"}}]}, "risk must be one of"),
    ({"turns": [{"texter": "hi", "expect": {"riks": "high"}}]}, "unknown key(s) riks"),
    ({"turns": [{"texter": "hi", "expect": {"silent": "yes"}}]}, "silent must be true or false"),
    ({"turns": [{"texter": "hi", "delay": "soon"}]}, "delay must be a number"),
    ({"turns": [{"text": "hi"}]}, "turn 1: each turn needs `texter:`"),
    ({"channel": "telegram"}, "channel must be one of"),
    ({"turns": []}, "`turns` is missing"),
])
def test_mistakes_in_a_script_are_errors_naming_the_turn(tmp_path, change, message):
    with pytest.raises(ScriptError) as error:
        load_script(write(tmp_path, minimal(**change)))
    assert message in str(error.value) and "script.yml" in str(error.value)


def test_every_broken_script_is_reported_at_once(tmp_path):
    write(tmp_path, minimal(turns=[{"texter": "a", "expect": {"risk": "x"}}]), "a.yml")
    write(tmp_path, "title: [unclosed", "b.yml")
    write(tmp_path, minimal(), "c.yml")
    with pytest.raises(ScriptError) as error:
        load_scripts([tmp_path])
    assert "a.yml" in str(error.value) and "b.yml" in str(error.value) and "c.yml" not in str(error.value)


def test_a_turn_may_be_just_text_and_yes_must_be_quoted(tmp_path):
    script = load_script(write(tmp_path, "title: t\nlanguage: en\nturns:\n  - hello\n  - 'yes'\n"))
    assert [t.texter for t in script.turns] == ["hello", "yes"]


def observed(**values) -> TurnResult:
    state = {"language": "es", "indicators": ["DOC", "WAGE"], "risk": "medium", "imminent": False}
    state.update(values.pop("state", {}))
    return TurnResult(index=1, turn=Turn("hola"), address="+12015550100", state=state, **values)


@pytest.mark.parametrize("expect", [
    {"language": "es"}, {"indicators": ["DOC"]}, {"not_indicators": ["SEX"]}, {"risk": "medium"},
    {"risk_at_least": "low"}, {"imminent": False}, {"responses": ["utter_greet", "utter_ask_safe_now"]},
    {"not_responses": ["utter_stop"]}, {"handoff": False}, {"max_segments": 2}, {"silent": False},
])
def test_each_expectation_passes_when_met(expect):
    got = observed(responses=["utter_greet", "utter_language_check", "utter_ask_safe_now"],
                   replies=[{"body": "hola", "segments": 1}])
    assert check(expect, got) == []


@pytest.mark.parametrize("expect, words", [
    ({"language": "en"}, "expected language en, got es"),
    ({"indicators": ["DOC", "THREAT"]}, "expected indicators THREAT among DOC, WAGE"),
    ({"not_indicators": ["WAGE"]}, "expected no WAGE"),
    ({"risk": "high"}, "expected risk high, got medium"),
    ({"risk_at_least": "high"}, "expected risk high or higher, got medium"),
    ({"imminent": True}, "expected imminent true, got false"),
    ({"responses": ["utter_ask_safe_now", "utter_greet"]}, "in this order"),
    ({"responses": ["utter_minor"]}, "expected responses utter_minor"),
    ({"not_responses": ["utter_greet"]}, "expected no utter_greet"),
    ({"handoff": True}, "expected a case in the agents' queue"),
    ({"summary": {"minor": True}}, "there is no case"),
    ({"max_segments": 1}, "at most 1 segments, got 3"),
    ({"silent": True}, "expected silence"),
])
def test_each_expectation_fails_when_not_met(expect, words):
    got = observed(responses=["utter_greet", "utter_ask_safe_now"], replies=[{"body": "x" * 400, "segments": 3}])
    failures = check(expect, got)
    assert len(failures) == 1 and words in failures[0], failures


def test_summary_fields_are_read_by_dotted_path():
    case = {"minor": False, "consent": {"handoff": "yes"}, "risk": "high"}
    got = observed(case=case)
    assert check({"handoff": True, "summary": {"consent.handoff": "yes", "minor": False}}, got) == []
    assert check({"summary": {"consent.handoff": "no"}}, got) == ["expected summary consent.handoff = 'no', got 'yes'"]
    assert "has no safety.safe_now" in check({"summary": {"safety.safe_now": "yes"}}, got)[0]
    assert "expected no case" in check({"handoff": False}, got)[0]


def test_a_turn_is_done_after_action_listen_or_when_paused():
    user = {"event": "user", "text": "hola"}
    listen = {"event": "action", "name": "action_listen"}
    hub_trigger = {"event": "user", "text": "EXTERNAL: EXTERNAL_no_agent"}
    assert not turn_done({"events": [listen, user]}, 0)
    assert turn_done({"events": [listen, user, {"event": "bot"}, listen]}, 0)
    assert not turn_done({"events": [listen, user, listen]}, 1)
    assert turn_done({"events": [listen, user], "paused": True}, 0)
    assert user_events({"events": [user, hub_trigger, user]}) == [0, 2]


def result(tmp_path: Path, passed: bool, name: str = "a", error: str | None = None) -> ScriptResult:
    path = write(tmp_path, minimal(turns=[{"texter": "<b>mi jefe</b> & co"}]), f"{name}.yml")
    script = load_script(path)
    turn = observed(responses=["utter_greet"], replies=[{"body": "مرحبا <script>", "segments": 1}],
                    failures=[] if passed else ["expected risk high, got medium"])
    turn.turn = script.turns[0]
    return ScriptResult(script=script, address="+12015550100", turns=[turn], error=error)


def test_reports_show_failures_and_escape_what_was_written(tmp_path):
    results = [result(tmp_path, True, "ok"), result(tmp_path, False, "bad"),
               result(tmp_path, True, "broken", error="RuntimeError: the bot did not handle the message")]
    junit, page = tmp_path / "out" / "replay.xml", tmp_path / "out" / "replay.html"
    write_junit(results, junit, 3.0)
    write_html(results, page, 3.0)
    suite = ET.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    failure = suite.find(".//testcase/failure")
    assert failure is not None and "expected risk high, got medium" in failure.text
    text = page.read_text(encoding="utf-8")
    assert "&lt;b&gt;mi jefe&lt;/b&gt; &amp; co" in text and "<script>" not in text
    assert "dir='auto'" in text and "<link" not in text and "http" not in text.split("<body>")[1]
    assert text.index("FAILED") < text.index("passed: ")
    summary = terminal_summary(results, 3.0)
    assert "1 of 3 conversations passed, 2 failed" in summary and "FAIL script/bad" not in summary
    assert f"FAIL {tmp_path.name}/bad" in summary and "turn 1: expected risk high" in summary


def test_compare_lists_only_conversations_whose_triage_changed(tmp_path, monkeypatch, capsys):
    scripts = [load_script(write(tmp_path, minimal(), f"{n}.yml")) for n in ("same", "riskier")]
    runs = iter([{"riskier": "medium"}, {"riskier": "high"}])

    class Spawned:
        def __init__(self, model):
            self.model = model

        def __enter__(self):
            return self.model

        def __exit__(self, *exc):
            return False

    def play(scripts, model, concurrency, progress):
        risks = next(runs)
        return [ScriptResult(script=s, address="+1", turns=[observed(state={"risk": risks.get(s.path.stem, "low")})])
                for s in scripts], 1.0

    monkeypatch.setattr(session, "spawned", Spawned)
    monkeypatch.setattr(session, "play", play)
    assert session.compare(scripts, Path("old.tar.gz"), Path("new.tar.gz"), 2, False) == 1
    out = capsys.readouterr().out
    assert f"CHANGED {tmp_path.name}/riskier: risk: 'medium' -> 'high'" in out
    assert "/same" not in out and "1 of 2 conversations changed" in out


def test_the_golden_set_covers_every_language_and_path():
    scripts = load_scripts([session.GOLDEN])
    by_language: dict[str, int] = {}
    for script in scripts:
        by_language[script.path.parent.name] = by_language.get(script.path.parent.name, 0) + 1
    assert all(by_language.get(code, 0) >= 5 for code in LANGUAGES), by_language
    tags = {tag for script in scripts for tag in script.tags}
    required = {"handoff", "imminent", "minor", "third_party", "cover", "stop", "language_switch",
                "unsupported_language", "no_consent"}
    assert required <= tags, required - tags
    assert len(scripts) >= 60


def test_every_practice_persona_loads_and_has_lines_for_after_the_handoff():
    """Training mode's texters: one per language, each with turns left for the trainer to answer."""
    from bot.agents.practice import SCRIPTS

    scripts = load_scripts([SCRIPTS[0]])
    assert {s.path.parent.name for s in scripts} >= set(LANGUAGES)
    for script in scripts:
        handoff_turn = next(i for i, t in enumerate(script.turns) if t.expect.get("handoff") is True)
        assert len(script.turns) - handoff_turn - 1 >= 3, script.name


def test_replay_and_practice_numbers_are_training_numbers():
    from bot.channels.store import is_training_address, random_training_number

    assert all(is_training_address(random_training_number()) for _ in range(200))
