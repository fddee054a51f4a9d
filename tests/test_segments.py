"""SMS segment counting (GSM-7 / UCS-2) and splitting of bodies over Twilio's 1,600 characters."""
from __future__ import annotations

import random
import string
import unicodedata
from pathlib import Path

import pytest
import yaml

from bot.channels.segments import (
    SegmentInfo,
    describe,
    encoding,
    length_units,
    segment_count,
    split_message,
    split_segments,
)

DOMAIN = Path(__file__).resolve().parents[1] / "domain.yml"
PRAYING = "\U0001F64F"  # 🙏, outside the BMP: a surrogate pair in UTF-16


def septets(text: str) -> int:
    """Septets counted by hand for the tests: two for each extension character."""
    return len(text) + sum(text.count(ch) for ch in "^{}\\[~]|€\f")


def non_space(text: str) -> str:
    return "".join(ch for ch in text if not ch.isspace())


# --- encoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I need help. My boss took my passport.",  # English
        "Kailangan ko po ng tulong. Kinuha ng amo ko ang pasaporte ko.",  # Tagalog
        "Bonjour, je suis à Montréal et j'ai besoin d'aide.",  # French, à and é only
        "¿Necesita ayuda? ¡Llame ahora! Mañana también.",  # Spanish, ¿ ¡ ñ é only
        "àèéùìòÇØøÅåÄÖÑÜ§¿äöñü¡ÆæßÉ ΔΦΓΛΩΠΨΣΘΞ £$¥¤@_",  # every non-ASCII letter of the table
        "{braces} [brackets] ~tilde~ |pipe| ^caret^ back\\slash 20€\f",
        "line\nbreak\r\n",
    ],
)
def test_gsm_alphabet_texts_are_gsm7(text):
    assert encoding(text) == "GSM-7"


@pytest.mark.parametrize(
    "text",
    [
        "我需要帮助。老板拿走了我的护照。",  # Chinese
        "أحتاج إلى مساعدة. أخذ صاحب العمل جواز سفري.",  # Arabic
        "ฉันต้องการความช่วยเหลือ นายจ้างยึดพาสปอร์ตของฉัน",  # Thai
        "ਮੈਨੂੰ ਮਦਦ ਚਾਹੀਦੀ ਹੈ। ਮਾਲਕ ਨੇ ਮੇਰਾ ਪਾਸਪੋਰਟ ਲੈ ਲਿਆ।",  # Punjabi (Gurmukhi)
        "मुझे मदद चाहिए। मालिक ने मेरा पासपोर्ट ले लिया।",  # Hindi
        "도와주세요. 사장님이 제 여권을 가져갔어요.",  # Korean
        "Мені потрібна допомога. Роботодавець забрав мій паспорт.",  # Ukrainian
        "Tôi cần giúp đỡ. Chủ lấy hộ chiếu của tôi.",  # Vietnamese
        "Je suis arrêté",  # ê is not in GSM 03.38
        "Ayúdame, por favor",  # á is not in GSM 03.38
        "Je parle français",  # only the capital Ç is, not ç
        "thanks " + PRAYING,
        "tab\there",  # no tab in GSM 03.38
        "back`tick",
    ],
)
def test_other_texts_are_ucs2(text):
    assert encoding(text) == "UCS-2"


def test_e_acute_is_gsm_but_e_circumflex_is_not():
    assert encoding("é") == "GSM-7"
    assert encoding("ê") == "UCS-2"


def test_printable_ascii_is_gsm_except_backtick():
    non_gsm = [ch for ch in string.printable if encoding(ch) != "GSM-7"]
    assert non_gsm == ["`", "\t", "\x0b"]


def test_escape_character_itself_is_not_text():
    assert encoding("\x1b") == "UCS-2"


# --- units and segments -------------------------------------------------------------------------


def test_extension_characters_cost_two_septets():
    assert length_units("€") == 2
    assert length_units("a{b}c") == 7
    assert length_units("\f") == 2


@pytest.mark.parametrize(
    ("length", "segments"), [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)]
)
def test_plain_gsm_segments(length, segments):
    assert segment_count("a" * length) == segments


def test_extension_character_pushes_over_one_segment():
    assert segment_count("a" * 158 + "€") == 1  # 160 septets
    assert segment_count("a" * 159 + "€") == 2  # 161 septets


