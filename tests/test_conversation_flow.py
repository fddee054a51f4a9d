"""The conversation's logic without Rasa: short answers, which questions are asked, and what the
bot does at the opening, in danger, for a person, at the end, and with the cover word."""
from __future__ import annotations

import datetime as dt

import pytest
import yaml

from bot import DATA_DIR
from bot.conversation import flow, steps
from bot.conversation.answers import answers, parse_age
from bot.conversation.facts import cover_word, fact_slots, facts

LANGUAGES = ("en", "fr", "es", "tl", "pa", "hi", "zh", "vi", "uk", "ar", "ko", "th")
SAFETY_DONE = {"safe_now": "yes", "can_text_freely": "yes", "phone_may_be_read": "no"}


# --- short answers ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "language", "expected"), [
    ("Y", "en", "yes"), ("n", "en", "no"), ("1", "fr", "yes"), ("2", "es", "no"), ("👍", "zh", "yes"),
    ("👎", "ar", "no"), ("Sí!", "es", "yes"), ("SI", "es", "yes"), ("oui", "fr", "yes"), ("NON", "fr", "no"),
    ("oo po", "tl", "yes"), ("hindi po", "tl", "no"), ("ਹਾਂ ਜੀ", "pa", "yes"), ("nahi", "pa", "no"),
    ("हाँ", "hi", "yes"), ("नहीं", "hi", "no"), ("是的", "zh", "yes"), ("不是", "zh", "no"),
    ("có", "vi", "yes"), ("khong", "vi", "no"), ("так", "uk", "yes"), ("ні", "uk", "no"),
    ("نعم", "ar", "yes"), ("لا", "ar", "no"), ("네", "ko", "yes"), ("아니요", "ko", "no"),
    ("ใช่", "th", "yes"), ("ไม่", "th", "no"),
    ("skip", "en", "skip"), ("PASSER", "fr", "skip"), ("saltar", "es", "skip"), ("跳过", "zh", "skip"),
    ("", "en", "skip"), ("   ", "ko", "skip"), ("?!", "th", "skip"),
    ("delete", "en", "delete"), ("borrar", "es", "delete"), ("supprimer", "fr", "delete"),
])
def test_short_answers_in_every_language(text, language, expected):
    assert answers().classify(text, language) == expected


@pytest.mark.parametrize("text", ["he took my passport", "no one pays me", "yes he hits me every day " * 3,
                                  "k", "ok", "hello", "stop hitting me"])
def test_sentences_are_not_short_answers(text):
    assert answers().classify(text, "en") is None


def test_a_word_of_another_language_counts_when_it_means_one_thing():
    assert answers().classify("oui", "en") == "yes"
    assert answers().classify("haan", "en") == "yes"


@pytest.mark.parametrize("text", ["مش عارف", "مش عارفه", "مش عارفة"])
def test_i_dont_know_skips_in_the_feminine_too(text):
    """Most texters are women and girls: the feminine "I don't know" is a skip as well."""
    assert answers().classify(text, "ar") == "skip"


def test_every_language_has_yes_no_skip_and_delete_words():
    data = yaml.safe_load((DATA_DIR / "conversation" / "answers.yml").read_text(encoding="utf-8"))
    for language in LANGUAGES:
        assert all(data["languages"][language][kind] for kind in ("yes", "no", "skip", "delete")), language


@pytest.mark.parametrize(("text", "age"), [("16", 16), ("tengo 17 años", 17), ("j'ai 15 ans", 15), ("१६", 16),
                                           ("١٧", 17), ("34", 34), ("no", None), ("16 or 17", None), ("1", None)])
def test_ages(text, age):
    assert parse_age(text) == age


# --- which questions ----------------------------------------------------------------------------

def test_nothing_known_asks_safety_first():
    assert flow.next_form({}) == "safety_form"
    assert steps.next_step({}) == "safety"


def test_a_texter_who_told_nothing_is_asked_what_is_happening_and_three_followups():
    assert flow.triage_slots(SAFETY_DONE) == ["situation", "leaving", "documents", "pay", "age", "consent_handoff"]


def test_followups_skip_what_the_texter_already_said():
    slots = {**SAFETY_DONE, "indicators": ["DOC", "WAGE", "MOVE"]}
    required = flow.triage_slots(slots)
    assert "situation" not in required and "documents" not in required and "pay" not in required
    assert required == ["threats", "debts", "age", "consent_handoff"]


def test_two_skips_in_a_row_end_the_followups():
    slots = {**SAFETY_DONE, "situation": "skip", "leaving": "skip"}
    assert flow.triage_slots(slots) == ["situation", "leaving", "consent_handoff"]


def test_skipping_everything_still_reaches_consent_and_the_end():
    slots = {"safe_now": "skip", "can_text_freely": "skip", "phone_may_be_read": "skip"}
    assert flow.triage_slots(slots) == ["situation", "consent_handoff"]
    slots.update(situation="skip", consent_handoff="skip")
    assert flow.next_form(slots) is None
    done = steps.finish(slots, said_this_turn=False)
    assert done.responses == ["utter_referrals", "utter_rights"] and done.escalate is None


