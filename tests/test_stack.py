"""`hotline up` serves the trained bot: it answers in the texter's language and keeps it.

Runs the real processes (Rasa server, action server) on free ports and talks to Rasa's REST
channel, as a texter's messages would arrive; then stops the stack with SIGTERM.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
import yaml

from bot import PROJECT_ROOT
from tests.conftest import free_port

pytestmark = pytest.mark.slow


def _responses_by_text() -> dict[str, tuple[str, str]]:
    """Every response text of the domain, mapped to (response name, language or 'bilingual')."""
    domain = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text(encoding="utf-8"))
    found = {}
    for name, variations in domain["responses"].items():
        for variation in variations:
            language = "en"
            for cond in variation.get("condition", []):
                language = cond["value"] if cond["name"] == "language" else "bilingual"
            found[variation["text"].strip()] = (name, language)
    return found


RESPONSES = _responses_by_text()


@pytest.fixture(scope="module")
def stack(trained_model, tmp_path_factory):
    models = tmp_path_factory.mktemp("stack_models")
    shutil.copy(trained_model, models / trained_model.name)
    ports = {"HOTLINE_RASA_PORT": free_port(), "HOTLINE_ACTIONS_PORT": free_port(),
             "HOTLINE_TWILIO_PORT": free_port()}
    env = {**os.environ, "HOTLINE_MODELS": str(models), "HOTLINE_HOME": str(tmp_path_factory.mktemp("home")),
           **{k: str(v) for k, v in ports.items()}}
    for variable in ("DATABASE_URL", "REDIS_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
                     "TWILIO_API_URL", "HOTLINE_PUBLIC_URL"):
        env.pop(variable, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "up", "--no-train"], cwd=PROJECT_ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if line.startswith("Model:"):
            break
    else:
        process.kill()
    assert any(line.startswith("Rasa server:") for line in lines), "".join(lines[-50:])
    yield {"process": process, "rasa": ports["HOTLINE_RASA_PORT"], "actions": ports["HOTLINE_ACTIONS_PORT"],
           "twilio": ports["HOTLINE_TWILIO_PORT"], "lines": lines}
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


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
    before = len(sms_sent(stack, address))
    payload = {"from": sender, "channel": channel, "body": text, **({"media_url": media_url} if media_url else {})}
    request = urllib.request.Request(f"http://127.0.0.1:{stack['twilio']}/emulator/send",
                                     data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read())["webhook_status"] == 200
    deadline = time.monotonic() + 60
    while len(sms_sent(stack, address)) < before + expect and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)
    return [RESPONSES.get(m["body"].strip(), ("unknown", m["body"])) for m in sms_sent(stack, address)[before:]]


def sms_sent(stack, address: str) -> list[dict]:
    query = urllib.parse.urlencode({"to": address})
    with urllib.request.urlopen(f"http://127.0.0.1:{stack['twilio']}/emulator/messages?{query}", timeout=10) as reply:
        return json.loads(reply.read())


def test_hotline_up_prints_the_webhook_and_the_standin(stack):
    output = "".join(stack["lines"])
    assert "/webhooks/hotline_twilio/webhook" in output and f":{stack['twilio']}/" in output


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


def test_sigterm_stops_every_process(stack):
    process = stack["process"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    for port in (stack["rasa"], stack["actions"], stack["twilio"]):
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
