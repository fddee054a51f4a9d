"""A turn's expectations against what was observed: one plain sentence per mismatch.

The sentences are what a trainer reads in the report ("expected risk high, got medium"), so they
name the expectation and both values, never a stack trace.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.replay.script import RISKS

if TYPE_CHECKING:
    from bot.replay.runner import TurnResult


def check(expect: dict[str, Any], got: "TurnResult") -> list[str]:
    failures: list[str] = []
    state = got.state
    if "language" in expect and state.get("language") != expect["language"]:
        failures.append(f"expected language {expect['language']}, got {state.get('language')}")
    have = set(state.get("indicators") or [])
    missing = [i for i in expect.get("indicators", []) if i not in have]
    if missing:
        failures.append(f"expected indicators {', '.join(missing)} among {_list(have)}")
    unwanted = [i for i in expect.get("not_indicators", []) if i in have]
    if unwanted:
        failures.append(f"expected no {', '.join(unwanted)}, got {_list(have)}")
    failures += _risk(expect, state)
    if "imminent" in expect and bool(state.get("imminent")) != expect["imminent"]:
        failures.append(f"expected imminent {str(expect['imminent']).lower()}, got {str(bool(state.get('imminent'))).lower()}")
    failures += _responses(expect, got.responses)
    failures += _case(expect, got.case)
    if "max_segments" in expect:
        long = [r["segments"] for r in got.replies if r["segments"] > expect["max_segments"]]
        if long:
            failures.append(f"expected replies of at most {expect['max_segments']} segments, got {max(long)}")
    if expect.get("silent") and got.replies:
        failures.append(f"expected silence, the texter received {len(got.replies)} message(s)")
    if expect.get("silent") is False and not got.replies:
        failures.append("expected a reply, the texter received nothing")
    return failures


def _risk(expect: dict[str, Any], state: dict[str, Any]) -> list[str]:
    risk = state.get("risk") or "none"
    if "risk" in expect and risk != expect["risk"]:
        return [f"expected risk {expect['risk']}, got {risk}"]
    if "risk_at_least" in expect and RISKS.index(risk) < RISKS.index(expect["risk_at_least"]):
        return [f"expected risk {expect['risk_at_least']} or higher, got {risk}"]
    return []


def _responses(expect: dict[str, Any], given: list[str]) -> list[str]:
    """``responses`` in order as a subsequence of what was given; ``not_responses`` none of them."""
    failures = []
    wanted = list(expect.get("responses", []))
    rest = iter(given)
    if wanted and not all(any(name == g for g in rest) for name in wanted):
        failures.append(f"expected responses {', '.join(wanted)} in this order, got {_list(given, keep_order=True)}")
    unwanted = [name for name in expect.get("not_responses", []) if name in given]
    if unwanted:
        failures.append(f"expected no {', '.join(unwanted)}, got {_list(given, keep_order=True)}")
    return failures


def _case(expect: dict[str, Any], case: dict[str, Any] | None) -> list[str]:
    failures = []
    if "handoff" in expect and bool(case) != expect["handoff"]:
        failures.append("expected a case in the agents' queue, there is none" if expect["handoff"]
                        else f"expected no case, there is one ({case.get('risk')} risk)")
    for path, value in (expect.get("summary") or {}).items():
        if case is None:
            failures.append(f"expected summary {path} = {value!r}, there is no case")
            continue
        found, got = _dig(case, str(path))
        if not found:
            failures.append(f"expected summary {path} = {value!r}, the summary has no {path}")
        elif got != value:
            failures.append(f"expected summary {path} = {value!r}, got {got!r}")
    return failures


def _dig(data: Any, path: str) -> tuple[bool, Any]:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, data


def _list(items, keep_order: bool = False) -> str:
    items = list(items) if keep_order else sorted(items)
    return ", ".join(items) if items else "(none)"
