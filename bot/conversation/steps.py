"""What the bot says and records at the points of the conversation that are not plain questions:
the opening, the end of the questions, an emergency, a request for a person, the cover word.

Pure functions from the conversation's slots to a ``Step`` (responses to send, slots to set, and
whether to escalate to the agent hub), so that the rules can be tested without Rasa; the actions in
actions/ carry the steps out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.conversation.answers import NO, YES
from bot.conversation.flow import next_form, questions, skip_remaining

#: How sure language detection must be for the opening not to confirm the language.
SURE_LANGUAGE = 0.6
#: The value of ``consent_handoff`` when a case went to an agent without asking: imminent danger.
NOT_ASKED = "not_asked"
#: Values of the ``handoff`` slot. RETURNED: an agent had the conversation and handed it back.
QUEUED, EMERGENCY, INFORMED, RETURNED = "queued", "emergency", "informed", "returned"
#: The reason a case goes to the agents when the bot's actions cannot run.
UNAVAILABLE = "bot_unavailable"
#: What an agent can tell the bot they covered when handing a conversation back.
COVERED = ("referrals", "rights", "safety_plan", "emergency")
#: What the bot says after the opening for each intent, when the opening was already sent.
REPLY_AFTER_OPENING = {
    "greet": "utter_greet", "ask_help": "utter_ask_help", "describe_situation": "utter_acknowledge",
    "thanks": "utter_welcome", "share_media": "utter_media_received",
}


@dataclass
class Step:
    responses: list[str] = field(default_factory=list)
    slots: dict[str, Any] = field(default_factory=dict)
    escalate: str | None = None  # the reason, when the case goes to the agent hub now
    stop_forms: bool = False


def opening(slots: dict[str, Any], intent: str | None, detection: dict[str, Any] | None,
            media: bool = False) -> Step:
    """The first reply of a session says who is texting (an automated assistant, a person can take
    over, STOP); it confirms the language only when detection was unsure. "We received your photo"
    only when a photo came: NLU may read "o patrao pegou meu passaporte" as sharing one."""
    if intent == "share_media" and not media:
        intent = None
    if slots.get("greeted"):
        reply = REPLY_AFTER_OPENING.get(intent or "")
        return Step([reply] if reply else [])
    responses = ["utter_greet"]
    detection = detection or {}
    unsure = detection.get("method") != "explicit" and float(detection.get("confidence") or 0) < SURE_LANGUAGE
    if unsure and slots.get("language_supported") is not False:
        responses.append("utter_language_check")
    if intent == "share_media":
        responses.append("utter_media_received")
    return Step(responses, {"greeted": True})


def next_step(slots: dict[str, Any]) -> str:
    """``safety`` or ``triage`` while questions are left, else ``finish``; ``quiet`` in cover mode."""
    if slots.get("cover_active"):
        return "quiet"
    return {"safety_form": "safety", "triage_form": "triage"}.get(next_form(slots) or "", "finish")


def emergency(slots: dict[str, Any]) -> Step:
    """Danger now: 911 first, then the case goes to the top of the agent queue; no more questions."""
    return Step(
        ["utter_emergency", "utter_emergency_escalated"],
        {**skip_remaining(slots), "consent_handoff": slots.get("consent_handoff") or NOT_ASKED,
         "handoff": EMERGENCY, "imminent": True, "risk": "imminent"},
        escalate="imminent", stop_forms=True,
    )


def ask_for_person(slots: dict[str, Any]) -> Step:
    """The texter asked for a person: skip what is left, so the next question is consent."""
    if slots.get("handoff") in (QUEUED, EMERGENCY):
        return Step(["utter_handoff_already"])
    if slots.get("handoff") == RETURNED:
        # They agreed once and an agent has just talked with them: no consent question again.
        return Step(["utter_handoff_started"], {"handoff": QUEUED}, escalate="asked_again", stop_forms=True)
    consent = questions().consent[0]
    reset = {consent: None} if slots.get(consent) not in (None, YES) else {}
    return Step(["utter_human"], {**skip_remaining(slots), **reset, "cover_active": False}, stop_forms=True)


def finish(slots: dict[str, Any], said_this_turn: bool) -> Step:
    """After the last question: Kids Help Phone for a minor, then the handoff the texter agreed to,
    or the referrals and rights information when they did not. Never silent, never repeated."""
    step = Step()
    if slots.get("minor") and not slots.get("minor_referred"):
        step.responses.append("utter_minor")
        step.slots["minor_referred"] = True
    handoff, consent = slots.get("handoff"), slots.get(questions().consent[0])
    if handoff in (QUEUED, EMERGENCY):
        if not said_this_turn and not step.responses:
            step.responses.append("utter_handoff_already")
    elif handoff == RETURNED:
        if not said_this_turn and not step.responses:
            step.responses.append("utter_ok")
    elif consent == YES:
        step.responses.append("utter_handoff_started")
        step.slots["handoff"], step.escalate = QUEUED, "consent"
    else:
        if slots.get("minor") and handoff != INFORMED:
            step.slots["handoff"], step.escalate = INFORMED, "minor"
        if not slots.get("referred"):
            step.responses += ["utter_referrals", "utter_rights"]
            step.slots["referred"] = True
        elif not said_this_turn and not step.responses:
            step.responses.append("utter_ok")
    return step


def waiting_for_person(slots: dict[str, Any]) -> bool:
    """The case is in the agents' queue: a person will answer, so the bot keeps its replies short."""
    return slots.get("handoff") in (QUEUED, EMERGENCY)


