"""The case summary an agent sees first: built from the conversation's slots and transcript.

Only what the agent needs (shared/CONTEXT.md, "Hotline agents"): how urgent, what was said in the
texter's own words with the language named, what the texter agreed to, whether an interpreter is
needed. The agent hub validates it against its versioned JSON Schema.
"""
from __future__ import annotations

import datetime as dt
import json
from functools import lru_cache
from typing import Any

import yaml
from rasa.shared.core.constants import EXTERNAL_MESSAGE_PREFIX

from bot import DATA_DIR
from bot.agents.handoff import OPEN
from bot.channels.store import channel_of

SCHEMA_VERSION = 1
SCHEMA_FILE = DATA_DIR / "schemas" / f"case_summary.v{SCHEMA_VERSION}.json"
AGENT = "agent"
#: Languages the hotline's agents text in without an interpreter.
AGENT_LANGUAGES = frozenset({"en", "fr"})


@lru_cache(maxsize=1)
def _labels() -> dict[str, str]:
    data = yaml.safe_load((DATA_DIR / "indicators" / "taxonomy.yml").read_text(encoding="utf-8"))
    return {item["id"]: item["label"] for item in data["indicators"]}


@lru_cache(maxsize=1)
def _language_names() -> dict[str, str]:
    data = yaml.safe_load((DATA_DIR / "language" / "languages.yml").read_text(encoding="utf-8"))
    return {item["code"]: item["name"] for item in data["supported"]}


def iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="seconds")


def transcript(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Texter, bot and agent messages from Rasa events, oldest first (intent triggers like /stop,
    and the hub's own "nobody took it yet" trigger, left out). An agent's replies are bot events the hub appended with ``metadata.from = agent``."""
    lines = []
    for event in events:
        kind, text = event.get("event"), event.get("text")
        if kind not in ("user", "bot") or not text or (kind == "user" and text.startswith(("/", EXTERNAL_MESSAGE_PREFIX))):
            continue
        language = ((event.get("parse_data") or {}).get("language_detection") or {}).get("language")
        by_agent = kind == "bot" and (event.get("metadata") or {}).get("from") == AGENT
        lines.append({"from": "texter" if kind == "user" else AGENT if by_agent else "bot", "text": text,
                      "language": language, "at": iso(event.get("timestamp") or 0)})
    return lines


def _indicators(slots: dict[str, Any]) -> list[dict[str, Any]]:
    evidence = slots.get("indicator_evidence") or []
    return [
        {"id": code, "label": _labels().get(code, code),
         "evidence": [{"text": e["text"], **({"question": e["question"]} if e.get("question") else {})}
                      for e in evidence if e["indicator"] == code]}
        for code in slots.get("indicators") or []
    ]


def build_summary(conversation_id: str, slots: dict[str, Any], events: list[dict[str, Any]],
                  now: float) -> dict[str, Any]:
    """The summary of one conversation at ``now`` (seconds since the epoch)."""
    started = next((e.get("timestamp") for e in events if e.get("event") == "user"), now) or now
    language = slots.get("language") or "en"
    supported = slots.get("language_supported") is not False
    detected = slots.get("detected_language") or language
    return {
        "schema_version": SCHEMA_VERSION,
        "id": conversation_id,
        "status": OPEN,
        "channel": channel_of(conversation_id),
        "language": language if supported else detected,
        "language_name": _language_names().get(language if supported else "", detected),
        "interpreter_needed": (language if supported else detected) not in AGENT_LANGUAGES,
        "risk": slots.get("risk") or "none",
        "imminent": bool(slots.get("imminent")),
        "indicators": _indicators(slots),
        "danger": [{"text": item["text"]} for item in slots.get("danger_evidence") or []],
        "safety": {name: slots.get(name) for name in ("safe_now", "can_text_freely", "phone_may_be_read")},
        "may_be_monitored": bool(slots.get("monitored")),
        "minor": bool(slots.get("minor")),
        "age": int(slots["age"]) if str(slots.get("age") or "").isdigit() else None,
        "third_party": bool(slots.get("third_party")),
        "consent": {"handoff": slots.get("consent_handoff"), "contact_back": slots.get("contact_back")},
        "created_at": iso(started),
        "waiting_seconds": 0,
        "transcript": transcript(events),
    }


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft7Validator

    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def schema_errors(summary: dict[str, Any]) -> list[str]:
    """Where a summary breaks the versioned schema (paths and reasons, no texter content)."""
    return [f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.validator}"
            for error in _validator().iter_errors(summary)]