def test_extension_character_is_never_split_across_segments():
    # 306 septets: dividing by 153 says 2, but "€" cannot straddle the first boundary.
    text = "a" * 152 + "€" + "a" * 152
    assert septets(text) == 306
    assert segment_count(text) == 3
    parts = split_segments("a" * 152 + "€" + "a" * 153)
    assert parts[0] == "a" * 152
    assert parts[1].startswith("€")
    assert "".join(parts) == "a" * 152 + "€" + "a" * 153
    assert all(septets(part) <= 153 for part in parts)


@pytest.mark.parametrize(
    ("length", "segments"), [(70, 1), (71, 2), (134, 2), (135, 3)]
)
def test_ucs2_segments(length, segments):
    assert segment_count("Ж" * length) == segments


def test_emoji_counts_two_units():
    assert length_units(PRAYING) == 2
    assert segment_count(PRAYING * 35) == 1
    assert segment_count(PRAYING * 36) == 2


@pytest.mark.parametrize("emoji", [PRAYING, "\ud83d\ude4f"], ids=["code point", "surrogates"])
def test_surrogate_pair_is_never_split_across_segments(emoji):
    text = "Ж" * 66 + emoji + "Ж" * 66  # 134 units: dividing by 67 says 2
    parts = split_segments(text)
    assert len(parts) == segment_count(text) == 3
    assert "".join(parts) == text
    assert parts[0] == "Ж" * 66
    assert parts[1].startswith(emoji)
    assert all(len(part.encode("utf-16-le", "surrogatepass")) <= 2 * 67 for part in parts)


def test_surrogates_as_code_points_count_like_the_character():
    assert length_units("\ud83d\ude4f") == length_units(PRAYING) == 2


def test_empty_text():
    assert segment_count("") == 0
    assert split_segments("") == []
    assert describe("") == SegmentInfo("GSM-7", 0, 0)
    assert split_message("") == []


def test_describe():
    assert describe("Hi €") == SegmentInfo("GSM-7", 5, 1)
    assert describe("Привіт " + PRAYING) == SegmentInfo("UCS-2", 9, 1)
    assert describe("x" * 200) == SegmentInfo("GSM-7", 200, 2)


def test_binary_text_does_not_crash():
    junk = "".join(chr(i) for i in range(32)) + chr(0xD800) + "abc" + chr(0xDFFF) + "\x7f" * 50
    info = describe(junk)
    assert info.encoding == "UCS-2"
    assert info.units == len(junk)
    assert info.segments == 2
    parts = split_message(junk * 40, limit=100)
    assert all(0 < len(part) <= 100 for part in parts)
    assert non_space("".join(parts)) == non_space(junk * 40)


# --- split_message ------------------------------------------------------------------------------

ENGLISH = [
    "You can text us any time.",
    "Nobody will share what you say without asking you first!",
    "Do you feel safe where you are now?",
    "A person can call you with an interpreter…",
    "Your passport belongs to you, and nobody may keep it.",
]
CHINESE = ["您可以随时发短信给我们。", "没有您的同意，我们不会告诉任何人！", "您现在安全吗？", "护照属于您本人。"]
THAI = [
    "คุณส่งข้อความหาเราได้ตลอดเวลา",
    "ไม่มีใครเก็บหนังสือเดินทางของคุณได้",
    "ตอนนี้คุณปลอดภัยไหม",
    "มีคนจริงคุยกับคุณได้",
]
HINDI = ["आप कभी भी हमें लिख सकते हैं।", "क्या आप अभी सुरक्षित हैं?", "पासपोर्ट आपका है॥"]


def long_text(sentences: list[str], separator: str, length: int = 5000, seed: int = 7) -> str:
    rng = random.Random(seed)
    out = ""
    while len(out) < length:
        out += rng.choice(sentences) + separator
    return out.strip()


def check_parts(text: str, parts: list[str], limit: int) -> None:
    assert parts, "no parts"
    assert all(0 < len(part) <= limit for part in parts)
    assert non_space("".join(parts)) == non_space(text)


def test_short_text_is_one_part():
    assert split_message("Hi. Text STOP to end.") == ["Hi. Text STOP to end."]
    assert split_message("x" * 1600) == ["x" * 1600]


def test_blank_text_has_no_parts():
    assert split_message(" " * 2000) == []


