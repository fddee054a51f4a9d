"""Language identification: per language, explicit choices, short replies, context, bad input."""
from __future__ import annotations

import pytest

from bot.nlu.language_id import Detection, LanguageIdentifier, choose_language, menu_choice

# One everyday hotline text per language, written for these tests (not from the benchmark set).
SAMPLES = {
    "en": "my boss has my passport and wont give it back",
    "fr": "mon patron garde mon passeport et me paie pas depuis 2 mois",
    "es": "el patron me quito el pasaporte y no me deja salir de la casa",
    "tl": "kinuha ng amo ko yung passport ko at hindi ako pinapasahod",
    "pa": "ਮੇਰੇ ਮਾਲਕ ਨੇ ਮੇਰਾ ਪਾਸਪੋਰਟ ਰੱਖ ਲਿਆ ਹੈ",
    "hi": "मेरे मालिक ने मेरा पासपोर्ट रख लिया है",
    "zh": "老板把我的护照拿走了，不给我工资",
    "vi": "ông chủ giữ hộ chiếu của tôi và không trả lương",
    "uk": "роботодавець забрав мій паспорт і не платить зарплату",
    "ar": "صاحب العمل أخذ جواز سفري ولا يدفع لي راتبي",
    "ko": "사장님이 제 여권을 가져가고 월급을 안 줘요",
    "th": "นายจ้างยึดพาสปอร์ตของฉันและไม่จ่ายเงินเดือน",
}

ROMANIZED = {
    "pa": "mainu tin mahine ton tankhah nahi mili, malik kehnda passport ohde kol rahu",
    "hi": "mujhe teen mahine se salary nahi mili aur malik kehta hai passport uske paas rahega",
}

EXPLICIT = {
    "en": "english please", "fr": "en français svp", "es": "en español", "tl": "tagalog po",
    "pa": "ਪੰਜਾਬੀ", "hi": "हिंदी", "zh": "中文", "vi": "tiếng việt", "uk": "українською",
    "ar": "بالعربي", "ko": "한국어", "th": "ภาษาไทย",
}


@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    identifier = LanguageIdentifier()
    identifier.warm_up()
    return identifier


@pytest.mark.parametrize("code", sorted(SAMPLES))
def test_each_supported_language_is_identified(identifier, code):
    detection = identifier.identify(SAMPLES[code])
    assert detection.language == code
    assert detection.supported and detection.informative
    assert detection.confidence >= 0.5


@pytest.mark.parametrize("code", sorted(ROMANIZED))
def test_punjabi_and_hindi_in_latin_letters(identifier, code):
    detection = identifier.identify(ROMANIZED[code])
    assert (detection.language, detection.method) == (code, "romanized")


def test_vietnamese_without_tone_marks(identifier):
    assert identifier.identify("ong chu giu ho chieu cua toi, khong tra luong").language == "vi"


@pytest.mark.parametrize("code", sorted(EXPLICIT))
def test_explicit_choice_in_every_language(identifier, code):
    detection = identifier.identify(EXPLICIT[code])
    assert detection.language == code and detection.explicit


def test_a_language_name_inside_a_long_message_is_not_a_choice(identifier):
    text = "i speak english but my friend only speaks tagalog and her boss took her papers"
    assert not identifier.identify(text).explicit


def test_tagalog_no_is_not_a_request_for_hindi(identifier):
    assert identifier.identify("hindi po").language != "hi"


@pytest.mark.parametrize("text", ["ok", "si", "👍", "2", "1", "y", "no", "...", "🙏🙏"])
def test_short_replies_do_not_carry_language(identifier, text):
    assert not identifier.identify(text).informative


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Мой паспорт забрал работодатель, что мне делать", "ru"),
        ("Meu patrão ficou com meu passaporte, o que eu faço?", "pt"),
        ("社長にパスポートを取られました。どうすればいいですか", "ja"),
    ],
)
def test_unsupported_language_is_recorded_and_answered_in_english(identifier, text, expected):
    detection = identifier.identify(text)
    assert detection.detected == expected
    assert not detection.supported
    assert detection.language == "en"


@pytest.mark.parametrize(
    "text",
    ["", "   \n\t", "🙂🙂🙂", "123 456", "a" * 10_000, "\x00\x01\x02 hello \x7f", "\ud800 broken surrogate",
     "ok " * 5_000],
)
def test_bad_input_never_crashes_and_answers_a_sensible_language(identifier, text):
    detection = identifier.identify(text)
    assert detection.language in identifier.supported
    assert 0.0 <= detection.confidence <= 1.0


def test_empty_text_is_english_with_no_confidence(identifier):
    detection = identifier.identify("")
    assert (detection.language, detection.confidence, detection.informative) == ("en", 0.0, False)


def _detection(language, confidence=0.9, informative=True, scores=None, method="lingua", supported=True):
    return Detection(language, confidence, language, supported, informative, method, scores or {language: confidence})


@pytest.mark.parametrize("text, language", [
    ("hola buenas tardes", "es"), ("Hola, buenos días!", "es"), ("salamat po magandang umaga", "tl"),
    ("bonjour merci", "fr"), ("hello hola", "en"),
])
def test_a_greeting_made_of_known_phrases_keeps_their_language(identifier, text, language):
    """Phrases of one language together are that language; mixed ones stay unsure (English)."""
    assert identifier.identify(text).language == language


def test_first_message_sets_the_language_even_if_short():
    assert choose_language(None, _detection("es", 0.2, informative=False)) == "es"


def test_short_message_keeps_the_conversation_language():
    assert choose_language("es", _detection("en", 0.3, informative=False)) == "es"


def test_a_full_message_in_another_language_switches():
    assert choose_language("en", _detection("fr", 0.95, scores={"fr": 0.95, "en": 0.02})) == "fr"


def test_mixed_message_keeps_a_close_conversation_language():
    taglish = _detection("en", 0.5, scores={"en": 0.5, "tl": 0.4})
    assert choose_language("tl", taglish) == "tl"


def test_explicit_choice_always_switches():
    assert choose_language("tl", _detection("ko", 1.0, method="explicit")) == "ko"


def test_unsupported_language_mid_conversation_keeps_the_language():
    assert choose_language("es", _detection("pt", 0.9, supported=False)) == "es"


def test_menu_numbers_map_to_the_menu_order():
    codes = LanguageIdentifier().data.codes
    assert menu_choice("2", codes) == "fr"
    assert menu_choice(" 12 ", codes) == "th"
    assert menu_choice("13", codes) is None
    assert menu_choice("two", codes) is None

