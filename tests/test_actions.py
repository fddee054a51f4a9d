"""The custom actions, run the way the action server runs them (rasa-sdk trackers), with the
handoff queue and deletion requests in a real database: SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, MultiFernet
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

import actions.actions as act
from bot.agents.handoff import SqlHandoffQueue, handoff_requests
from bot.privacy import Keys
from bot.retention import DeletionRequests
from bot.storage import make_engine
from tests.test_channel import new_database

DOMAIN: dict = {}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path, monkeypatch):
    with new_database(request.param) as url:
        url = url or f"sqlite:///{tmp_path / 'hotline.db'}"
        engine = make_engine(url)
        keys = Keys(b"h" * 32, MultiFernet([Fernet(Fernet.generate_key())]))
        queue, deletions = SqlHandoffQueue(engine, keys), DeletionRequests(engine)
        monkeypatch.setattr(act, "handoff_queue", lambda: queue)
        monkeypatch.setattr(act, "deletion_requests", lambda: deletions)
        yield engine, keys
        engine.dispose()


def tracker(slots: dict | None = None, text: str = "hi", intent: str = "greet", language: str = "en",
            events: list | None = None, active_loop: str | None = None, sender: str = "sms-test",
            asked: str | None = None) -> Tracker:
    now = time.time()
    latest = {"text": text, "intent": {"name": intent, "confidence": 1.0}, "message_id": "m1",
              "language_detection": {"language": language, "confidence": 0.99, "method": "lingua",
                                     "detected": language, "supported": True, "informative": True},
              "triage": {"indicators": [], "evidence": [], "imminent": False}}
    user = {"event": "user", "text": text, "timestamp": now, "parse_data": latest}
    return Tracker(sender, {"language": language, "requested_slot": asked, **(slots or {})}, latest, [*(events or []), user],
                   False, None, {"name": active_loop} if active_loop else {}, "action_listen")


def run(action, tr: Tracker) -> tuple[list[dict], list[str]]:
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tr, DOMAIN))
    return events, [m["response"] for m in dispatcher.messages]


def slots_of(events: list[dict]) -> dict:
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


def cases(engine) -> list:
    with engine.connect() as db:
        return list(db.execute(sa.select(handoff_requests)))


def test_emergency_sends_911_first_and_queues_the_case_at_the_top(database):
    engine, keys = database
    events, said = run(act.ActionEmergency(), tracker({"safe_now": "yes"}, "he is here with a knife", "emergency"))
    assert said == ["utter_emergency", "utter_emergency_escalated"]
    assert any(e["event"] == "active_loop" and e["name"] is None for e in events)
    [case] = cases(engine)
    assert case.risk == "imminent" and case.reason == "imminent" and case.status == "waiting"
    summary = json.loads(keys.decrypt(case.summary_enc))
    assert summary["risk"] == "imminent" and summary["channel"] == "sms"
    assert summary["transcript"][-1] == {"from": "texter", "text": "he is here with a knife", "language": "en",
                                         "at": summary["transcript"][-1]["at"]}
    assert "knife" not in case.summary_enc, "the summary is encrypted at rest"


def test_a_second_escalation_updates_the_one_open_case(database):
    engine, _ = database
    run(act.ActionFinish(), tracker({"consent_handoff": "yes", "risk": "medium"}, "yes", "affirm"))
    run(act.ActionEmergency(), tracker({"consent_handoff": "yes", "handoff": "queued"}, "he's back", "emergency"))
    [case] = cases(engine)
    assert case.risk == "imminent" and case.priority == 4


def test_finish_with_consent_hands_off_and_records_consent(database):
    engine, keys = database
    slots = {"safe_now": "yes", "can_text_freely": "yes", "phone_may_be_read": "yes", "situation": "told",
             "consent_handoff": "yes", "contact_back": "no", "language": "es", "indicators": ["DOC"],
             "indicator_evidence": [{"indicator": "DOC", "text": "tiene mi pasaporte", "start": 0, "end": 18}],
             "risk": "medium"}
    events, said = run(act.ActionFinish(), tracker(slots, "no", "deny", language="es", sender="wa-abc"))
    assert said == ["utter_handoff_started"] and slots_of(events)["handoff"] == "queued"
    summary = json.loads(keys.decrypt(cases(engine)[0].summary_enc))
    assert summary["channel"] == "whatsapp" and summary["language"] == "es" and summary["interpreter_needed"]
    assert summary["consent"] == {"handoff": "yes", "contact_back": "no"}
    assert summary["safety"] == {"safe_now": "yes", "can_text_freely": "yes", "phone_may_be_read": "yes"}
    assert summary["indicators"] == [{"id": "DOC", "label": "Documents held",
                                      "evidence": [{"text": "tiene mi pasaporte"}]}]


def test_declining_gives_referrals_and_rights_and_queues_nothing(database):
    engine, _ = database
    slots = {"situation": "told", "consent_handoff": "no"}
    _, said = run(act.ActionFinish(), tracker(slots, "no", "deny"))
    assert said == ["utter_referrals", "utter_rights"] and cases(engine) == []


def test_not_safe_right_now_is_an_emergency_inside_the_safety_form(database):
    engine, _ = database
    dispatcher = CollectingDispatcher()
    form = act.ValidateSafetyForm()
    tr = tracker({}, "no", "deny", active_loop="safety_form", asked="safe_now")
    result = form.validate_safe_now("no", dispatcher, tr, DOMAIN)
    assert [m["response"] for m in dispatcher.messages] == ["utter_emergency", "utter_emergency_escalated"]
    assert result["safe_now"] == "no" and result["can_text_freely"] == "skip" and result["risk"] == "imminent"
    assert cases(engine)[0].risk == "imminent"


@pytest.mark.parametrize(("text", "intent", "expected"), [
    ("si", "affirm", "yes"), ("2", "deny", "no"), ("", "skip", "skip"), ("I don't know what to say", "describe_situation", "unclear"),
    ("oo po", "out_of_scope", "yes"),
])
def test_safety_answers(text, intent, expected):
    result = act.ValidateSafetyForm().validate_can_text_freely(
        text, CollectingDispatcher(), tracker({}, text, intent, active_loop="safety_form"), DOMAIN)
    assert result == {"can_text_freely": expected}


def test_a_phone_that_may_be_read_gets_advice_to_clear_the_thread():
    dispatcher = CollectingDispatcher()
    form = act.ValidateSafetyForm()
    form.validate_phone_may_be_read("yes", dispatcher, tracker({}, "yes", "affirm", asked="phone_may_be_read"), DOMAIN)
    assert [m["response"] for m in dispatcher.messages] == ["utter_clear_thread"]


def test_answers_given_before_a_form_starts_are_not_answered_again():
    """Rasa validates slots filled before a form starts; that must not repeat advice or an alarm."""
    dispatcher = CollectingDispatcher()
    form = act.ValidateSafetyForm()
    form.validate_phone_may_be_read("yes", dispatcher, tracker({}, "hi", "greet", asked=None), DOMAIN)
    assert form.validate_safe_now("no", dispatcher, tracker({}, "hi", "greet", asked=None), DOMAIN) == {"safe_now": "no"}
    result = act.ValidateTriageForm().validate_situation("told", dispatcher, tracker({}, "help", "ask_human"), DOMAIN)
    assert dispatcher.messages == [] and result == {"situation": "told"}


def test_a_yes_to_a_followup_becomes_an_indicator_with_the_texters_words():
    tr = tracker({"indicators": [], "indicator_evidence": []}, "sí, el patrón", "affirm", language="es",
                 active_loop="triage_form")
    result = act.ValidateTriageForm().validate_documents("sí, el patrón", CollectingDispatcher(), tr, DOMAIN)
    assert result["documents"] == "yes" and result["indicators"] == ["DOC"]
    assert result["indicator_evidence"][0]["text"] == "sí, el patrón"
    assert result["indicator_evidence"][0]["question"] == "documents"


def test_an_age_under_18_makes_a_minor():
    tr = tracker({"indicators": ["SEX"]}, "16", "out_of_scope", active_loop="triage_form")
    result = act.ValidateTriageForm().validate_age("16", CollectingDispatcher(), tr, DOMAIN)
    assert result["age"] == "16" and result["minor"] is True and result["risk"] == "high"


def test_delete_confirmed_records_a_request_and_starts_over(database):
    engine, _ = database
    events, said = run(act.ActionDeleteData(), tracker({"delete_confirmed": "yes"}, "yes", "affirm", sender="sms-x"))
    assert said == ["utter_deleted"] and events[-1]["event"] == "restart"
    assert DeletionRequests(engine).pending()[0][1] == "sms-x"


def test_delete_declined_deletes_nothing(database):
    engine, _ = database
    _, said = run(act.ActionDeleteData(), tracker({"delete_confirmed": "no"}, "no", "deny"))
    assert said == ["utter_delete_cancelled"] and DeletionRequests(engine).pending() == []


def test_slot_mapping_sets_the_referral_facts_for_the_language():
    events, _ = run(act.ValidateSlotMappings(), tracker({"language": "fr"}, "bonjour tout le monde", "greet", "fr"))
    slots = slots_of(events)
    assert slots["hotline_phone"] == "1-833-900-1010" and slots["khp_keyword"] == "TEXTO"


def test_a_new_session_keeps_language_and_cover_mode_but_asks_safety_again():
    events, said = run(act.ActionSessionStart(), tracker({"language": "ko", "cover_active": True, "safe_now": "yes"}))
    assert said == [] and events[0]["event"] == "session_started"
    assert slots_of(events) == {"language": "ko", "cover_active": True}


def test_cover_word_in_an_open_case_marks_it_may_be_monitored(database):
    engine, keys = database
    run(act.ActionFinish(), tracker({"consent_handoff": "yes"}, "yes", "affirm"))
    events, said = run(act.ActionCover(), tracker({"consent_handoff": "yes", "handoff": "queued"}, "PIZZA", "cover"))
    assert said == ["utter_cover"] and slots_of(events)["cover_active"] is True
    assert json.loads(keys.decrypt(cases(engine)[0].summary_enc))["may_be_monitored"] is True


def test_stop_closes_any_open_question():
    events, said = run(act.ActionStop(), tracker({}, "STOP", "stop", active_loop="safety_form"))
    assert said == ["utter_stop"] and any(e["event"] == "active_loop" and e["name"] is None for e in events)


@pytest.mark.parametrize("action, intent", [(act.ActionGiveRights(), "ask_rights"),
                                            (act.ActionNotUnderstood(), "out_of_scope"),
                                            (act.ActionChooseLanguage(), "choose_language")])
@pytest.mark.parametrize("handoff", ["queued", "emergency"])
def test_a_texter_waiting_for_a_person_gets_one_short_line_not_long_answers(action, intent, handoff):
    """Logistics for the agent ("the boss comes at 7") misread as a rights question must not bring
    four SMS of permits while a person is about to write; nor the language menu."""
    events, responses = run(action, tracker({"handoff": handoff, "greeted": True}, "el jefe llega a las 7", intent))
    assert responses == ["utter_handoff_already"]
    assert not any(e.get("event") == "followup" for e in events)


def test_rights_are_given_in_full_before_any_handoff():
    _, responses = run(act.ActionGiveRights(), tracker({"greeted": True}, "what are my rights", "ask_rights"))
    assert responses == ["utter_rights", "utter_rights_owp", "utter_rights_trp", "utter_tip_line"]