def while_waiting() -> Step:
    """What a texter waiting for a person gets instead of long automated answers (rights, "I can
    only help with...", the language menu): that a person has their messages. Several SMS of
    permits and tip lines on a phone that may be read, while a person is about to write, help no one."""
    return Step(["utter_handoff_already"])


def cover(slots: dict[str, Any]) -> Step:
    """The cover word: act like a wrong number from now on, and tell the agent the phone may be read."""
    return Step(["utter_cover"], {"cover_active": True, "monitored": True}, stop_forms=True,
                escalate="monitored" if slots.get("handoff") else None)


def not_understood(slots: dict[str, Any], intent: str | None) -> Step:
    """An honest short answer; the second time in a row, a person is offered instead of a loop."""
    if slots.get("misunderstood"):
        step = ask_for_person(slots)
        step.slots["misunderstood"] = False
        return step
    reply = "utter_out_of_scope" if intent == "out_of_scope" else "utter_not_understood"
    return Step([reply], {"misunderstood": True})


def no_agent_yet(slots: dict[str, Any]) -> Step:
    """Nobody has taken the case after the hub's wait: say so honestly, with the numbers to call.

    Silent when a message from the hotline could put the texter at risk or is unwanted: the phone
    may be read (cover mode) or they said no to being texted later. The case stays in the queue.
    """
    if slots.get("cover_active") or slots.get(questions().consent[-1]) == NO:
        return Step()
    return Step(["utter_no_agent_yet"])


def bot_unavailable(slots: dict[str, Any]) -> Step:
    """The bot's actions cannot run (its action server is down or failing): a person reads the
    texter's messages instead. The texter is told so in their language, with 911 for danger now,
    rather than meeting silence; not when the phone may be read (cover mode), where a message from
    the hotline could put them at risk. The agents are told in every case."""
    responses = [] if slots.get("cover_active") else ["utter_bot_unavailable"]
    return Step(responses, escalate=UNAVAILABLE)


def handback(covered: list[str]) -> dict[str, Any]:
    """The slots the hub sets when an agent hands a conversation back to the bot: the bot resumes
    knowing a person talked with the texter and what they covered (referrals are not sent again)."""
    covered = [item for item in covered if item in COVERED]
    slots: dict[str, Any] = {"handoff": RETURNED, "agent_covered": covered}
    if "referrals" in covered:
        slots["referred"] = True
    return slots
