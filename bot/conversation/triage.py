"""Indicators accumulated over a conversation, kept in slots for the handoff summary.

Words that show SEX only for a minor ("the clients") wait in ``minor_context_evidence`` until
the conversation shows a minor, in any message before or after them, or in the age answer.

After every texter message, the slot validation action passes the message's ``triage`` parse data
(from ``bot.nlu.components.IndicatorExtractor``) and the current slots to ``triage_slots``. The
evidence keeps the texter's own words, so an agent sees what was said, in the language it was said.
"""
from __future__ import annotations

from typing import Any

from bot.triage.risk import higher, risk_level

MAX_EVIDENCE = 50  # a very long conversation keeps its first fifty pieces of evidence
MAX_DANGER = 10


def triage_slots(slots: dict[str, Any], triage: dict[str, Any] | None, message_id: str | None) -> dict[str, Any]:
    """New values of the triage slots after one message (only the slots that change)."""
    if not triage:
        return {}
    evidence = list(slots.get("indicator_evidence") or [])
    seen = {(e["indicator"], e["text"]) for e in evidence}
    minor = bool(slots.get("minor")) or bool(triage.get("minor"))
    waiting = list(slots.get("minor_context_evidence") or [])
    waiting += [{**item, "message_id": message_id} for item in triage.get("if_minor", [])][:MAX_EVIDENCE - len(waiting)]
    for item in triage.get("evidence", []) + (waiting if minor else []):
        if (item["indicator"], item["text"]) not in seen and len(evidence) < MAX_EVIDENCE:
            evidence.append({"message_id": message_id, **item})
            seen.add((item["indicator"], item["text"]))
    indicators = sorted({e["indicator"] for e in evidence} | set(slots.get("indicators") or []))
    danger = list(slots.get("danger_evidence") or [])
    for item in triage.get("danger", []):
        if all(item["text"] != known["text"] for known in danger) and len(danger) < MAX_DANGER:
            danger.append({"text": item["text"], "message_id": message_id})
    imminent = bool(slots.get("imminent")) or bool(triage.get("imminent"))
    risk = risk_level(indicators, imminent, slots.get("safe_now"), worry=bool(triage.get("worry")))
    new = {
        "indicators": indicators,
        "indicator_evidence": evidence,
        "imminent": imminent,
        "danger_evidence": danger,
        "danger_now": bool(triage.get("imminent")),
        "minor": minor,
        "minor_context_evidence": [] if minor else waiting,
        "third_party": bool(slots.get("third_party")) or bool(triage.get("third_party")),
        "risk": higher(slots.get("risk") or "none", risk),
    }
    if triage.get("age") is not None and slots.get("age") is None:
        # "I'm 16" answers the age question before it is asked, and the agent sees the age.
        new["age"] = str(triage["age"])
    return {name: value for name, value in new.items() if slots.get(name) != value}
