"""`hotline up` serves the trained bot: it answers in the texter's language and keeps it.

Runs the real processes (Rasa server, action server) on free ports and talks to Rasa's REST
channel, as a texter's messages would arrive; then stops the stack with SIGTERM.
"""
from __future__ import annotations

import json
import signal
import time
import urllib.request

import pytest
import yaml

from bot import PROJECT_ROOT
from bot.conversation.facts import fact_slots
from tests.support.stack import sent_to

pytestmark = pytest.mark.slow


def _responses_by_text() -> dict[str, tuple[str, str]]:
    """Every response text of the domain as sent (referral facts filled in), mapped to
    (response name, language or 'bilingual')."""
    domain = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text(encoding="utf-8"))
    found = {}
    for name, variations in domain["responses"].items():
        for variation in variations:
            language = "en"
            for cond in variation.get("condition", []):
                language = cond["value"] if cond["name"] == "language" else "bilingual"
            facts = fact_slots(language if language != "bilingual" else "en")
            found[variation["text"].format(**facts).strip()] = (name, language)
    return found


RESPONSES = _responses_by_text()


@pytest.fixture(scope="module")
def stack(stacks):
    return stacks.running()


def send(stack, sender: str, text: str) -> list[tuple[str, str]]:
    """Send one texter message; returns (response name, language) of each reply."""
    body = json.dumps({"sender": sender, "message": text}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack['rasa']}/webhooks/rest/webhook", data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        replies = json.loads(response.read())
    return [RESPONSES.get(reply["text"].strip(), ("unknown", reply["text"])) for reply in replies]


CONVERSATIONS = {
    "es": ["hola, necesito ayuda por favor", "el patron me quito el pasaporte y no me paga"],
    "tl": ["hello po, kailangan ko po ng tulong", "kinuha ng amo ko yung passport ko"],
    "fr": ["bonjour, j'ai besoin d'aide svp", "mon patron garde mon passeport"],
    "zh": ["你好，我需要帮助", "老板拿走了我的护照"],
    "ar": ["مرحبا، أحتاج مساعدة من فضلك", "صاحب العمل أخذ جواز سفري"],
    "uk": ["привіт, мені потрібна допомога", "роботодавець забрав мій паспорт"],
    "ko": ["안녕하세요, 도움이 필요해요", "사장님이 제 여권을 가져갔어요"],
    "th": ["สวัสดีค่ะ ต้องการความช่วยเหลือ", "นายจ้างยึดพาสปอร์ตของฉัน"],
    "vi": ["xin chào, tôi cần giúp đỡ", "ông chủ giữ hộ chiếu của tôi"],
    "hi": ["नमस्ते, मुझे मदद चाहिए", "मेरे मालिक ने मेरा पासपोर्ट रख लिया"],
    "pa": ["ਸਤ ਸ੍ਰੀ ਅਕਾਲ, ਮੈਨੂੰ ਮਦਦ ਚਾਹੀਦੀ ਹੈ", "ਮਾਲਕ ਨੇ ਮੇਰਾ ਪਾਸਪੋਰਟ ਰੱਖ ਲਿਆ"],
    "en": ["hi, i need help please", "my boss took my passport"],
}


@pytest.mark.parametrize("code", sorted(CONVERSATIONS))
def test_bot_answers_in_the_texters_language_and_short_replies_keep_it(stack, code):
    sender = f"test-{code}"
    for text in CONVERSATIONS[code] + ["ok", "👍"]:
        replies = send(stack, sender, text)
        assert replies, text
        assert {language for _, language in replies} == {code}, (text, replies)


def test_explicit_choice_switches_language(stack):
    send(stack, "switcher", "hola, necesito ayuda")
    assert {lang for _, lang in send(stack, "switcher", "english please")} == {"en"}
    assert {lang for _, lang in send(stack, "switcher", "ok")} == {"en"}


def test_language_menu_by_number(stack):
    replies = send(stack, "menu", "can we talk in another language")
    assert ("utter_ask_language_choice", "en") in replies
    assert send(stack, "menu", "3") == [("utter_language_set", "es")]


def test_unsupported_language_gets_english_and_french(stack):
    replies = send(stack, "russian", "Здравствуйте, мне нужна помощь, работодатель забрал паспорт")
    assert replies and {language for _, language in replies} == {"bilingual"}


def text_by_sms(stack, sender: str, text: str, channel: str = "sms", media_url: str | None = None,
                expect: int = 1) -> list[tuple[str, str]]:
    """Text the hotline through the Twilio stand-in; returns the new replies, as in ``send``."""
    address = f"whatsapp:{sender}" if channel == "whatsapp" else sender
    before = len(sent_to(stack, address))
    payload = {"from": sender, "channel": channel, "body": text, **({"media_url": media_url} if media_url else {})}
    request = urllib.request.Request(f"http://127.0.0.1:{stack['twilio']}/emulator/send",
                                     data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read())["webhook_status"] == 200
    deadline = time.monotonic() + 60
    while len(sent_to(stack, address)) < before + expect and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)
    return [RESPONSES.get(m["body"].strip(), ("unknown", m["body"])) for m in sent_to(stack, address)[before:]]


