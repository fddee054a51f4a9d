"""The language slots the action server sets after each message."""
from __future__ import annotations

from bot.conversation.language import language_slots, menu_slots


def detection(language, confidence=0.9, informative=True, supported=True, detected=None, method="lingua", scores=None):
    return {"language": language, "confidence": confidence, "detected": detected or language,
            "supported": supported, "informative": informative, "method": method,
            "scores": scores or {language: confidence}}


def test_first_message_sets_language_and_support():
    assert language_slots(None, detection("es", 0.5, informative=False)) == {
        "language": "es", "language_supported": True, "detected_language": "es"}


def test_unsupported_first_message_answers_in_english_and_records_the_language():
    slots = language_slots(None, detection("en", supported=False, detected="ru"))
    assert slots == {"language": "en", "language_supported": False, "detected_language": "ru"}


def test_short_reply_changes_nothing_but_keeps_language():
    assert language_slots("tl", detection("en", 0.2, informative=False)) == {"language": "tl"}


def test_switch_to_a_supported_language_clears_unsupported_flag():
    slots = language_slots("en", detection("fr", 0.95, scores={"fr": 0.95, "en": 0.01}))
    assert slots == {"language": "fr", "language_supported": True, "detected_language": "fr"}


def test_missing_detection_keeps_the_language():
    assert language_slots("ko", None) == {"language": "ko"}
    assert language_slots(None, None) == {"language": "en"}


def test_menu_answers_by_number_or_name_in_any_language():
    assert menu_slots("3")["language"] == "es"
    assert menu_slots("12")["language"] == "th"
    assert menu_slots("한국어")["language"] == "ko"
    assert menu_slots("ਪੰਜਾਬੀ")["language"] == "pa"
    assert menu_slots("maybe later") is None
    assert menu_slots("99") is None
