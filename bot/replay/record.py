"""``hotline replay --record CASE_ID``: a finished conversation from the hub, as a redacted script.

The texter's messages become the turns (redacted: ``bot.replay.redact``); the case's triage becomes
what the script expects at the end (its indicators, at least its risk, a handoff), so replaying the
recording on a new model shows whether it would still triage the conversation the same way. The
bot's and agents' lines are left out: the script plays the texter, the bot answers anew.
"""
from __future__ import annotations

from typing import Any

import aiohttp
import yaml

from bot.replay.redact import Redactor
from bot.replay.runner import Endpoints


async def fetch_case(endpoints: Endpoints, case_id: str) -> dict[str, Any]:
    """The case as the hub shows it to the replay account (a supervisor for real cases)."""
    from bot.agents.app import CSRF_HEADER, CSRF_VALUE

    if not endpoints.hub_user:
        raise RuntimeError("recording needs a hub login: HOTLINE_REPLAY_USER and HOTLINE_REPLAY_PASSWORD")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        credentials = {"username": endpoints.hub_user, "password": endpoints.hub_password}
        async with session.post(f"{endpoints.hub}/api/login", json=credentials,
                                headers={CSRF_HEADER: CSRF_VALUE}) as reply:
            if reply.status != 200:
                raise RuntimeError(f"the hub refused the login ({reply.status})")
        async with session.get(f"{endpoints.hub}/api/cases/{case_id}") as reply:
            if reply.status != 200:
                body = await reply.json(content_type=None)
                raise RuntimeError(f"the hub answered {reply.status}: {(body or {}).get('error', '')}")
            return await reply.json()


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
