"""The language of a conversation, decided after every texter message.

Rasa fills the ``language``, ``language_supported`` and ``detected_language`` slots through the
slot validation action, which calls ``language_slots`` with what the NLU pipeline detected (the
``language_detection`` key of the parse data) and the slots so far. The numbered language menu
is a Rasa form; ``menu_slots`` reads its answer.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from bot.nlu.language_id import Detection, LanguageIdentifier, choose_language, menu_choice


@lru_cache(maxsize=1)
def _identifier() -> LanguageIdentifier:
    return LanguageIdentifier()


def _detection(parsed: dict[str, Any] | None) -> Detection | None:
    if not parsed:
        return None
    return Detection(
        language=parsed["language"], confidence=parsed["confidence"], detected=parsed["detected"],
        supported=parsed["supported"], informative=parsed["informative"], method=parsed["method"],
        scores=parsed.get("scores") or {},
    )


def language_slots(previous: str | None, parsed_detection: dict[str, Any] | None,
                   short_answer: bool = False) -> dict[str, Any]:
    """New values of the language slots after one message, given what NLU detected in it. A short
    answer ("nahi jee", "oo po", "2") never changes the conversation's language: it is an answer to
    the bot's question, often typed in whatever letters are at hand."""
    detection = _detection(parsed_detection)
    if detection is None or (short_answer and previous):
        return {"language": previous or "en"}
    slots: dict[str, Any] = {"language": choose_language(previous, detection)}
    if detection.informative or previous is None:
        slots["language_supported"] = detection.supported
        slots["detected_language"] = detection.detected
    return slots


def menu_slots(answer: str) -> dict[str, Any] | None:
    """Slots set by an answer to the language menu: a number or a language's name; None if neither."""
    identifier = _identifier()
    picked = menu_choice(answer, identifier.data.codes) or identifier.explicit_choice(answer)
    if picked is None:
        return None
    return {"language": picked, "language_supported": True, "detected_language": picked}
