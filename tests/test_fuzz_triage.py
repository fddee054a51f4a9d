"""Property-based tests of the triage (``bot/triage/``, run as ``hotline triage`` runs it; issue 8
item 7 and issue 3's "bad input").

Any text, in any script, of any length up to the inbound limit, made of random code points or of
the lexicons' own terms, cues, URLs and quotes mixed across languages: the result keeps DESIGN.md's
contract 2, its evidence spans are the texter's own words, risk follows CONTEXT.md's levels, and a
danger word alone or inside another word never raises the imminent alarm. Settings:
``tests/support/fuzz.py``; the pipeline is loaded once for the module (about 2 s from the lexicon
cache, 10 s without).
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import pytest
import yaml
from hypothesis import assume, example, given
from hypothesis import strategies as st
from rasa.shared.nlu.training_data.message import Message

from bot.channels.inbound import MAX_BODY
from bot.nlu.components import TRIAGE
from bot.triage.indicators import BOUNDARY, LEXICON_DIR, LOADER, taxonomy
from bot.triage.pipeline import RISK_LEVELS, Triage
from bot.triage.risk import LEVELS, risk_level
from tests.support.fuzz import fuzz

#: CONTEXT.md's risk levels, lowest first.
CONTEXT_LEVELS = ("none", "low", "medium", "high", "imminent")
CONTRACT_KEYS = {"text", "language", "language_confidence", "indicators", "evidence", "risk", "imminent"}


@lru_cache(maxsize=1)
def lexicons() -> dict[str, dict]:
    return {path.stem: yaml.load(path.read_text(encoding="utf-8"), Loader=LOADER)
            for path in sorted(LEXICON_DIR.glob("*.yml"))}


def _strings(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    if isinstance(node, dict):
        return [s for key, item in node.items() if key != "age_patterns" for s in _strings(item)]
    return []


def lexicon_terms() -> list[str]:
    """Every term and cue of every language, as a texter would type it (no trailing '*')."""
    return sorted({term.rstrip("*").strip() for data in lexicons().values()
                   for key in ("cues", "indicators", "imminent") for term in _strings(data.get(key))} - {""})


def _rule_terms(spec: dict | None, kinds=("phrases", "pairs", "near_pairs")) -> set[str]:
    spec = spec or {}
    return {str(term) for kind in kinds for term in _strings(spec.get(kind))}


def danger_words() -> dict[str, list[tuple[str, bool, bool]]]:
    """Per language whose terms match whole words or word starts: its one-word danger terms (VIOL
    terms and the danger side of imminent pairs, which need a "now" cue to raise the alarm), and
    whether the lexicon also lists the word on its own as an imminent phrase (one-word sentences
    such as Tagalog "sinasaksak", "he is stabbing": an alarm alone, never inside another word),
    and whether it was written with a trailing '*' (any ending)."""
    words = {}
    for code, data in lexicons().items():
        if BOUNDARY.get(code, "word") not in ("word", "prefix"):
            continue  # Chinese, Thai, Arabic terms match anywhere: no "inside another word" there
        imminent = data.get("imminent") or {}
        phrases = {str(t).strip() for t in _strings(imminent.get("phrases"))}
        terms = _rule_terms(imminent, ("pairs", "near_pairs")) | _rule_terms(
            (data.get("indicators") or {}).get("VIOL")) | phrases
        single = {t.strip() for t in terms if t.strip() and not re.search(r"\s", t.strip())}
        words[code] = sorted((t.rstrip("*"), t in phrases, t.endswith("*")) for t in single if t.rstrip("*"))
    return words


TERMS = lexicon_terms()
DANGER = danger_words()
DANGER_ALL = [(code, *item) for code, items in DANGER.items() for item in items]


@pytest.fixture(scope="module")
def triage() -> Triage:
    return Triage()


def analyse(triage: Triage, text: str) -> tuple[dict, dict]:
    """``hotline triage``'s output for the text, and the extractor's own record (with the
    evidence and danger words) from the same components."""
    message = Message(data={"text": text})
    messages = [message]
    for component in triage.components:
        messages = component.process(messages)
    return triage.run(text), message.get(TRIAGE)


# --- strategies ---------------------------------------------------------------------------------

any_char = st.characters(exclude_categories=())  # every code point, lone surrogates included
separator = st.sampled_from([" ", "  ", ", ", ". ", "! ", "? ", "\n", "... ", " - ", "; ", "。", "،", "\u200b"])
url = st.builds(
    lambda scheme, host, words, joiner, tail: f"{scheme}{host}/{joiner.join(words)}{tail}",
    st.sampled_from(["https://", "http://", "www.", "https://www."]),
    st.sampled_from(["example.com", "news.example.org", "cbc.ca", "bit.ly", "t.co", "canada.ca/en"]),
    st.lists(st.sampled_from(TERMS), min_size=1, max_size=4).map(lambda ws: [w.replace(" ", "-") for w in ws]),
    st.sampled_from(["-", "/", "_", "+", "%20"]),
    st.sampled_from(["", "?s=now", "#knife", ".html", "?id=16"]),
)
quote = st.builds(lambda words: '"' + " ".join(words) + '"', st.lists(st.sampled_from(TERMS), max_size=6))
piece = st.one_of(
    st.sampled_from(TERMS), st.sampled_from(TERMS).map(str.upper), url, quote,
    st.text(any_char, max_size=12), st.sampled_from(["😀", "🔪", "🙏🏽", "👍", "❤️", "I'm 16", "tengo 15 años",
                                                    "j'ai 14 ans", "१६ साल", "١٦ سنة", "16岁", "\u202e", "\u0301"]),
)
soup = st.lists(st.tuples(piece, separator), max_size=25).map(lambda ps: "".join(p + s for p, s in ps))
huge = st.builds(lambda text, times: (text * times)[:MAX_BODY], soup.filter(bool), st.integers(2, 400))
emoji_only = st.text(st.sampled_from("😀🔪🙏🏽👍❤️\u200d\ufe0f🇨🇦"), min_size=1, max_size=30)
text = st.one_of(soup, st.text(any_char, max_size=400), huge, emoji_only)


# --- properties ---------------------------------------------------------------------------------


@fuzz(200)
@given(text)
@example("look at this https://example.com/outside-knife")
@example("https://cbc.ca/news/police-say-man-beaten-right-now")
@example("news: https://example.com/sinasaksak")
@example("")
@example("\ud800\udfff\x00")
def test_any_text_gives_a_well_formed_result(triage, text):
    result, found = analyse(triage, text)
    assert CONTRACT_KEYS <= set(result) and result["text"] == text
    assert re.fullmatch(r"[a-z]{2}", result["language"]) and 0.0 <= result["language_confidence"] <= 1.0
    assert result["risk"] in CONTEXT_LEVELS and RISK_LEVELS == LEVELS == CONTEXT_LEVELS
    assert result["indicators"] == sorted(set(result["indicators"]))
    assert set(result["indicators"]) <= set(taxonomy())
    assert {e["indicator"] for e in result["evidence"]} == set(result["indicators"])
    for item, span in zip(found["evidence"], result["evidence"]):
        assert (item["start"], item["end"]) == (span["start"], span["end"])
        assert 0 <= item["start"] < item["end"] <= len(text)
        assert item["text"] == text[item["start"]:item["end"]]
    for item in found["danger"]:
        assert 0 <= item["start"] < item["end"] <= len(text)
        assert item["text"] == text[item["start"]:item["end"]]
    assert result["imminent"] == bool(found["danger"]), "an alarm must show the words that raised it"
    assert result["imminent"] == (result["risk"] == "imminent")
    assert result["risk"] == risk_level(result["indicators"], result["imminent"], worry=found["worry"])
    assert result["minor"] == ("MINOR" in result["indicators"])
    assert triage.run(text) == result, "not deterministic"


@fuzz(200)
@given(soup, url, soup)
@example("", "https://example.com/outside-knife", "")
@example("he hit me ", "www.news.ca/man-with-a-knife-outside", "")
@example("", "https://news.example.com/正在打我", "")
def test_nothing_inside_a_url_is_evidence(triage, before, address, after):
    """A link is quoted text, not the texter's situation: nothing in it is evidence, and a message
    that is only a link is not a case (found here: 'https://example.com/outside-knife' alone was
    imminent danger, without any evidence to show the agent)."""
    text = f"{before} {address} {after}"
    start = len(before) + 1
    end = start + len(address)
    result, found = analyse(triage, text)
    for item in found["evidence"] + found["danger"]:
        assert item["end"] <= start or item["start"] >= end, (item, address)
    alone, _ = analyse(triage, address)
    assert (alone["indicators"], alone["imminent"], alone["risk"]) == ([], False, "none"), alone


def test_a_danger_word_alone_is_never_imminent(triage):
    """Every one-word danger term of every lexicon, on its own (all of them, not a sample)."""
    alarms = [(code, word) for code, word, alarm, _ in DANGER_ALL
              if not alarm and analyse(triage, word)[0]["imminent"]]
    assert not alarms, alarms
    assert len(DANGER_ALL) > 500, "the lexicons' danger words were not found"


def _affix(word: str):
    """Letters of the word's own script (with its marks), as another word around it would have."""
    letters = sorted({c for c in word if unicodedata.category(c)[0] in "LM"}) or list("abc")
    return st.text(st.sampled_from(letters), min_size=1, max_size=3)