def test_contact_back_is_asked_only_after_consent():
    assert "contact_back" not in flow.triage_slots({**SAFETY_DONE, "consent_handoff": "no"})
    assert flow.triage_slots({**SAFETY_DONE, "consent_handoff": "yes"})[-1] == "contact_back"


def test_a_known_minor_is_not_asked_the_age():
    assert "age" not in flow.triage_slots({**SAFETY_DONE, "minor": True})


def test_followup_answers_give_indicators_only_the_right_way_round():
    assert flow.followup_indicator("documents", "yes") == "DOC"
    assert flow.followup_indicator("documents", "no") is None
    assert flow.followup_indicator("leaving", "no") == "MOVE"
    assert flow.followup_indicator("leaving", "skip") is None


def test_the_questions_never_ask_about_trafficking_itself():
    domain = yaml.safe_load((DATA_DIR.parent / "domain.yml").read_text(encoding="utf-8"))
    for name, variations in domain["responses"].items():
        if name.startswith("utter_ask_"):
            english = variations[-1]["text"].lower()
            assert "traffick" not in english and "victim" not in english, name


# --- steps --------------------------------------------------------------------------------------

def test_a_photo_is_acknowledged_only_when_one_came():
    sure = {"language": "es", "confidence": 0.97, "method": "lingua"}
    assert "utter_media_received" in steps.opening({}, "share_media", sure, media=True).responses
    assert "utter_media_received" not in steps.opening({}, "share_media", sure).responses
    assert steps.opening({"greeted": True}, "share_media", sure, media=True).responses == ["utter_media_received"]
    assert steps.opening({"greeted": True}, "share_media", sure).responses == []


def test_opening_says_who_is_texting_and_confirms_an_unsure_language():
    sure = steps.opening({}, "greet", {"language": "es", "confidence": 0.97, "method": "lingua"})
    unsure = steps.opening({}, "greet", {"language": "en", "confidence": 0.2, "method": "fallback"})
    named = steps.opening({}, "greet", {"language": "ko", "confidence": 0.3, "method": "explicit"})
    assert sure.responses == ["utter_greet"] and named.responses == ["utter_greet"]
    assert unsure.responses == ["utter_greet", "utter_language_check"]
    assert sure.slots == {"greeted": True}


def test_after_the_opening_each_intent_gets_its_own_short_reply():
    assert steps.opening({"greeted": True}, "describe_situation", None).responses == ["utter_acknowledge"]
    assert steps.opening({"greeted": True}, "affirm", None).responses == []


def test_emergency_is_911_first_then_an_agent_and_no_more_questions():
    step = steps.emergency({"safe_now": "yes"})
    assert step.responses[0] == "utter_emergency" and step.escalate == "imminent" and step.stop_forms
    assert step.slots["risk"] == "imminent" and step.slots["consent_handoff"] == steps.NOT_ASKED
    assert flow.next_form({"safe_now": "yes", **step.slots}) is None


def test_after_an_emergency_the_end_does_not_repeat_itself():
    slots = {**steps.emergency({}).slots}
    assert steps.finish(slots, said_this_turn=True).responses == []
    assert steps.finish(slots, said_this_turn=False).responses == ["utter_handoff_already"]


def test_asking_for_a_person_goes_straight_to_consent():
    step = steps.ask_for_person({"safe_now": "yes"})
    assert step.responses == ["utter_human"] and step.stop_forms
    slots = {"safe_now": "yes", **step.slots}
    assert [name for name in flow.triage_slots(slots) if slots.get(name) is None] == ["consent_handoff"]
    assert flow.next_form({"safe_now": "yes", **step.slots}) == "triage_form"


def test_asking_again_after_declining_asks_consent_again():
    assert steps.ask_for_person({"consent_handoff": "no"}).slots["consent_handoff"] is None


def test_consent_hands_off_once():
    slots = {**SAFETY_DONE, "situation": "told", "consent_handoff": "yes", "contact_back": "no"}
    first = steps.finish(slots, said_this_turn=False)
    assert first.responses == ["utter_handoff_started"] and first.escalate == "consent"
    again = steps.finish({**slots, **first.slots}, said_this_turn=False)
    assert again.responses == ["utter_handoff_already"] and again.escalate is None


def test_a_minor_gets_kids_help_phone_and_the_agent_is_told_even_without_consent():
    slots = {**SAFETY_DONE, "situation": "told", "minor": True, "consent_handoff": "no"}
    step = steps.finish(slots, said_this_turn=False)
    assert step.responses[0] == "utter_minor" and step.escalate == "minor"
    assert "utter_referrals" in step.responses
    assert steps.finish({**slots, **step.slots}, said_this_turn=False).responses == ["utter_ok"]


