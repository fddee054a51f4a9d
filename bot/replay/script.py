"""Conversation scripts: what a trainer writes, read and checked before anything is sent.

A script is YAML a trainer can read without knowing Rasa (format: ``data/replay/README.md``):
metadata, the texter's turns, and what to expect after any turn. Mistakes in a script are
reported with the file and the turn, before the script runs, so a typo never passes as a
conversation that "went fine".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from bot import DATA_DIR, PROJECT_ROOT

#: Expectation keys and what each checks (the README of data/replay lists them for trainers).
EXPECT_KEYS = {
    "language": "the conversation's language (as the case summary shows it)",
    "indicators": "these indicators are among the conversation's (others allowed)",
    "not_indicators": "none of these indicators",
    "risk": "the conversation's risk level, exactly",
    "risk_at_least": "the risk level is this or higher",
    "imminent": "imminent danger flagged or not",
    "responses": "the bot gave these responses after this turn, in this order (others allowed)",
    "not_responses": "the bot gave none of these responses after this turn",
    "handoff": "a case is (true) or is not (false) in the agents' queue",
    "summary": "fields of the case summary (dotted paths, e.g. consent.handoff) and their values",
    "max_segments": "no reply after this turn is longer than this many SMS segments",
    "silent": "the texter received nothing after this turn",
}
RISKS = ("none", "low", "medium", "high", "imminent")
CHANNELS = ("sms", "whatsapp")
TURN_KEYS = {"texter", "delay", "channel", "expect", "note"}
TOP_KEYS = {"title", "language", "persona", "tags", "channel", "turns", "expect_end"}


class ScriptError(ValueError):
    """A script that cannot run as written: the message says where and why."""


@dataclass
class Turn:
    texter: str
    delay: float = 0.0
    channel: str | None = None
    expect: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass
class Script:
    path: Path
    title: str
    language: str
    persona: str
    tags: list[str]
    channel: str
    turns: list[Turn]
    expect_end: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Stable name for reports: the file's stem under its parent folder (``es/stop``)."""
        return f"{self.path.parent.name}/{self.path.stem}"


def load_script(path: Path) -> Script:
    """One script, checked; raises ``ScriptError`` naming the file and the turn."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ScriptError(f"{path}: cannot read it as YAML ({error})") from error
    if not isinstance(data, dict):
        raise ScriptError(f"{path}: expected a mapping with title, language and turns")
    _no_unknown(path, "the script", data, TOP_KEYS)
    for key in ("title", "language", "turns"):
        if not data.get(key):
            raise ScriptError(f"{path}: `{key}` is missing")
    channel = str(data.get("channel", "sms"))
    if channel not in CHANNELS:
        raise ScriptError(f"{path}: channel must be one of {', '.join(CHANNELS)}")
    if not isinstance(data["turns"], list):
        raise ScriptError(f"{path}: `turns` must be a list")
    turns = [_turn(path, index, item) for index, item in enumerate(data["turns"], 1)]
    return Script(path=path, title=str(data["title"]), language=str(data["language"]),
                  persona=str(data.get("persona") or ""), tags=[str(t) for t in data.get("tags") or []],
                  channel=channel, turns=turns,
                  expect_end=_expect(path, "expect_end", data.get("expect_end") or {}))


def load_scripts(paths: list[Path]) -> list[Script]:
    """Every ``*.yml`` under the given files and folders, sorted; all errors at once."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.yml") if p.name != "README.yml")
        elif path.exists():
            files.append(path)
        else:
            raise ScriptError(f"{path}: no such file or folder")
    scripts, errors = [], []
    for file in files:
        try:
            scripts.append(load_script(file))
        except ScriptError as error:
            errors.append(str(error))
    if errors:
        raise ScriptError("\n".join(errors))
    if not scripts:
        raise ScriptError(f"no scripts (*.yml) in {', '.join(map(str, paths))}")
    return scripts


def _turn(path: Path, index: int, item: Any) -> Turn:
    where = f"turn {index}"
    if isinstance(item, str):
        item = {"texter": item}
    if not isinstance(item, dict) or "texter" not in item:
        raise ScriptError(f"{path}: {where}: each turn needs `texter:` (what the texter sends)")
    _no_unknown(path, where, item, TURN_KEYS)
    channel = item.get("channel")
    if channel is not None and channel not in CHANNELS:
        raise ScriptError(f"{path}: {where}: channel must be one of {', '.join(CHANNELS)}")
    try:
        delay = float(item.get("delay") or 0)
    except (TypeError, ValueError) as error:
        raise ScriptError(f"{path}: {where}: delay must be a number of seconds") from error
    if not 0 <= delay <= 600:
        raise ScriptError(f"{path}: {where}: delay must be between 0 and 600 seconds")
    return Turn(texter=str(item["texter"]), delay=delay, channel=channel,
                expect=_expect(path, where, item.get("expect") or {}), note=str(item.get("note") or ""))


def _expect(path: Path, where: str, expect: Any) -> dict[str, Any]:
    if not isinstance(expect, dict):
        raise ScriptError(f"{path}: {where}: `expect` must be a mapping")
    _no_unknown(path, f"{where}: expect", expect, set(EXPECT_KEYS))
    for key in ("risk", "risk_at_least"):
        if key in expect and expect[key] not in RISKS:
            raise ScriptError(f"{path}: {where}: {key} must be one of {', '.join(RISKS)}")
    for key in ("indicators", "not_indicators", "responses", "not_responses"):
        if key in expect and not isinstance(expect[key], list):
            raise ScriptError(f"{path}: {where}: {key} must be a list")
    for key, known in (("indicators", _indicator_ids()), ("not_indicators", _indicator_ids()),
                       ("responses", _response_names()), ("not_responses", _response_names())):
        wrong = [str(name) for name in expect.get(key, []) if name not in known]
        if wrong:
            # A misspelt name in `not_responses` would pass for ever: refuse it.
            raise ScriptError(f"{path}: {where}: {key}: unknown {', '.join(wrong)}")
    for key in ("imminent", "handoff", "silent"):
        if key in expect and not isinstance(expect[key], bool):
            raise ScriptError(f"{path}: {where}: {key} must be true or false")
    if "summary" in expect and not isinstance(expect["summary"], dict):
        raise ScriptError(f"{path}: {where}: summary must map field paths to values")
    if "max_segments" in expect and not isinstance(expect["max_segments"], int):
        raise ScriptError(f"{path}: {where}: max_segments must be a whole number")
    return dict(expect)


@lru_cache(maxsize=1)
def _response_names() -> frozenset[str]:
    domain = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text(encoding="utf-8"))
    return frozenset(domain.get("responses") or {})


@lru_cache(maxsize=1)
def _indicator_ids() -> frozenset[str]:
    taxonomy = yaml.safe_load((DATA_DIR / "indicators" / "taxonomy.yml").read_text(encoding="utf-8"))
    return frozenset(item["id"] for item in taxonomy["indicators"])


def _no_unknown(path: Path, where: str, data: dict, allowed: set[str]) -> None:
    unknown = sorted(set(map(str, data)) - allowed)
    if unknown:
        raise ScriptError(f"{path}: {where}: unknown key(s) {', '.join(unknown)}; "
                          f"expected some of {', '.join(sorted(allowed))}")
