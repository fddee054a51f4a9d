"""Referral facts (phone numbers, the Kids Help Phone keyword, the cover word) as slot values.

The responses in domain.yml name these facts as {placeholders}; Rasa fills placeholders from slots,
so the slot validation action sets these slots after every message from data/referrals/facts.yml.
A number corrected in the data file reaches every conversation at its next message.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from bot import DATA_DIR
from bot.conversation.flow import questions

FACTS_FILE = DATA_DIR / "referrals" / "facts.yml"


@dataclass(frozen=True)
class Fact:
    name: str
    value: str | None
    by_language: dict[str, str]
    statement: str
    source: str
    source_url: str
    reviewed: dt.date

    def for_language(self, language: str | None) -> str | None:
        return self.by_language.get(language or "", self.value)


@lru_cache(maxsize=1)
def facts(path: Path = FACTS_FILE) -> dict[str, Fact]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))["facts"]
    return {
        name: Fact(
            name=name, value=None if item.get("value") is None else str(item["value"]),
            by_language={k: str(v) for k, v in (item.get("by_language") or {}).items()},
            statement=item["statement"], source=item["source"], source_url=item["source_url"],
            reviewed=item["reviewed"],
        )
        for name, item in data.items()
    }


@lru_cache(maxsize=1)
def cover_word() -> str:
    """The word that switches the bot to wrong-number small talk: HOTLINE_COVER_WORD or the data's."""
    configured = os.environ.get("HOTLINE_COVER_WORD", "").strip()
    if configured:
        return configured
    return questions().cover_word


def fact_slots(language: str | None) -> dict[str, Any]:
    """The placeholder slots for a conversation in ``language``."""
    values: dict[str, Any] = {n: f.for_language(language) for n, f in facts().items() if f.value is not None}
    values["cover_word"] = cover_word()
    return values
