"""The risk level of a case: computed here and nowhere else (shared/CONTEXT.md, "Risk levels").

- ``imminent``: danger now (an imminent-danger message, or the texter says they are not safe
  right now): 911 and the top of the agent queue;
- ``high``: a minor with commercial sex, violence, threats, or three or more indicators;
- ``medium``: one or two indicators;
- ``low``: worry without an indicator;
- ``none``: information requests.
"""
from __future__ import annotations

from collections.abc import Iterable

LEVELS = ("none", "low", "medium", "high", "imminent")
SEVERE = {"VIOL", "THREAT"}


def risk_level(
    indicators: Iterable[str],
    imminent: bool = False,
    safe_now: bool | None = None,
    worry: bool = False,
) -> str:
    """Risk from the indicators found so far, imminent danger, the safety answer and worry."""
    found = set(indicators)
    if imminent or safe_now is False:
        return "imminent"
    if {"MINOR", "SEX"} <= found or found & SEVERE or len(found) >= 3:
        return "high"
    if found:
        return "medium"
    if worry:
        return "low"
    return "none"


def higher(a: str, b: str) -> str:
    """The higher of two risk levels: a case's risk never goes down within a conversation."""
    return max(a, b, key=LEVELS.index)
