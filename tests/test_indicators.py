"""Indicators, evidence, imminent danger, minors and risk, in every supported language.

Texts here are the tests' own (not the benchmark's evaluation set).
"""
from __future__ import annotations

import shutil
import stat

import pytest
import yaml

from bot import PROJECT_ROOT
from bot.triage.indicators import IndicatorExtractor, fold, taxonomy
from bot.triage.risk import higher, risk_level

LANGUAGES = ["en", "fr", "es", "tl", "pa", "hi", "zh", "vi", "uk", "ar", "ko", "th"]
IDS = {"DOC", "DEBT", "WAGE", "MOVE", "ISOL", "THREAT", "IMMIG", "DECEPT", "HOURS", "COND", "VIOL", "SEX", "MINOR", "CRIM"}

# language: (documents held, the same negated, danger now, an age under 18)
CASES = {
    "en": ("my boss keeps my passport", "he didn't take my passport", "he is outside with a knife", "I'm 16"),
    "fr": ("mon patron garde mon passeport", "il a pas pris mon passeport", "il est dehors avec un couteau", "j'ai 15 ans"),
    "es": ("el patron me quito el pasaporte", "el patron no me quito el pasaporte", "me esta golpeando ahorita",
           "tengo 17 años"),
    "tl": ("kinuha ng amo ko ang passport ko", "hindi kinuha ng amo ko ang passport ko",
           "nasa labas siya may dalang kutsilyo", "16 anyos pa lang ako"),
    "pa": ("ਮਾਲਕ ਨੇ ਮੇਰਾ ਪਾਸਪੋਰਟ ਰੱਖ ਲਿਆ", "ਮਾਲਕ ਨੇ ਮੇਰਾ ਪਾਸਪੋਰਟ ਨਹੀਂ ਲਿਆ", "ਉਹ ਹੁਣ ਬਾਹਰ ਚਾਕੂ ਲੈ ਕੇ ਖੜ੍ਹਾ ਹੈ",
           "ਮੈਂ 16 ਸਾਲ ਦੀ ਹਾਂ"),
    "hi": ("मालिक ने मेरा पासपोर्ट रख लिया", "मालिक ने मेरा पासपोर्ट नहीं लिया", "वो अभी बाहर चाकू लेकर खड़ा है",
           "मैं 16 साल की हूँ"),
    "zh": ("老板拿走了我的护照", "老板没有拿走我的护照", "他现在在门外拿着刀", "我16岁"),
    "vi": ("ông chủ giữ hộ chiếu của tôi", "ông chủ không giữ hộ chiếu của tôi", "hắn đang ở ngoài cửa cầm dao",
           "em 16 tuổi"),
    "uk": ("роботодавець забрав мій паспорт", "роботодавець не забрав мій паспорт", "він зараз під дверима з ножем",
           "мені 16 років"),
    "ar": ("صاحب العمل أخذ جواز سفري", "صاحب العمل لم يأخذ جواز سفري", "هو الآن عند الباب ومعه سكين", "عمري 16 سنة"),
    "ko": ("사장님이 제 여권을 가져갔어요", "사장님이 제 여권을 안 가져갔어요", "지금 밖에서 칼을 들고 있어요", "저는 16살이에요"),
    "th": ("นายจ้างยึดพาสปอร์ตของฉัน", "นายจ้างไม่ได้ยึดพาสปอร์ตของฉัน", "เขาอยู่ข้างนอกถือมีดอยู่ตอนนี้", "หนูอายุ 16"),
}


@pytest.fixture(scope="module")
def extractor() -> IndicatorExtractor:
    return IndicatorExtractor()


@pytest.mark.parametrize("code", LANGUAGES)
def test_lexicon_exists_is_reviewed_and_covers_every_indicator(code):
    data = yaml.safe_load((PROJECT_ROOT / "data" / "indicators" / "lexicon" / f"{code}.yml").read_text(encoding="utf-8"))
    assert data["language"] == code and data["reviewed"] and data["source"]
    assert set(data["indicators"]) == IDS
    assert data["indicators"]["MINOR"]["age_patterns"]
    assert data["imminent"]["phrases"] and data["cues"]["negation"]