def test_hotline_up_prints_the_webhook_the_standin_and_the_console(stack):
    output = "".join(stack["lines"])
    assert "/webhooks/hotline_twilio/webhook" in output and f":{stack['twilio']}/" in output
    assert f"Agent console: http://127.0.0.1:{stack['hub']}/" in output
    with urllib.request.urlopen(f"http://127.0.0.1:{stack['hub']}/", timeout=10) as page:
        assert page.status == 200 and b"<title>" in page.read()


@pytest.mark.parametrize("code", sorted(CONVERSATIONS))
def test_sms_and_whatsapp_through_the_standin_are_answered_in_the_texters_language(stack, code):
    index = sorted(CONVERSATIONS).index(code)
    for channel in ("sms", "whatsapp"):
        sender = f"+1438555{index:02d}{'1' if channel == 'sms' else '2'}0"
        for text in CONVERSATIONS[code]:
            replies = text_by_sms(stack, sender, text, channel)
            assert replies and {language for _, language in replies} == {code}, (channel, text, replies)


def test_a_photo_is_acknowledged_in_the_texters_language(stack):
    sender = "+14385559901"
    text_by_sms(stack, sender, CONVERSATIONS["es"][0])
    replies = text_by_sms(stack, sender, "", media_url="https://example.org/contrato.jpg")
    assert ("utter_media_received", "es") in replies


def test_sms_stop_silences_the_bot_until_start(stack):
    sender = "+14385559902"
    text_by_sms(stack, sender, CONVERSATIONS["fr"][0])
    replies = text_by_sms(stack, sender, "ARRÊT")
    assert len(replies) == 1 and replies[0][0] == "unknown" and "unsubscribed" in replies[0][1]
    assert text_by_sms(stack, sender, "allo?", expect=0) == []


# --- the trauma-informed conversation, through the real action server -----------------------------

PHRASES = yaml.safe_load((PROJECT_ROOT / "tests" / "e2e" / "phrases.yml").read_text(encoding="utf-8"))["phrases"]


def names(replies: list[tuple[str, str]], code: str) -> list[str]:
    assert replies, "the bot must always answer"
    assert {language for _, language in replies} == {code}, replies
    return [name for name, _ in replies]


def open_cases(stack) -> dict[str, dict]:
    """The handoff queue of the stack's database, decrypted: conversation id -> summary."""
    import sqlalchemy as sa

    from bot.agents.handoff import handoff_requests
    from bot.privacy import load_keys
    from bot.settings import Settings

    settings = Settings.from_env({"HOTLINE_HOME": str(stack["home"])})
    keys = load_keys(settings)
    engine = sa.create_engine(f"sqlite:///{stack['home'] / 'hotline.db'}")
    with engine.connect() as db:
        rows = list(db.execute(sa.select(handoff_requests)))
    engine.dispose()
    return {row.conversation_id: {"risk": row.risk, "reason": row.reason,
                                  **json.loads(keys.decrypt(row.summary_enc))} for row in rows}


@pytest.mark.parametrize("code", sorted(PHRASES))
def test_safety_questions_then_what_happens_then_a_person_in_every_language(stack, code):
    phrases, sender = PHRASES[code], f"flow-{code}"
    opening = names(send(stack, sender, phrases["greet"]), code)
    assert opening[0] == "utter_greet" and opening[-1] == "utter_ask_safe_now"
    assert names(send(stack, sender, phrases["yes"]), code) == ["utter_ask_can_text_freely"]
    assert names(send(stack, sender, phrases["no"]), code) == ["utter_clear_thread", "utter_ask_phone_may_be_read"]
    assert names(send(stack, sender, phrases["skip"]), code) == ["utter_ask_situation"]
    told = names(send(stack, sender, phrases["describe"]), code)
    assert told[0] == "utter_acknowledge" and told[-1].startswith("utter_ask_")
    asked = told[-1]
    for _ in range(6):
        if asked == "utter_ask_consent_handoff":
            break
        asked = names(send(stack, sender, phrases["skip"]), code)[-1]
    assert asked == "utter_ask_consent_handoff"
    assert names(send(stack, sender, phrases["yes"]), code) == ["utter_ask_contact_back"]
    assert names(send(stack, sender, phrases["no"]), code) == ["utter_handoff_started"]
    case = open_cases(stack)[sender]
    assert case["language"] == code and case["consent"] == {"handoff": "yes", "contact_back": "no"}
    assert case["safety"] == {"safe_now": "yes", "can_text_freely": "no", "phone_may_be_read": "skip"}
    assert case["transcript"][0] == {**case["transcript"][0], "from": "texter", "text": phrases["greet"]}


