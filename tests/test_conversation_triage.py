"""Indicators accumulate over a conversation with their evidence; risk never goes down."""
from __future__ import annotations

from bot.conversation.triage import triage_slots


def triage(evidence=(), imminent=False, minor=False, third_party=False, worry=False):
    return {"evidence": [{"indicator": i, "start": 0, "end": len(t), "text": t} for i, t in evidence],
            "indicators": sorted({i for i, _ in evidence}), "imminent": imminent, "minor": minor,
            "third_party": third_party, "worry": worry}


def test_indicators_accumulate_across_messages_with_their_evidence():
    slots = {}
    slots.update(triage_slots(slots, triage([("DOC", "took my passport")]), "m1"))
    slots.update(triage_slots(slots, triage([("WAGE", "no me paga")]), "m2"))
    assert slots["indicators"] == ["DOC", "WAGE"]
    assert [(e["indicator"], e["text"], e["message_id"]) for e in slots["indicator_evidence"]] == [
        ("DOC", "took my passport", "m1"), ("WAGE", "no me paga", "m2")]
    assert slots["risk"] == "medium"


def test_third_indicator_makes_risk_high_and_it_stays_high():
    slots = {}
    for i, ind in enumerate(["DOC", "WAGE", "HOURS"]):
        slots.update(triage_slots(slots, triage([(ind, ind.lower())]), f"m{i}"))
    assert slots["risk"] == "high"
    slots.update(triage_slots(slots, triage([]), "m9"))
    assert slots["risk"] == "high"


def test_imminent_danger_is_remembered_but_danger_now_is_per_message():
    slots = {}
    slots.update(triage_slots(slots, triage(imminent=True), "m1"))
    assert slots["imminent"] and slots["danger_now"] and slots["risk"] == "imminent"
    slots.update(triage_slots(slots, triage(), "m2"))
    assert slots["imminent"] and not slots["danger_now"] and slots["risk"] == "imminent"


def test_repeated_evidence_is_not_duplicated():
    slots = {}
    slots.update(triage_slots(slots, triage([("DOC", "took my passport")]), "m1"))
    assert "indicator_evidence" not in triage_slots(slots, triage([("DOC", "took my passport")]), "m2")


def test_an_age_in_a_message_fills_the_age_once():
    slots = {}
    slots.update(triage_slots(slots, {**triage([("MINOR", "I'm 16")], minor=True), "age": 16}, "m1"))
    assert slots["age"] == "16"
    slots.update(triage_slots(slots, {**triage([("MINOR", "my sister is 14")], minor=True), "age": 14}, "m2"))
    assert slots["age"] == "16"


def test_minor_and_third_party_stick():
    slots = {}
    slots.update(triage_slots(slots, triage([("MINOR", "I'm 16")], minor=True, third_party=True), "m1"))
    slots.update(triage_slots(slots, triage(), "m2"))
    assert slots["minor"] and slots["third_party"]


def test_not_safe_right_now_is_imminent():
    slots = {"safe_now": False}
    slots.update(triage_slots(slots, triage(), "m1"))
    assert slots["risk"] == "imminent"


def test_no_triage_data_changes_nothing():
    assert triage_slots({"risk": "medium"}, None, "m1") == {}


def test_worry_without_indicators_is_low_risk():
    assert triage_slots({}, triage(worry=True), "m1")["risk"] == "low"


def test_the_words_that_make_danger_now_are_kept_for_the_agent():
    triage = {"indicators": [], "evidence": [], "imminent": True,
              "danger": [{"start": 6, "end": 23, "text": "me está golpeando"}]}
    slots = triage_slots({}, triage, "m1")
    assert slots["danger_evidence"] == [{"text": "me está golpeando", "message_id": "m1"}]
    assert slots["imminent"] is True and slots["risk"] == "imminent"
    again = triage_slots(slots, triage, "m2")
    assert "danger_evidence" not in again  # the same words again are not repeated


def _with_if_minor(base: dict, *texts: str) -> dict:
    return {**base, "if_minor": [{"indicator": "SEX", "start": 0, "end": len(t), "text": t} for t in texts]}


def test_words_that_show_sex_only_for_a_minor_wait_for_the_age_in_a_later_message():
    slots = {}
    slots.update(triage_slots(slots, _with_if_minor(triage([("HOURS", "every night")]), "the clients"), "m1"))
    assert slots["indicators"] == ["HOURS"] and slots["risk"] == "medium"
    slots.update(triage_slots(slots, triage([("MINOR", "I'm 15")], minor=True), "m2"))
    assert slots["indicators"] == ["HOURS", "MINOR", "SEX"]
    assert ("SEX", "the clients", "m1") in [(e["indicator"], e["text"], e["message_id"]) for e in slots["indicator_evidence"]]
    assert slots["risk"] == "high"
    assert slots["minor_context_evidence"] == []


def test_words_that_show_sex_only_for_a_minor_count_after_the_age_was_given():
    slots = {}
    slots.update(triage_slots(slots, triage([("MINOR", "tengo 16")], minor=True), "m1"))
    slots.update(triage_slots(slots, _with_if_minor(triage([]), "los clientes"), "m2"))
    assert slots["indicators"] == ["MINOR", "SEX"] and slots["risk"] == "high"


def test_words_that_show_sex_only_for_a_minor_never_count_for_an_adult():
    slots = {}
    for n in range(3):
        slots.update(triage_slots(slots, _with_if_minor(triage([]), f"clients {n}"), f"m{n}"))
    assert slots["indicators"] == [] and slots["risk"] == "none"
    assert [e["text"] for e in slots["minor_context_evidence"]] == ["clients 0", "clients 1", "clients 2"]