@st.composite
def inside_another_word(draw) -> tuple[str, str]:
    """A danger word with letters before or after it, as if part of a longer word. Only letters
    before count for Korean (particles attach at the end) and for terms written with a trailing
    '*' (any ending is theirs by design)."""
    code, word, _, any_ending = draw(st.sampled_from(DANGER_ALL))
    affix = _affix(word)
    known = [item[0] for item in DANGER[code]]
    if any_ending or BOUNDARY.get(code) == "prefix":
        text = draw(affix) + word
        # The letters drawn must not start with a danger word themselves ("문따려" + "문따려").
        assume(not any(text.startswith(other) for other in known))
        return word, text
    where = draw(st.sampled_from(["before", "after", "both"]))
    before = draw(affix) if where != "after" else ""
    after = draw(affix) if where != "before" else ""
    assume(before + word + after not in known)  # the longer word must not be a danger word too
    return word, before + word + after


@fuzz(300)
@given(inside_another_word())
@example(("बेहोश", "बेहोशी"))
@example(("ਬੇਹੋਸ਼", "ਬੇਹੋਸ਼ੀ"))
@example(("arme", "armee"))
def test_a_danger_word_inside_another_word_is_never_imminent(triage, case):
    word, text = case
    result, found = analyse(triage, text)
    assert not result["imminent"], (word, text, found["danger"])


