"""Custom actions (rasa-sdk). Thin wrappers: the logic lives in ``bot/conversation`` and
``bot/agents``."""
from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import ActionExecuted, ActiveLoop, EventType, FollowupAction, Restarted, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.agents.handoff import SqlHandoffQueue
from bot.agents.summary import build_summary
from bot.conversation import flow, steps
from bot.conversation.answers import NO, SKIP, YES, answers, parse_age
from bot.conversation.facts import fact_slots
from bot.conversation.language import language_slots, menu_slots
from bot.conversation.triage import triage_slots
from bot.nlu.components import LANGUAGE_DETECTION, TRIAGE
from bot.privacy import default_keys
from bot.retention import DeletionRequests
from bot.settings import Settings
from bot.storage import database_url, make_engine

TRIAGE_SLOTS = ("indicators", "indicator_evidence", "danger_evidence", "imminent", "danger_now", "minor", "third_party", "risk",
                "safe_now", "minor_context_evidence")
#: Slots a new session keeps: the language, and whether the phone may be read (cover mode).
CARRIED_OVER = ("language", "language_supported", "detected_language", "cover_active", "monitored")
#: The intent of each kind of short answer when NLU did not already decide it.
ANSWER_OF_INTENT = {"affirm": YES, "deny": NO, "skip": SKIP}


@lru_cache(maxsize=1)
def _engine():
    return make_engine(database_url(Settings.from_env()))


@lru_cache(maxsize=1)
def handoff_queue() -> SqlHandoffQueue:
    """One queue per action server: its keys are loaded and its table made once, not per case."""
    return SqlHandoffQueue(_engine(), default_keys())


@lru_cache(maxsize=1)
def deletion_requests() -> DeletionRequests:
    return DeletionRequests(_engine())


def _triage_now(tracker: Tracker) -> dict[str, Any]:
    return {name: tracker.get_slot(name) for name in TRIAGE_SLOTS}


def _answer_evidence(tracker: Tracker, indicator: str, value: Any, question: str, **finding: Any) -> dict[str, Any]:
    """The triage slots after an answer to ``question`` that gives ``indicator``: the texter's
    answer itself is the evidence."""
    text = str(value)
    evidence = {"indicator": indicator, "text": text, "start": 0, "end": len(text), "question": question}
    return triage_slots(_triage_now(tracker), {"evidence": [evidence], **finding},
                        (tracker.latest_message or {}).get("message_id"))


def _slots(tracker: Tracker) -> dict[str, Any]:
    return dict(tracker.slots)


def _said_this_turn(tracker: Tracker) -> bool:
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            return False
        if event.get("event") == "bot":
            return True
    return False


def _carry_out(step: steps.Step, dispatcher: CollectingDispatcher, tracker: Tracker) -> list[EventType]:
    """Send a step's responses, record its slots, and escalate the case when the step says so."""
    for response in step.responses:
        dispatcher.utter_message(response=response)
    events: list[EventType] = [ActiveLoop(None), SlotSet("requested_slot", None)] if step.stop_forms else []
    events += [SlotSet(name, value) for name, value in step.slots.items()]
    if step.escalate:
        slots = {**_slots(tracker), **step.slots}
        summary = build_summary(tracker.sender_id, slots, tracker.events, time.time())
        handoff_queue().escalate(tracker.sender_id, summary, step.escalate)
    return events


class ValidateSlotMappings(Action):
    """Runs after every texter message: the conversation's language, the indicators, evidence and
    risk found so far, and the referral facts the responses name as placeholders."""

    def name(self) -> str:
        return "action_validate_slot_mappings"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        latest = tracker.latest_message or {}
        previous = tracker.get_slot("language")
        short_answer = answers().classify(latest.get("text"), previous) not in (None, "delete")
        slots = language_slots(previous, latest.get(LANGUAGE_DETECTION), short_answer)
        slots.update(triage_slots(_triage_now(tracker), latest.get(TRIAGE), latest.get("message_id")))
        slots.update(fact_slots(slots["language"]))
        intent = (latest.get("intent") or {}).get("name")
        if intent == "describe_situation" and tracker.get_slot("situation") is None and not tracker.active_loop:
            slots["situation"] = "told"
        if intent not in ("out_of_scope", "nlu_fallback") and tracker.get_slot("misunderstood"):
            slots["misunderstood"] = False
        return [SlotSet(name, value) for name, value in slots.items() if tracker.get_slot(name) != value]