def test_taxonomy_has_the_shared_ids_with_definitions():
    entries = taxonomy()
    assert set(entries) == IDS
    assert all(e["definition"] and e["ilo"] and e["htcds"] and e["severity"] in (1, 2, 3) for e in entries.values())


@pytest.mark.parametrize("code", LANGUAGES)
def test_documents_held_with_evidence(extractor, code):
    text = CASES[code][0]
    finding = extractor.extract(text, [code])
    assert "DOC" in finding.indicators
    evidence = [e for e in finding.evidence if e.indicator == "DOC"]
    assert evidence and all(0 <= e.start < e.end <= len(text) for e in evidence)


@pytest.mark.parametrize("code", LANGUAGES)
def test_negated_documents_are_not_an_indicator(extractor, code):
    assert "DOC" not in extractor.extract(CASES[code][1], [code]).indicators


@pytest.mark.parametrize("code", LANGUAGES)
def test_danger_now_is_imminent(extractor, code):
    finding = extractor.extract(CASES[code][2], [code])
    assert finding.imminent
    assert risk_level(finding.indicators, finding.imminent) == "imminent"


@pytest.mark.parametrize("code", LANGUAGES)
def test_age_under_18_is_minor(extractor, code):
    finding = extractor.extract(CASES[code][3], [code])
    assert finding.minor and "MINOR" in finding.indicators and finding.age is not None and finding.age < 18


@pytest.mark.parametrize(
    "text",
    ["what if my boss keeps my ID?", "can an employer keep my passport?", "I left my passport at home",
     "i owe my sister 20 dollars", "my phone broke", "I'm 18 now", "I work 8 hours a day, it's fine",
     "the movie had a knife fight", "https://example.com/passport-taken", "I want to kill time"],
)
def test_english_tricky_texts_are_not_indicators(extractor, text):
    finding = extractor.extract(text, ["en"])
    assert finding.indicators == [] and not finding.imminent


def test_third_party_is_recorded_and_still_an_indicator(extractor):
    finding = extractor.extract("my friend can't leave the salon, the owner locks the door", ["en"])
    assert finding.third_party and "MOVE" in finding.indicators


def test_evidence_offsets_point_into_the_original_text_with_accents(extractor):
    text = "Ayúdenme: el patrón me quitó el pasaporte y no me paga"
    finding = extractor.extract(text, ["es"])
    assert {"DOC", "WAGE"} <= set(finding.indicators)
    for item in finding.evidence:
        assert fold(text[item.start:item.end]) == fold(text)[item.start:item.end]
        assert text[item.start:item.end].strip()


def test_an_indicator_word_inside_another_word_is_not_a_match(extractor):
    assert "VIOL" not in extractor.extract("white paint on the wall", ["en"]).indicators
    assert "DEBT" not in extractor.extract("the power went out", ["en"]).indicators


@pytest.mark.parametrize("text", ["", "   ", "🙏🙏", "12345", "x" * 10_000, "\x00\x01", "\ud800 broken"])
def test_bad_input_never_crashes(extractor, text):
    for code in LANGUAGES:
        extractor.extract(text, [code])


def test_risk_levels():
    assert risk_level([], imminent=True) == "imminent"
    assert risk_level([], safe_now=False) == "imminent"
    assert risk_level(["MINOR", "SEX"]) == "high"
    assert risk_level(["VIOL"]) == "high"
    assert risk_level(["THREAT"]) == "high"
    assert risk_level(["DOC", "WAGE", "HOURS"]) == "high"
    assert risk_level(["DOC", "WAGE"]) == "medium"
    assert risk_level(["MINOR"]) == "medium"
    assert risk_level([], worry=True) == "low"
    assert risk_level([]) == "none"
    assert higher("medium", "low") == "medium" and higher("none", "imminent") == "imminent"


@pytest.mark.parametrize("text,languages,words", [
    ("he is outside with a knife, help me", ["en"], "with a knife"),
    ("ayuda, mi jefe me está golpeando ahora mismo", ["es", "en"], "golpeando"),
    ("il arrive maintenant avec un couteau", ["fr", "en"], "couteau"),
])
def test_danger_now_keeps_the_words_that_made_it(extractor, text, languages, words):
    finding = extractor.extract(text, languages)
    assert finding.imminent
    spans = [text[e.start:e.end] for e in finding.danger]
    assert any(words in span for span in spans), spans