@pytest.mark.parametrize("code", sorted(PHRASES))
def test_danger_in_the_middle_of_the_safety_questions_goes_to_911_and_the_top_of_the_queue(stack, code):
    phrases, sender = PHRASES[code], f"danger-{code}"
    names(send(stack, sender, phrases["greet"]), code)
    assert names(send(stack, sender, phrases["yes"]), code) == ["utter_ask_can_text_freely"]
    assert names(send(stack, sender, phrases["emergency_later"]), code) == ["utter_emergency", "utter_emergency_escalated"]
    case = open_cases(stack)[sender]
    assert case["risk"] == "imminent" and case["reason"] == "imminent"
    assert names(send(stack, sender, phrases["thanks"]), code) == ["utter_welcome"]


@pytest.mark.parametrize("code", sorted(PHRASES))
def test_skipping_everything_still_gets_referrals_in_every_language(stack, code):
    phrases, sender = PHRASES[code], f"skipper-{code}"
    names(send(stack, sender, phrases["greet"]), code)
    for expected in ("utter_ask_can_text_freely", "utter_ask_phone_may_be_read", "utter_ask_situation",
                     "utter_ask_consent_handoff"):
        assert names(send(stack, sender, phrases["skip"]), code) == [expected]
    assert names(send(stack, sender, phrases["skip"]), code) == ["utter_referrals", "utter_rights"]
    assert sender not in open_cases(stack), "nothing is shared without consent"


def test_a_minor_gets_kids_help_phone_and_the_agent_is_told(stack):
    sender, phrases = "minor-es", PHRASES["es"]
    names(send(stack, sender, phrases["minor_describe"]), "es")
    for _ in range(3):
        send(stack, sender, phrases["skip"])
    for _ in range(4):
        asked = names(send(stack, sender, phrases["skip"]), "es")
        if asked[-1] not in ("utter_ask_situation",) and not asked[-1].startswith("utter_ask_"):
            break
    assert asked[0] == "utter_minor" and "utter_referrals" in asked
    case = open_cases(stack)[sender]
    assert case["minor"] is True and case["reason"] == "minor"


def test_cover_word_switches_to_a_wrong_number_until_the_texter_asks_for_a_person(stack):
    sender, phrases = "cover-en", PHRASES["en"]
    names(send(stack, sender, phrases["greet"]), "en")
    assert names(send(stack, sender, "pizza"), "en") == ["utter_cover"]
    assert names(send(stack, sender, phrases["describe"]), "en") == ["utter_small_talk"]
    assert names(send(stack, sender, phrases["ask_rights"]), "en") == ["utter_small_talk"]
    assert names(send(stack, sender, phrases["ask_human"]), "en") == ["utter_human", "utter_ask_consent_handoff"]


def test_rights_question_in_the_middle_of_the_questions_then_the_question_again(stack):
    sender, phrases = "rights-fr", PHRASES["fr"]
    names(send(stack, sender, phrases["greet"]), "fr")
    assert names(send(stack, sender, phrases["ask_rights"]), "fr") == [
        "utter_rights", "utter_rights_owp", "utter_rights_trp", "utter_tip_line", "utter_ask_safe_now"]


def test_delete_asks_first_then_starts_over(stack):
    sender, phrases = "delete-ko", PHRASES["ko"]
    names(send(stack, sender, phrases["greet"]), "ko")
    assert names(send(stack, sender, phrases["delete"]), "ko") == ["utter_ask_delete_confirmed"]
    assert names(send(stack, sender, phrases["yes"]), "ko") == ["utter_deleted"]


def test_stop_ends_the_questions_at_once(stack):
    sender = "stopper-th"
    names(send(stack, sender, PHRASES["th"]["greet"]), "th")
    assert names(send(stack, sender, "STOP"), "th") == ["utter_stop"]


def test_two_misunderstandings_in_a_row_offer_a_person_not_a_loop(stack):
    sender = "lost-en"
    names(send(stack, sender, PHRASES["en"]["greet"]), "en")
    send(stack, sender, "STOP")
    first = names(send(stack, sender, PHRASES["en"]["out_of_scope"]), "en")
    assert "utter_out_of_scope" in first
    second = names(send(stack, sender, PHRASES["en"]["gibberish"]), "en")
    assert "utter_not_understood" not in second and "utter_out_of_scope" not in second, second



def test_sigterm_stops_every_process(stack):
    process = stack["process"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    for port in (stack["rasa"], stack["actions"], stack["twilio"], stack["hub"]):
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
