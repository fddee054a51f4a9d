"""``hotline replay --record CASE_ID``: a finished conversation from the hub, as a redacted script.

The texter's messages become the turns (redacted: ``bot.replay.redact``); the case's triage becomes
what the script expects at the end (its indicators, at least its risk, a handoff), so replaying the
recording on a new model shows whether it would still triage the conversation the same way. The
bot's and agents' lines are left out: the script plays the texter, the bot answers anew.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import Engine

from bot.replay.redact import Redactor
from bot.retention import register_recording
from bot.replay.runner import Endpoints, StackClient


async def fetch_case(endpoints: Endpoints, case_id: str) -> dict[str, Any]:
    """The case as the hub shows it to the replay account (a supervisor for real cases)."""
    async with StackClient(endpoints) as client:
        return await client.case_by_id(case_id)


def script_from_case(case: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
    """The redacted script of one case (a mapping ready for YAML)."""
    language = case.get("language") or "en"
    redactor = Redactor(language, seed)
    turns = [{"texter": redactor.redact(line["text"])} for line in case.get("transcript") or []
             if line.get("from") == "texter" and line.get("text")]
    if not turns:
        raise RuntimeError("the case has no texter message to record")
    expect_end: dict[str, Any] = {"handoff": True, "risk_at_least": case.get("risk") or "none"}
    indicators = sorted(item["id"] for item in case.get("indicators") or [])
    if indicators:
        expect_end["indicators"] = indicators
    if case.get("imminent"):
        expect_end["imminent"] = True
    tags = ["recorded"] + [tag for tag, on in (("minor", case.get("minor")), ("third_party", case.get("third_party")),
                                               ("imminent", case.get("imminent"))) if on]
    return {
        "title": f"Recorded case {str(case.get('id', ''))[:8]} (redacted)",
        "language": language,
        "persona": "recorded from a real conversation; names, places, numbers and contacts replaced",
        "tags": tags,
        "channel": case.get("channel") if case.get("channel") in ("sms", "whatsapp") else "sms",
        "turns": turns,
        "expect_end": expect_end,
    }


def to_yaml(script: dict[str, Any]) -> str:
    return yaml.safe_dump(script, allow_unicode=True, sort_keys=False, width=100)


def save(engine: Engine, case_id: str, text: str, out: Path) -> None:
    """Writes a recorded script, registered first under the case's conversation
    (``bot.retention.register_recording``), so that the texter's "delete" and the retention purge
    delete the file too. ``LookupError`` (nothing written) when this database has no such case."""
    register_recording(engine, case_id, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