def test_no_danger_words_without_danger_now(extractor):
    finding = extractor.extract("he hit me yesterday, now I am ok", ["en"])
    assert not finding.imminent and finding.danger == []


@pytest.mark.parametrize("text,language,confidence,supported,expected", [
    ("huwe 3am yedrebni hala2", "tl", 0.61, True, {"tl", "en", "ar", "uk", "hi", "pa"}),
    ("zmushuyut krasty v magazynah", "en", 0.2, True, {"en", "ar", "uk", "hi", "pa"}),
    ("boss took my passport", "en", 0.9, True, {"en"}),
    ("kinuha ng amo ko yung passport ko", "tl", 0.95, True, {"tl", "en"}),
    ("اخذ جوازي", "ar", 0.5, True, {"ar", "en"}),
    ("mijn baas heeft mijn paspoort", "en", 0.9, False, {"en", "fr", "ar", "uk", "hi", "pa"}),
])
def test_lexicons_for_latin_letters_when_the_language_is_unsure(extractor, text, language, confidence, supported,
                                                                expected):
    """Arabizi and transliterated Ukrainian look like Tagalog, Dutch or Polish to the detector: when it
    is unsure, the lexicons with romanized terms run too; a confident detection keeps to its own."""
    assert set(extractor.languages_for(text, language, confidence, supported)) == expected


def test_arabizi_is_found_even_when_detected_as_another_language(extractor):
    text = "el m3allem 5ad el passport taba3i w ma byraje3o"
    finding = extractor.extract(text, extractor.languages_for(text, "tl", 0.5, True))
    assert "DOC" in finding.indicators


def test_compiled_lexicons_are_cached_privately_and_never_read_when_others_could_write(tmp_path, monkeypatch):
    from bot.triage import indicators

    lexicons = tmp_path / "lexicons"
    lexicons.mkdir()
    shutil.copy(indicators.LEXICON_DIR / "en.yml", lexicons / "en.yml")
    monkeypatch.setenv("HOTLINE_CACHE_DIR", str(tmp_path / "cache"))
    first = indicators.compiled_lexicons(lexicons)
    (cache,) = (tmp_path / "cache").glob("lexicons-*.pickle")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    again = indicators.compiled_lexicons(lexicons)
    assert again["en"].rules == first["en"].rules
    cache.write_bytes(b"not a pickle")
    assert indicators.compiled_lexicons(lexicons)["en"].rules == first["en"].rules
    cache.chmod(0o666)
    monkeypatch.setattr(indicators.pickle, "loads", lambda data: pytest.fail("read a cache others could write"))
    assert indicators.compiled_lexicons(lexicons)["en"].rules == first["en"].rules
    (lexicons / "en.yml").write_text((lexicons / "en.yml").read_text(encoding="utf-8") + "\n# changed\n", encoding="utf-8")
    monkeypatch.undo()
    monkeypatch.setenv("HOTLINE_CACHE_DIR", str(tmp_path / "cache"))
    indicators.compiled_lexicons(lexicons)
    assert len(list((tmp_path / "cache").glob("lexicons-*.pickle"))) == 1


def test_an_unsure_detection_also_runs_its_likely_candidates(extractor):
    scores = {"es": 0.31, "pt": 0.2, "en": 0.2, "it": 0.1, "tl": 0.01}
    assert set(extractor.languages_for("no me han pagado en 2 meses", "en", 0.2, True, scores)) == {
        "en", "es", "ar", "uk", "hi", "pa"}
    assert extractor.languages_for("no me han pagado en 2 meses", "es", 0.9, True, scores) == ["es", "en"]


@pytest.mark.parametrize("text,expected", [
    ("안녕하세요 여권을 사장이 가져갔어요", ["DOC"]),
    ("사장이 여권을 안 가져갔어요", []),
])
def test_korean_negation_cue_that_only_starts_another_word_negates_nothing(extractor, text, expected):
    assert extractor.extract(text, ["ko", "en"]).indicators == expected


