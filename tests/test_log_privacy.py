"""A whole conversation through the running stack, and then every log line every process wrote
(Rasa server, action server, agent hub, Twilio stand-in, `hotline up` itself) is searched for the
texters' words and numbers: none may appear. The texts carry made-up names (canaries) so that a
piece of a message logged on its own is caught too, in Latin, Arabic and Chinese script."""
from __future__ import annotations

import asyncio
import json
import secrets
import urllib.parse
import urllib.request

import pytest
from twilio.request_validator import RequestValidator

from bot.channels.config import WEBHOOK_PATH
from tests.support.stack import sent_to, text_from, wait_for
from tests.test_hub_stack import Console

pytestmark = pytest.mark.slow

SMS, WHATSAPP = "+15145550277", "+15145550278"
NUMBER_IN_TEXT = "519 555 0147"
CANARIES = ["Zorbanek", "Quillfeather", "Kestrelwood", "زوربانيك", "佐巴内克", "zorbanek@example.org"]
TEXTS = {
    SMS: ["hola necesito ayuda, me llamo Zorbanek Quillfeather",
          f"mi jefe Kestrelwood tiene mi pasaporte, mi correo es zorbanek@example.org y mi numero {NUMBER_IN_TEXT}",
          "Zorbanek: me está golpeando ahora mismo, ayuda"],
    WHATSAPP: ["مرحبا أحتاج مساعدة، اسمي زوربانيك", "老板拿走了我的护照，我叫佐巴内克"],
}
MEDIA = "https://media.example.org/Accounts/AC1/Messages/MM1/Media/ME9f3c2b1a0d"
AGENT_REPLY = "Hola Zorbanek, soy Ana de la línea. ¿Puedes ir a un lugar seguro?"
AGENT_NOTE = "Quillfeather describe a Kestrelwood como violento"


@pytest.fixture(scope="module")
def stack(stacks):
    return stacks.running()


def post_unusable_webhook(stack) -> None:
    """A signed webhook without a MessageSid: the channel logs a warning (proof the capture sees
    lines written after start-up) and must not log the body it carried."""
    token = (stack["home"] / "twilio_dev_token.secret").read_text().strip()
    url = f"http://127.0.0.1:{stack['rasa']}{WEBHOOK_PATH}"
    params = {"From": SMS, "To": "+15145550000", "Body": "Zorbanek sin identificador"}
    request = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(), headers={
        "X-Twilio-Signature": RequestValidator(token).compute_signature(url, params),
        "Content-Type": "application/x-www-form-urlencoded"})
    try:
        urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as error:
        assert error.code == 400


def send_photo(stack) -> None:
    payload = {"from": WHATSAPP, "channel": "whatsapp", "body": "", "media_url": MEDIA}
    request = urllib.request.Request(f"http://127.0.0.1:{stack['twilio']}/emulator/send",
                                     data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert json.loads(answer.read())["webhook_status"] == 200


def ours(case: dict) -> bool:
    """This test's case (other tests of the shared stack send danger messages too)."""
    return any(CANARIES[0] in (line.get("text") or "") for line in case.get("transcript", []))


async def converse_and_handle(stack) -> None:
    for number, texts in TEXTS.items():
        channel = "whatsapp" if number == WHATSAPP else "sms"
        for text in texts:
            count = len(sent_to(stack, f"whatsapp:{number}" if channel == "whatsapp" else number))
            text_from(stack, number, text, channel)
            assert wait_for(lambda: len(sent_to(stack, f"whatsapp:{number}" if channel == "whatsapp" else number))
                            > count, 60), f"no answer to a {channel} message"
    send_photo(stack)
    async with Console(stack, f"ana_logs_{secrets.token_hex(3)}") as agent:
        case = None
        for _ in range(150):
            case = next((case for case in await agent.get("/api/cases") if ours(case)), None)
            if case:
                break
            await asyncio.sleep(0.2)
        assert case, "the danger message made no case"
        await agent.post(f"/api/cases/{case['id']}/take")
        await agent.post(f"/api/cases/{case['id']}/reply", {"text": AGENT_REPLY})
        await agent.post(f"/api/cases/{case['id']}/notes", {"text": AGENT_NOTE})
        assert wait_for(lambda: any(m["body"] == AGENT_REPLY for m in sent_to(stack, SMS)), 30)
        await agent.post(f"/api/cases/{case['id']}/close", {"outcome": "safety_plan", "note": AGENT_NOTE})


def forbidden() -> list[str]:
    digits = [SMS, WHATSAPP, SMS[1:], SMS[2:], WHATSAPP[2:], NUMBER_IN_TEXT, NUMBER_IN_TEXT.replace(" ", "")]
    texts = [text for texts in TEXTS.values() for text in texts]
    return [*CANARIES, *digits, *texts, MEDIA, "media.example.org", AGENT_REPLY, AGENT_NOTE]


async def test_no_log_line_of_any_process_holds_a_texters_words_or_number(stack):
    await converse_and_handle(stack)
    post_unusable_webhook(stack)
    assert wait_for(lambda: any("signed webhook without a usable MessageSid" in line for line in stack["lines"]), 10), \
        "the test must see the lines the stack writes after start-up"
    log = "".join(stack["lines"])
    leaks = [secret for secret in forbidden() if secret in log]
    assert not leaks, f"found in the stack's logs: {leaks}"


def test_the_stack_keeps_no_texters_words_in_clear_on_disk(stack):
    """After the conversation above: the databases (Rasa's trackers, the channel, the hub), their
    write-ahead logs and every other file of the stack's home hold none of it in clear, and are
    readable by the stack's own user only."""
    if not wait_for(lambda: any(m["body"] == AGENT_REPLY for m in sent_to(stack, SMS)), 1):
        asyncio.run(converse_and_handle(stack))
    files = [path for path in stack["home"].rglob("*") if path.is_file()]
    assert {"trackers.db", "hotline.db"} <= {path.name for path in files}
    secrets = [secret.encode() for secret in forbidden()]
    for path in files:
        content = path.read_bytes()
        assert not [s for s in secrets if s in content], f"{path.name} holds a texter's words in clear"
        assert path.stat().st_mode & 0o077 == 0, f"{path.name} is readable by other users"