class ActionSessionStart(Action):
    """A new session keeps the language and cover mode, and asks the safety questions again. It
    never sends anything: the bot does not text first."""

    def name(self) -> str:
        return "action_session_start"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        carried = [SlotSet(name, tracker.get_slot(name)) for name in CARRIED_OVER if tracker.get_slot(name) is not None]
        return [SessionStarted(), *carried, ActionExecuted("action_listen")]


class ActionGreet(Action):
    """The opening of a session, or the intent's own short reply after it."""

    def name(self) -> str:
        return "action_greet"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        latest = tracker.latest_message or {}
        step = steps.opening(_slots(tracker), (latest.get("intent") or {}).get("name"), latest.get(LANGUAGE_DETECTION),
                             media=bool(((tracker.get_last_event_for("user") or {}).get("metadata") or {}).get("media")))
        return _carry_out(step, dispatcher, tracker)


class ActionNextStep(Action):
    """Says where the conversation goes next (``next_step``): the rules then start the safety or
    triage questions, or finish; ``quiet`` in cover mode."""

    def name(self) -> str:
        return "action_next_step"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        return [SlotSet("next_step", steps.next_step(_slots(tracker)))]


class ActionFinish(Action):
    """After the last question: the handoff the texter agreed to, or referrals and rights."""

    def name(self) -> str:
        return "action_finish"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        return _carry_out(steps.finish(_slots(tracker), _said_this_turn(tracker)), dispatcher, tracker)


class ActionEmergency(Action):
    def name(self) -> str:
        return "action_emergency"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        return _carry_out(steps.emergency(_slots(tracker)), dispatcher, tracker)


class ActionHuman(Action):
    """The texter asked for a person: say what the bot is, then ask consent to hand over."""

    def name(self) -> str:
        return "action_human"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        return _carry_out(steps.ask_for_person(_slots(tracker)), dispatcher, tracker)


class ActionNotUnderstood(Action):
    """Out of scope or not understood: an honest answer once, then a person is offered."""

    def name(self) -> str:
        return "action_not_understood"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        slots = _slots(tracker)
        if steps.waiting_for_person(slots):
            return _carry_out(steps.while_waiting(), dispatcher, tracker)
        events = _carry_out(steps.opening(slots, None, (tracker.latest_message or {}).get(LANGUAGE_DETECTION)),
                            dispatcher, tracker) if not slots.get("greeted") else []
        intent = ((tracker.latest_message or {}).get("intent") or {}).get("name")
        return events + _carry_out(steps.not_understood(slots, intent), dispatcher, tracker)


class ActionCover(Action):
    def name(self) -> str:
        return "action_cover"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        return _carry_out(steps.cover(_slots(tracker)), dispatcher, tracker)


class ActionStop(Action):
    """STOP ends everything at once: no question left open, no follow-up."""

    def name(self) -> str:
        return "action_stop"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        dispatcher.utter_message(response="utter_stop")
        return [ActiveLoop(None), SlotSet("requested_slot", None)]


class ActionGiveRights(Action):
    """Rights at work, both permits (open work permit, temporary resident permit) and the tip line."""

    def name(self) -> str:
        return "action_give_rights"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        if steps.waiting_for_person(_slots(tracker)):
            return _carry_out(steps.while_waiting(), dispatcher, tracker)
        for response in ("utter_rights", "utter_rights_owp", "utter_rights_trp", "utter_tip_line"):
            dispatcher.utter_message(response=response)
        return []


class ActionNoAgentYet(Action):
    """Triggered by the agent hub when nobody has taken the case after its wait."""

    def name(self) -> str:
        return "action_no_agent_yet"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        return _carry_out(steps.no_agent_yet(_slots(tracker)), dispatcher, tracker)


class ActionDeleteData(Action):
    """After a confirmed "delete": the request is recorded for the deletion job, and the
    conversation starts over with nothing remembered."""

    def name(self) -> str:
        return "action_delete_data"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        if tracker.get_slot("delete_confirmed") != YES:
            dispatcher.utter_message(response="utter_delete_cancelled")
            return [SlotSet("delete_confirmed", None)]
        deletion_requests().request(tracker.sender_id)
        dispatcher.utter_message(response="utter_deleted")
        return [Restarted()]


def _answer(tracker: Tracker, value: Any) -> str:
    """yes, no, skip or unclear, from NLU's intent or the reviewed word lists."""
    intent = ((tracker.latest_message or {}).get("intent") or {}).get("name")
    if intent in ANSWER_OF_INTENT:
        return ANSWER_OF_INTENT[intent]
    found = answers().classify(str(value or ""), tracker.get_slot("language"))
    return found if found in (YES, NO, SKIP) else flow.UNCLEAR


