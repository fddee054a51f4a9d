"""Which question comes next: the safety questions, then what is happening, follow-ups, consent.

Rasa's forms ask for the first required slot that is still empty; this module says which slots are
required, from data/conversation/questions.yml and what the conversation already knows. Why here
and not in the forms' YAML: the follow-ups depend on what the texter already said (a texter who
wrote "they took my passport" is not asked about documents), and on how many questions they chose
to skip (two skips in a row end the follow-ups: nothing is ever required to get help).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import yaml

from bot import DATA_DIR
from bot.conversation.answers import SKIP, YES

QUESTIONS_FILE = DATA_DIR / "conversation" / "questions.yml"

#: The value of a question that was not answered with yes, no or skip (the texter wrote something
#: else): recorded as it is, and the conversation moves on instead of asking again.
UNCLEAR = "unclear"


@dataclass(frozen=True)
class Followup:
    slot: str
    indicator: str
    when: str
    skip_if: frozenset[str]


@dataclass(frozen=True)
class Questions:
    safety: tuple[str, ...]
    situation: str
    followups: tuple[Followup, ...]
    max_followups: int
    max_skips_in_a_row: int
    age: str
    consent: tuple[str, ...]
    cover_word: str

    @property
    def all_slots(self) -> tuple[str, ...]:
        return (*self.safety, self.situation, *(f.slot for f in self.followups), self.age, *self.consent)

    def followup(self, slot: str) -> Followup | None:
        return next((f for f in self.followups if f.slot == slot), None)


@lru_cache(maxsize=1)
def questions() -> Questions:
    data = yaml.safe_load(QUESTIONS_FILE.read_text(encoding="utf-8"))
    return Questions(
        safety=tuple(data["safety"]), situation=data["situation"],
        followups=tuple(Followup(f["slot"], f["indicator"], str(f["when"]), frozenset(f["skip_if"]))
                        for f in data["followups"]),
        max_followups=int(data["max_followups"]), max_skips_in_a_row=int(data["max_skips_in_a_row"]),
        age=data["age"], consent=tuple(data["consent"]), cover_word=str(data["cover_word"]),
    )


def safety_slots() -> list[str]:
    return list(questions().safety)


def triage_slots(slots: dict[str, Any]) -> list[str]:
    """The questions of the triage form for a conversation in this state, in the order asked."""
    q = questions()
    indicators = set(slots.get("indicators") or [])
    required: list[str] = []
    if slots.get(q.situation) is not None or not indicators:
        required.append(q.situation)
    asked = [f for f in q.followups if slots.get(f.slot) is not None]
    wanted = [f for f in q.followups if slots.get(f.slot) is None and not f.skip_if & indicators]
    tired = _skips_in_a_row(slots, q) >= q.max_skips_in_a_row
    followups = asked + ([] if tired else wanted[: max(0, q.max_followups - len(asked))])
    required += [f.slot for f in q.followups if f in followups]
    if slots.get(q.age) is not None or not (tired or slots.get("minor")):
        required.append(q.age)
    required.append(q.consent[0])
    if slots.get(q.consent[0]) == YES:
        required += list(q.consent[1:])
    return required


def _skips_in_a_row(slots: dict[str, Any], q: Questions) -> int:
    answered = [slots[name] for name in (*q.safety, q.situation, *(f.slot for f in q.followups))
                if slots.get(name) is not None]
    count = 0
    for value in reversed(answered):
        if value != SKIP:
            break
        count += 1
    return count


def next_form(slots: dict[str, Any]) -> str | None:
    """The form that still has questions, or None when the conversation has asked everything."""
    if any(slots.get(name) is None for name in safety_slots()):
        return "safety_form"
    if any(slots.get(name) is None for name in triage_slots(slots)):
        return "triage_form"
    return None


def skip_remaining(slots: dict[str, Any]) -> dict[str, str]:
    """Slot values that skip every question not yet answered except consent: the texter asked for
    a person (or is in danger), so the next question is whether to hand over."""
    q = questions()
    names = (*q.safety, q.situation, *(f.slot for f in q.followups), q.age)
    return {name: SKIP for name in names if slots.get(name) is None}


def followup_indicator(slot: str, answer: str) -> str | None:
    """The indicator a follow-up answer gives (``DOC`` for yes to documents), or None."""
    followup = questions().followup(slot)
    return followup.indicator if followup and answer == followup.when else None