def test_the_second_misunderstanding_in_a_row_offers_a_person():
    first = steps.not_understood({}, "nlu_fallback")
    assert first.responses == ["utter_not_understood"]
    second = steps.not_understood(first.slots, "out_of_scope")
    assert second.responses == ["utter_human"] and second.slots["misunderstood"] is False


def test_cover_word_marks_the_case_and_silences_the_questions():
    step = steps.cover({})
    assert step.responses == ["utter_cover"] and step.slots == {"cover_active": True, "monitored": True}
    assert steps.next_step(step.slots) == "quiet"
    assert steps.ask_for_person(step.slots).slots["cover_active"] is False


# --- facts --------------------------------------------------------------------------------------

def test_every_fact_has_a_source_and_a_recent_review():
    for fact in facts().values():
        assert fact.source and fact.source_url.startswith("https://"), fact.name
        assert (dt.date.today() - fact.reviewed).days <= 366, f"{fact.name} needs a review"


def test_fact_slots_follow_the_language():
    assert fact_slots("fr")["khp_keyword"] == "TEXTO"
    assert fact_slots("es")["khp_keyword"] == "CONNECT"
    assert fact_slots("en")["hotline_phone"] == "1-833-900-1010"
    assert fact_slots("en")["emergency_phone"] == "911"


def test_cover_word_comes_from_the_environment(monkeypatch):
    cover_word.cache_clear()
    monkeypatch.setenv("HOTLINE_COVER_WORD", "LASAGNA")
    try:
        assert fact_slots("en")["cover_word"] == "LASAGNA"
    finally:
        cover_word.cache_clear()


def test_facts_name_the_responses_that_state_them():
    data = yaml.safe_load((DATA_DIR / "referrals" / "facts.yml").read_text(encoding="utf-8"))["facts"]
    domain = yaml.safe_load((DATA_DIR.parent / "domain.yml").read_text(encoding="utf-8"))["responses"]
    for name, fact in data.items():
        assert fact.get("value") is not None or fact.get("responses"), f"{name} is stated nowhere"
        for response in fact.get("responses") or []:
            assert response in domain, (name, response)


# --- the NLU override -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "triage", "intent", "expected"), [
    ("stop hitting me", {"imminent": True}, "stop", "emergency"),
    ("pizza", {}, "out_of_scope", "cover"),
    ("Pizza!", {}, "greet", "cover"),
    ("2", {}, "nlu_fallback", "deny"),
    ("oo po", {}, "greet", "affirm"),
    ("borrar", {}, "out_of_scope", "delete_data"),
    ("", {}, "nlu_fallback", "skip"),
    ("my boss has my passport", {}, "describe_situation", "describe_situation"),
    ("41岁", {}, "emergency", "describe_situation"),
    ("elle a 26 ans", {}, "emergency", "describe_situation"),
    ("16 and he hits me", {"indicators": ["MINOR", "VIOL"]}, "emergency", "emergency"),
    ("help me now please", {}, "emergency", "emergency"),
])
def test_safety_overrides_have_the_last_word(text, triage, intent, expected):
    from rasa.shared.nlu.training_data.message import Message

    from bot.nlu.components import SafetyOverrides

    message = Message(data={"text": text, "intent": {"name": intent, "confidence": 0.6},
                            "intent_ranking": [{"name": intent, "confidence": 0.6}],
                            "triage": triage, "language_detection": {"language": "en"}})
    SafetyOverrides("PIZZA").process([message])
    assert message.get("intent")["name"] == expected
    assert message.get("intent_ranking")[0]["name"] == expected


def test_nobody_took_the_case_the_texter_is_told_unless_it_could_harm_them():
    assert steps.no_agent_yet({"handoff": "queued"}).responses == ["utter_no_agent_yet"]
    assert steps.no_agent_yet({"handoff": "queued", "contact_back": "yes"}).responses == ["utter_no_agent_yet"]
    # The phone may be read, or they said no to being texted later: silence; the case stays queued.
    assert steps.no_agent_yet({"handoff": "queued", "cover_active": True}).responses == []
    assert steps.no_agent_yet({"handoff": "queued", "contact_back": "no"}).responses == []


def test_handback_tells_the_bot_what_the_agent_covered():
    assert steps.handback(["referrals", "rights"]) == {
        "handoff": "returned", "agent_covered": ["referrals", "rights"], "referred": True}
    assert steps.handback(["made-up"]) == {"handoff": "returned", "agent_covered": []}


def test_after_handback_the_bot_neither_repeats_the_handoff_nor_asks_consent_again():
    slots = {**steps.handback(["referrals"]), "consent_handoff": "yes"}
    finished = steps.finish(slots, said_this_turn=False)
    assert (finished.responses, finished.escalate) == (["utter_ok"], None)
    assert steps.finish(slots, said_this_turn=True).responses == []
    again = steps.ask_for_person(slots)
    assert (again.responses, again.escalate, again.slots["handoff"]) == (["utter_handoff_started"], "asked_again", "queued")
