"""Custom actions (rasa-sdk). Thin wrappers: the logic lives in ``bot/``."""
from __future__ import annotations

from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.conversation.language import language_slots, menu_slots
from bot.conversation.triage import triage_slots
from bot.nlu.components import LANGUAGE_DETECTION, TRIAGE

TRIAGE_SLOTS = ("indicators", "indicator_evidence", "imminent", "danger_now", "minor", "third_party", "risk", "safe_now")


class ValidateSlotMappings(Action):
    """Runs after every texter message: the conversation's language, and the indicators, evidence
    and risk found so far."""

    def name(self) -> str:
        return "action_validate_slot_mappings"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        latest = tracker.latest_message or {}
        slots = language_slots(tracker.get_slot("language"), latest.get(LANGUAGE_DETECTION))
        current = {name: tracker.get_slot(name) for name in TRIAGE_SLOTS}
        slots.update(triage_slots(current, latest.get(TRIAGE), latest.get("message_id")))
        return [SlotSet(name, value) for name, value in slots.items() if tracker.get_slot(name) != value]


class ActionChooseLanguage(Action):
    """Confirms a language the texter named, or opens the numbered language menu."""

    def name(self) -> str:
        return "action_choose_language"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        detection = (tracker.latest_message or {}).get(LANGUAGE_DETECTION) or {}
        if detection.get("method") == "explicit":
            dispatcher.utter_message(response="utter_language_set")
            return []
        return [FollowupAction("language_form")]


class ValidateLanguageForm(FormValidationAction):
    """Reads the answer to the language menu; an answer that is neither ends the menu unchanged."""

    def name(self) -> str:
        return "validate_language_form"

    def validate_language_choice(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        return {"language_choice": str(slot_value), **(menu_slots(str(slot_value or "")) or {})}
