"""The project's data: training data per language, held-out sets kept apart, responses complete."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import unicodedata

import pytest
import yaml

from bot.conversation.facts import facts

from bot import PROJECT_ROOT

LANGUAGES = ["en", "fr", "es", "tl", "pa", "hi", "zh", "vi", "uk", "ar", "ko", "th"]
INTENTS = {
    "greet", "ask_help", "describe_situation", "affirm", "deny", "skip", "stop", "emergency",
    "choose_language", "ask_rights", "ask_human", "thanks", "share_media", "out_of_scope",
}
NLU = PROJECT_ROOT / "data" / "nlu"
HELDOUT = PROJECT_ROOT / "tests" / "data" / "nlu_heldout"
LANGUAGE_ID = PROJECT_ROOT / "bench" / "data" / "language_id"


def _examples(path) -> dict[str, list[str]]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    out: dict[str, list[str]] = {}
    for block in doc["nlu"]:
        lines = [line[2:].strip() for line in block["examples"].splitlines() if line.startswith("- ")]
        out.setdefault(block["intent"], []).extend(lines)
    return out


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[\s\W_]+", " ", text).strip()


@pytest.mark.parametrize("code", LANGUAGES)
def test_training_data_covers_every_intent_with_enough_examples(code):
    examples = _examples(NLU / f"{code}.yml")
    assert set(examples) == INTENTS
    for intent, lines in examples.items():
        assert len(set(lines)) >= 15, (code, intent)


@pytest.mark.parametrize("code", LANGUAGES)
def test_every_intent_block_names_its_language(code):
    doc = yaml.safe_load((NLU / f"{code}.yml").read_text(encoding="utf-8"))
    assert {block["metadata"]["language"] for block in doc["nlu"]} == {code}


@pytest.mark.parametrize("code", LANGUAGES)
def test_heldout_examples_are_not_training_examples(code):
    training = {_norm(line) for lines in _examples(NLU / f"{code}.yml").values() for line in lines}
    heldout = _examples(HELDOUT / f"{code}.yml")
    assert set(heldout) == INTENTS
    leaked = [line for lines in heldout.values() for line in lines if _norm(line) in training]
    assert not leaked


def test_language_id_benchmark_texts_are_not_training_data():
    training = {
        _norm(line) for path in NLU.glob("*.yml") for lines in _examples(path).values() for line in lines
    }
    lexicons = " ".join(p.read_text(encoding="utf-8") for p in (PROJECT_ROOT / "data" / "language").glob("*.yml"))
    rows = [json.loads(line) for path in LANGUAGE_ID.glob("*.jsonl") for line in path.open(encoding="utf-8")]
    assert len(rows) >= 12 * 50 + 100
    assert not [r["text"] for r in rows if _norm(r["text"]) in training or r["text"] in lexicons]


@pytest.mark.parametrize("code", LANGUAGES)
def test_language_id_benchmark_has_50_sms_length_texts_per_language(code):
    rows = [json.loads(line) for line in (LANGUAGE_ID / f"{code}.jsonl").open(encoding="utf-8")]
    assert sum(20 <= len(r["text"]) <= 160 and r["language"] == code for r in rows) >= 50


def test_romanized_benchmark_has_50_texts_per_language():
    rows = [json.loads(line) for line in (LANGUAGE_ID / "romanized.jsonl").open(encoding="utf-8")]
    assert sum(r["language"] == "pa" for r in rows) >= 50
    assert sum(r["language"] == "hi" for r in rows) >= 50


def _responses():
    domain = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text(encoding="utf-8"))
    return domain["responses"]


MULTILINGUAL_ONLY = {"utter_ask_language_choice"}


@pytest.mark.parametrize("name", sorted(set(_responses()) - MULTILINGUAL_ONLY))
def test_every_response_exists_in_every_language(name):
    variations = _responses()[name]
    languages = {
        cond["value"] for v in variations for cond in v.get("condition", []) if cond["name"] == "language"
    }
    assert languages == set(LANGUAGES) - {"en"}
    assert "condition" not in variations[-1], "the last variation is the English default"
    bilingual = [v for v in variations if {"type": "slot", "name": "language_supported", "value": False}
                 in v.get("condition", [])]
    assert len(bilingual) == 1, "one English/French variation for languages the bot does not speak"
    for variation in variations:
        assert variation["text"].strip()
        assert not re.search(r"TODO|XXX|\{\{|\}\}", variation["text"]), variation["text"]
        unknown = set(re.findall(r"\{(\w+)\}", variation["text"])) - FACT_PLACEHOLDERS
        assert not unknown, f"{name}: placeholders without a fact: {unknown}"


#: Placeholders responses may use: the referral facts, set as slots after every message.
FACT_PLACEHOLDERS = {name for name, fact in facts().items() if fact.value is not None} | {"cover_word"}
#: Warnings `rasa data validate` gives for what is by design: responses sent by custom actions
#: (not named in rules), and intents only bot.nlu.components.SafetyOverrides sets.
EXPECTED_WARNING = re.compile(
    r"The utterance '(\w+)' is not used in any story or rule|"
    r"The intent '(cover|delete_data|EXTERNAL_no_agent)' is listed in the domain file, but is not found in the NLU training data"
)


def test_rasa_data_validate_passes():
    result = subprocess.run(
        [sys.executable, "-m", "rasa", "data", "validate",
         "--domain", "domain.yml", "--data", "data/nlu", "data/rules.yml", "--config", "config.yml"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    sent_by_code = (PROJECT_ROOT / "actions" / "actions.py").read_text() + (
        PROJECT_ROOT / "bot" / "conversation" / "steps.py").read_text()
    for line in output.splitlines():
        if "UserWarning" not in line:
            continue
        match = EXPECTED_WARNING.search(line)
        assert match, line
        response = match.group(1)
        if response and not response.startswith("utter_ask_"):
            assert f'"{response}"' in sent_by_code, f"{response} is neither in a rule nor sent by an action"


INDICATOR_EVAL = PROJECT_ROOT / "bench" / "data" / "indicators"
INDICATOR_IDS = {"DOC", "DEBT", "WAGE", "MOVE", "ISOL", "THREAT", "IMMIG", "DECEPT", "HOURS", "COND", "VIOL", "SEX",
                 "MINOR", "CRIM"}


@pytest.mark.parametrize("code", LANGUAGES)
def test_indicator_evaluation_set_is_large_enough_and_labelled_with_the_shared_ids(code):
    rows = [json.loads(line) for line in (INDICATOR_EVAL / f"{code}.jsonl").open(encoding="utf-8")]
    assert len(rows) >= 40
    assert sum(not r["indicators"] or r["kind"] != "positive" for r in rows) >= len(rows) // 3
    assert all(set(r["indicators"]) <= INDICATOR_IDS for r in rows)


def test_indicator_evaluation_texts_are_not_in_lexicons_or_training_data():
    lexicons = " ".join(_norm(p.read_text(encoding="utf-8"))
                        for p in (PROJECT_ROOT / "data" / "indicators" / "lexicon").glob("*.yml"))
    training = {
        _norm(line) for path in NLU.glob("*.yml") for lines in _examples(path).values() for line in lines
    }
    rows = [json.loads(line) for path in INDICATOR_EVAL.glob("**/*.jsonl") for line in path.open(encoding="utf-8")]
    leaked = [r["text"] for r in rows if _norm(r["text"]) in training or _norm(r["text"]) in lexicons]
    assert not leaked


JARGON = re.compile(r"\b(LMIA|TRP|OWP|TFWP?|IRCC|ESDC|IFHP|HTCDS|ILO)\b")


@pytest.mark.parametrize("name", sorted(_responses()))
def test_responses_use_no_jargon(name):
    """Plain language: programme acronyms are never sent; the bot spells things out."""
    for variation in _responses()[name]:
        assert not JARGON.search(variation["text"]), variation["text"]