SMALL_LEXICON = {
    "language": "en",
    "reviewed": "2026-11-25",
    "source": "written for this test",
    "cues": {"now": ["right now"], "past": ["last year"], "urgent": ["please hurry", "call the police"],
             "negation": ["not"], "hypothetical": ["what if"], "clause": ["but"]},
    "indicators": {
        "VIOL": {"phrases": ["hits me"]},
        "DOC": {"phrases": ["took my passport"]},
        "MOVE": {"phrases": ["locked in"]},
        "THREAT": {"phrases": ["will kill me"]},
        "SEX": {"phrases": ["sex with clients"], "minor_context": ["the clients"]},
        "MINOR": {"age_patterns": [r"i'?m (?P<age>\d{1,2})\b"]},
    },
}


@pytest.fixture(scope="module")
def small_extractor(tmp_path_factory) -> IndicatorExtractor:
    """A lexicon of a few terms, so the mechanisms are tested apart from the real lexicons' contents."""
    directory = tmp_path_factory.mktemp("small-lexicon")
    (directory / "en.yml").write_text(yaml.safe_dump(SMALL_LEXICON), encoding="utf-8")
    cache = pytest.MonkeyPatch()
    cache.setenv("HOTLINE_CACHE_DIR", str(directory / "cache"))
    yield IndicatorExtractor(directory)
    cache.undo()


@pytest.mark.parametrize("text, imminent", [
    ("He says he will kill me. Please hurry", True),
    ("please hurry!! my boss hits me", True),
    ("he hits me and someone should call the police", True),
    ("He hits me last year. please hurry with my papers", False),
    ("He says he will kill me", False),
    ("please hurry, the bus leaves", False),
    ("he hits me right now", True),
    ("please hurry, he not hits me", False),
    ("we are locked in. call the police", True),
    ("we are locked in right now", False),
    ("we were locked in last year. call the police about it", False),
])
def test_an_urgent_cue_anywhere_makes_violence_imminent_unless_it_is_past(small_extractor, text, imminent):
    finding = small_extractor.extract(text, ["en"])
    assert finding.imminent is imminent
    assert all(text[d.start:d.end] in ("hits me", "will kill me", "locked in") for d in finding.danger)


@pytest.mark.parametrize("text, indicators", [
    ("i'm 15 and the clients come every night", ["MINOR", "SEX"]),
    ("the clients come every night", []),
    ("i'm 15 and not the clients", ["MINOR"]),
    ("i'm 25 and the clients come every night", []),
])
def test_minor_context_words_show_sex_only_for_a_minor(small_extractor, text, indicators):
    finding = small_extractor.extract(text, ["en"])
    assert finding.indicators == indicators
    waiting = [text[e.start:e.end] for e in finding.if_minor]
    assert waiting == ([] if "MINOR" in indicators or "not the clients" in text else ["the clients"])
    if "SEX" in indicators:
        assert risk_level(finding.indicators) == "high"


@pytest.mark.parametrize("text, indicators", [
    ("I could not sleep. He took my passport", ["DOC"]),
    ("I could not sleep\nhe took my passport", ["DOC"]),
    ("he did not took my passport", []),
    ("I am not paid but took my passport", ["DOC"]),
    ("I am not paid plus took my passport", []),
])
def test_a_negation_stops_at_a_sentence_end_or_a_new_clause(small_extractor, text, indicators):
    assert small_extractor.extract(text, ["en"]).indicators == indicators


@pytest.mark.parametrize("text, code, indicators", [
    ("工资一半都没有 护照也被老板拿着不还", "zh", ["DOC", "WAGE"]),
    ("no pay and then they took my passport", "en", ["DOC", "WAGE"]),
    ("sin pago pero el patron me quito el pasaporte", "es", ["DOC", "WAGE"]),
])
def test_a_negation_does_not_reach_into_the_next_clause(extractor, text, code, indicators):
    assert set(indicators) <= set(extractor.extract(text, [code, "en"]).indicators)


def test_violence_inside_a_threat_is_the_threat_only(extractor):
    assert extractor.extract("he said if i fight he'll hurt me", ["en"]).indicators == ["THREAT"]


@pytest.mark.parametrize("text, age", [("她十六歲", 16), ("十五岁的表妹", 15), ("我二十五岁", None), ("我们做了十五年", None)])
def test_chinese_numeral_ages(extractor, text, age):
    assert extractor.extract(text, ["zh"]).age == age