@pytest.mark.parametrize(
    ("sentences", "separator"), [(ENGLISH, " "), (CHINESE, ""), (HINDI, " ")],
    ids=["English", "Chinese", "Hindi"],
)
def test_long_text_is_cut_at_sentence_ends(sentences, separator):
    text = long_text(sentences, separator)
    assert len(text) >= 5000
    parts = split_message(text)
    check_parts(text, parts, 1600)
    assert len(parts) == 4
    for part in parts:
        assert part == part.strip()
        assert any(part.endswith(sentence) for sentence in sentences), part[-40:]
        assert any(part.startswith(sentence) for sentence in sentences), part[:40]


def test_parts_are_packed_with_as_many_sentences_as_fit():
    text = long_text(ENGLISH, " ")
    parts = split_message(text)
    for part, following in zip(parts, parts[1:]):
        next_sentence = next(s for s in ENGLISH if following.startswith(s))
        assert len(part) + 1 + len(next_sentence) > 1600


def test_thai_is_cut_at_spaces():
    text = long_text(THAI, " ")
    parts = split_message(text)
    check_parts(text, parts, 1600)
    for part in parts:
        assert set(part.split(" ")) <= set(THAI)


def test_text_without_spaces_or_sentence_ends_is_cut_hard():
    text = "a" * 5000
    assert split_message(text) == ["a" * 1600] * 3 + ["a" * 200]


def test_dots_inside_numbers_are_not_sentence_ends():
    # A dot followed by a digit would be the last "sentence end" within 26 characters.
    text = "Stay safe. Call 1.833.900.1010 today."
    assert split_message(text, limit=26) == ["Stay safe.", "Call 1.833.900.1010 today."]


def test_hard_cut_keeps_combining_marks_with_their_letter():
    text = "e\u0301\u0323" * 100  # é with a dot below: three code points per letter
    parts = split_message(text, limit=10)
    check_parts(text, parts, 10)
    for part in parts:
        assert not unicodedata.category(part[0]).startswith("M")
    assert "".join(parts) == text


def test_hard_cut_keeps_surrogate_pairs_whole():
    text = "\ud83d\ude4f" * 50
    parts = split_message(text, limit=7)
    check_parts(text, parts, 7)
    assert all(part == "\ud83d\ude4f" * 3 for part in parts[:-1])
    assert "".join(parts) == text


def test_hard_cut_keeps_thai_vowel_marks_and_indic_conjuncts():
    # Three code points per cluster; 101 would cut after the second (a mark, or a virama).
    for text in ("กั่" * 300, "क्ष" * 300):
        parts = split_message(text, limit=101)
        check_parts(text, parts, 101)
        assert all(part.startswith(text[0]) for part in parts)


@pytest.mark.parametrize("seed", range(20))
def test_random_texts_keep_the_invariants(seed):
    rng = random.Random(seed)
    alphabet = list("ab .!?。\n\t") + ["\u0301", PRAYING, "।", "€", "ก", "ั", "  "]
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3000)))
    limit = rng.randint(1, 400)
    parts = split_message(text, limit=limit)
    if text.strip():
        check_parts(text, parts, limit)
    else:
        assert parts == []


def test_limit_must_be_positive():
    with pytest.raises(ValueError):
        split_message("abc", limit=0)


# --- the bot's own responses --------------------------------------------------------------------


def response_variations() -> list:
    responses = yaml.safe_load(DOMAIN.read_text(encoding="utf-8"))["responses"]
    params = []
    for name, variations in responses.items():
        for variation in variations:
            if "text" in variation:
                language = variation_language(variation)
                param = pytest.param(name, language, variation["text"], id=f"{name}-{language}")
                params.append(param)
    return params


def variation_language(variation: dict) -> str:
    for condition in variation.get("condition", []):
        if condition.get("name") == "language":
            return condition["value"]
        if condition.get("name") == "language_supported" and condition.get("value") is False:
            return "unsupported"
    return "default"


#: Responses allowed a third segment: the rights information (issue 5).
THREE_SEGMENTS = {"utter_rights", "utter_rights_owp", "utter_rights_trp", "utter_tip_line"}


@pytest.mark.parametrize(("name", "language", "text"), response_variations())
def test_domain_responses_fit_in_two_segments(name, language, text):
    """Counted as sent: with the referral facts filled in for the variation's language."""
    from bot.conversation.facts import fact_slots

    sent = text.format(**fact_slots(language if language not in ("default", "unsupported") else "en"))
    info = describe(sent)
    print(f"{name:<28} {language:<12} {info.encoding} {info.units:>4} units, {info.segments} seg.")
    assert info.segments <= (3 if name in THREE_SEGMENTS else 2)