@pytest.mark.parametrize(("text", "language"), [
    ("J'ai vu une arme dans le film", "fr"),  # "arme" is a weapon; "armé" (armed) folds to it
    ("캐나다에 들어오려면 비자가 필요해요?", "ko"),  # "to come into Canada, do I need a visa?"
    ("회사에 들어오려면 뭐가 필요해요", "ko"),
    ("मुझे काम के बाद बेहोशी आती है", "hi"),  # "I get fainting spells after work"
])
def test_ordinary_sentences_with_a_danger_word_are_not_imminent(triage, text, language):
    result, _ = analyse(triage, text)
    assert result["language"] == language
    assert not result["imminent"], result


@pytest.mark.parametrize("text", [
    "il est armé et il est devant ma porte", "ils sont armés", "그 남자가 들어오려고 해요", "sinasaksak ako",
    "look https://example.com he is outside with a knife",
])
def test_the_danger_those_words_name_still_raises_the_alarm(triage, text):
    assert analyse(triage, text)[0]["imminent"]


@fuzz(300)
@given(st.sets(st.sampled_from(sorted(taxonomy()))), st.sets(st.sampled_from(sorted(taxonomy()))),
       st.booleans(), st.sampled_from([None, True, False]), st.booleans())
def test_risk_never_goes_down_as_more_is_known(smaller, extra, imminent, safe_now, worry):
    low = risk_level(smaller, imminent, safe_now, worry)
    high = risk_level(smaller | extra, imminent, safe_now, worry)
    assert low in CONTEXT_LEVELS and high in CONTEXT_LEVELS
    assert LEVELS.index(low) <= LEVELS.index(high)
    assert (high == "imminent") == (imminent or safe_now is False)