def _just_asked(tracker: Tracker, slot: str) -> bool:
    """Whether this message answers the question about ``slot``. Rasa also validates slots that were
    filled before a form started; those must not say anything again."""
    return tracker.get_slot("requested_slot") == slot


class ValidateSafetyForm(FormValidationAction):
    """Are you safe, can you text freely, could someone read this phone. "No, not safe" is danger
    now: 911 and the agent, before any other question."""

    def name(self) -> str:
        return "validate_safety_form"

    async def required_slots(self, domain_slots, dispatcher, tracker, domain) -> list[str]:
        return flow.safety_slots()

    def validate_safe_now(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                          domain: dict[str, Any]) -> dict[str, Any]:
        answer = _answer(tracker, value)
        if answer != NO or not _just_asked(tracker, "safe_now"):
            return {"safe_now": answer}
        step = steps.emergency(_slots(tracker))
        _carry_out(step, dispatcher, tracker)
        return {**step.slots, "safe_now": answer}

    def validate_can_text_freely(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        answer = _answer(tracker, value)
        if answer == NO and tracker.get_slot("phone_may_be_read") != YES and _just_asked(tracker, "can_text_freely"):
            dispatcher.utter_message(response="utter_clear_thread")
        return {"can_text_freely": answer}

    def validate_phone_may_be_read(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        answer = _answer(tracker, value)
        if answer == YES and tracker.get_slot("can_text_freely") != NO and _just_asked(tracker, "phone_may_be_read"):
            dispatcher.utter_message(response="utter_clear_thread")
        return {"phone_may_be_read": answer}


class ValidateTriageForm(FormValidationAction):
    """What is happening, the follow-ups that matter for the referral, the age, and consent."""

    def name(self) -> str:
        return "validate_triage_form"

    async def required_slots(self, domain_slots, dispatcher, tracker, domain) -> list[str]:
        return flow.triage_slots(_slots(tracker))

    def validate_situation(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        if not _just_asked(tracker, "situation"):
            return {"situation": value}
        if _answer(tracker, value) == SKIP:
            return {"situation": SKIP}
        dispatcher.utter_message(response="utter_acknowledge")
        return {"situation": "told"}

    def _followup(self, slot: str, value: Any, tracker: Tracker) -> dict[str, Any]:
        answer = _answer(tracker, value)
        result: dict[str, Any] = {slot: answer}
        indicator = flow.followup_indicator(slot, answer)
        if indicator:
            result.update(_answer_evidence(tracker, indicator, value, slot))
        return result

    def validate_leaving(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        return self._followup("leaving", value, tracker)

    def validate_documents(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        return self._followup("documents", value, tracker)

    def validate_pay(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        return self._followup("pay", value, tracker)

    def validate_threats(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        return self._followup("threats", value, tracker)

    def validate_debts(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        return self._followup("debts", value, tracker)

    def validate_age(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        age = parse_age(str(value or ""))
        if age is None:
            answer = _answer(tracker, value)
            return {"age": SKIP if answer == SKIP else flow.UNCLEAR}
        result: dict[str, Any] = {"age": str(age)}
        if age < 18:
            result.update(_answer_evidence(tracker, "MINOR", value, "age", minor=True))
        return result

    def validate_consent_handoff(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        return {"consent_handoff": _answer(tracker, value)}

    def validate_contact_back(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        return {"contact_back": _answer(tracker, value)}


class ValidateDeleteForm(FormValidationAction):
    def name(self) -> str:
        return "validate_delete_form"

    def validate_delete_confirmed(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        return {"delete_confirmed": YES if _answer(tracker, value) == YES else NO}


class ActionChooseLanguage(Action):
    """Confirms a language the texter named, or opens the numbered language menu."""

    def name(self) -> str:
        return "action_choose_language"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        detection = (tracker.latest_message or {}).get(LANGUAGE_DETECTION) or {}
        if detection.get("method") == "explicit":
            dispatcher.utter_message(response="utter_language_set")
            return []
        if steps.waiting_for_person(_slots(tracker)):
            return _carry_out(steps.while_waiting(), dispatcher, tracker)
        return [FollowupAction("language_form")]


class ValidateLanguageForm(FormValidationAction):
    """Reads the answer to the language menu; an answer that is neither ends the menu unchanged."""

    def name(self) -> str:
        return "validate_language_form"

    def validate_language_choice(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        return {"language_choice": str(slot_value), **(menu_slots(str(slot_value or "")) or {})}
