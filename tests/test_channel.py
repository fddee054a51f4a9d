"""The Twilio channel end to end with real processes: signatures, exactly-once, order, retries,
restarts, keywords, WhatsApp, media, privacy at rest; on SQLite and on PostgreSQL."""
from __future__ import annotations

import contextlib
import itertools
import secrets
import time
import urllib.parse

import psycopg2
import pytest
import sqlalchemy as sa

from bot.channels import store as tables
from bot.storage import make_engine
from tests.channel_rig import HOTLINE, Rig, http, wait_until

POSTGRES = "postgresql://postgres@127.0.0.1:5432/"


_numbers = itertools.count(secrets.randbelow(1000) * 7 + 2000)


def number() -> str:
    """A texter number not used before in this test run (random ones collided: a test then saw
    another test's replies)."""
    return f"+1514{next(_numbers):07d}"


@contextlib.contextmanager
def new_database(kind: str):
    """None for SQLite (a file in the rig's home), else the URL of a new PostgreSQL database."""
    if kind == "sqlite":
        yield None
        return
    name = "hotline_test_" + secrets.token_hex(6)
    admin = psycopg2.connect(POSTGRES + "postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield POSTGRES + name
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request):
    with new_database(request.param) as url:
        yield url


@pytest.fixture(scope="module")
def rig(database, tmp_path_factory):
    rig = Rig(home=tmp_path_factory.mktemp("channel"), database_url=database)
    rig.start_standin()
    rig.start_channel()
    yield rig
    rig.stop()


def engine_of(rig: Rig):
    return make_engine(rig.database_url or f"sqlite:///{rig.home / 'hotline.db'}")


def test_a_signed_sms_is_answered_once_and_its_delivery_recorded(rig):
    sender = number()
    rig.text(sender, "hello there")
    assert rig.replies(sender, 1) == ["echo 1: hello there"]
    engine = engine_of(rig)
    status = wait_until(lambda: _outbox_statuses(engine) and "delivered" in _outbox_statuses(engine))
    assert status


def _outbox_statuses(engine) -> list[str]:
    with engine.connect() as db:
        return [row.status for row in db.execute(sa.select(tables.outbox.c.status))]


@pytest.mark.parametrize("signature", [None, "", "bm90IGEgc2lnbmF0dXJl", "forged-by-attacker"])
def test_unsigned_or_forged_webhooks_get_403_and_nothing_happens(rig, signature):
    sender = number()
    assert rig.post_webhook(rig.inbound(sender, "let me in"), signature=signature) == 403
    time.sleep(1)
    assert rig.sent_to(sender) == []


def test_a_signature_for_other_parameters_is_refused(rig):
    sender = number()
    params = rig.inbound(sender, "original")
    signature = rig.sign(params)
    assert rig.post_webhook({**params, "Body": "tampered"}, signature=signature) == 403
    assert rig.post_webhook(params, signature=signature) == 200


def test_repeated_deliveries_of_one_message_are_answered_once(rig):
    sender = number()
    params = rig.inbound(sender, "are you there")
    statuses = [rig.post_webhook(params) for _ in range(4)]
    assert statuses == [200] * 4
    assert rig.replies(sender, 1) == ["echo 1: are you there"]


def test_messages_of_one_conversation_are_processed_and_answered_in_order(rig):
    senders = [number() for _ in range(3)]
    for index in range(8):
        for sender in senders:
            assert rig.post_webhook(rig.inbound(sender, f"message {index}")) == 200
    for sender in senders:
        assert rig.replies(sender, 8) == [f"echo {i + 1}: message {i}" for i in range(8)]


def test_webhook_answers_with_empty_twiml_before_the_turn_is_processed(tmp_path):
    with Rig(home=tmp_path, delay=2.0).running() as rig:
        sender = number()
        params = rig.inbound(sender, "slow turn")
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "X-Twilio-Signature": rig.sign(params)}
        started = time.monotonic()
        status, body = http("POST", rig.webhook_url, urllib.parse.urlencode(params).encode(), headers)
        assert status == 200 and time.monotonic() - started < 1.0
        assert b"<Response></Response>" in body
        assert rig.replies(sender, 1) == ["echo 1: slow turn"]


def test_over_1600_characters_are_answered_in_parts_twilio_accepts(rig):
    sender = number()
    long_text = "I work every day and they keep my passport. " * 60
    assert len(long_text) > 2600
    rig.post_webhook(rig.inbound(sender, long_text))
    replies = rig.replies(sender, 2)
    assert len(replies) >= 2 and all(len(part) <= 1600 for part in replies)
    assert "".join(replies).replace(" ", "") == f"echo 1: {long_text.strip()}".replace(" ", "")


@pytest.mark.parametrize("body", ["🙏🙏🙏", "ਮੇਰਾ ਪਾਸਪੋਰਟ ਮਾਲਕ ਕੋਲ ਹੈ", "صاحب العمل أخذ جوازي", "", "\x00\x01\x02\x7f\ufffe"])
def test_emoji_non_latin_empty_and_binary_bodies_are_accepted_and_answered(rig, body):
    sender = number()
    assert rig.post_webhook(rig.inbound(sender, body)) == 200
    replies = rig.replies(sender, 1)
    assert len(replies) == 1 and replies[0].startswith("echo 1:")


def test_undecodable_bytes_in_the_form_do_not_break_the_webhook(rig):
    status, _ = http("POST", rig.webhook_url, b"Body=%FF%FE%00&From=%2B15145550199",
                     {"Content-Type": "application/x-www-form-urlencoded",
                      "X-Twilio-Signature": "x"})
    assert status == 403


def test_a_signed_request_without_a_message_sid_is_refused_as_bad_request(rig):
    params = rig.inbound(number(), "hi")
    del params["MessageSid"]
    assert rig.post_webhook(params) == 400


@pytest.mark.parametrize("status", [500, 429])
def test_twilio_errors_are_retried_and_the_reply_is_delivered_once(rig, status):
    sender = number()
    rig.faults(status, 3)
    rig.text(sender, f"retry after {status}")
    assert rig.replies(sender, 1, timeout=30) == [f"echo 1: retry after {status}"]


def test_stop_opts_out_until_start_on_sms(rig):
    sender = number()
    rig.text(sender, "hi")
    assert rig.replies(sender, 1) == ["echo 1: hi"]
    rig.text(sender, "Arrêt")
    rig.text(sender, "please answer")
    time.sleep(2)
    bodies = [m["body"] for m in rig.sent_to(sender)]
    assert len(bodies) == 2 and "unsubscribed" in bodies[1]  # only the carrier's own confirmation
    rig.text(sender, "START")
    rig.text(sender, "back again")
    bodies = rig.replies(sender, 5)
    assert bodies[2].startswith("You have successfully been re-subscribed")
    assert bodies[3:] == ["echo 3: /greet", "echo 4: back again"]


def test_yes_is_an_answer_unless_the_texter_had_opted_out(rig):
    """Twilio lists YES as an opt-in word; for a texter who never sent STOP it is their answer."""
    sender = number()
    rig.text(sender, "hi")
    rig.text(sender, "YES")
    assert rig.replies(sender, 2) == ["echo 1: hi", "echo 2: YES"]
    rig.text(sender, "STOP")
    rig.text(sender, "yes")
    bodies = rig.replies(sender, 4)
    assert "unsubscribed" in bodies[2] and bodies[3].startswith("You have successfully been re-subscribed")
    assert rig.replies(sender, 5)[4] == "echo 4: /greet"


def test_stop_inside_a_sentence_is_not_a_keyword(rig):
    sender = number()
    rig.text(sender, "stop hitting me")
    assert rig.replies(sender, 1) == ["echo 1: stop hitting me"]


def test_whatsapp_is_answered_from_the_whatsapp_number(rig):
    sender = "whatsapp:" + number()
    rig.text(sender.removeprefix("whatsapp:"), "hola", channel="whatsapp")
    messages = wait_until(lambda: rig.sent_to(sender))
    assert messages[0]["body"] == "echo 1: hola" and messages[0]["from"] == f"whatsapp:{HOTLINE}"


def test_whatsapp_outside_the_24_hour_window_is_not_sent_and_is_surfaced(rig):
    sender = "whatsapp:" + number()
    rig.text(sender.removeprefix("whatsapp:"), "first", channel="whatsapp")
    assert rig.replies(sender, 1) == ["echo 1: first"]
    engine = engine_of(rig)
    store = tables.ChannelStore(engine, _keys(rig))
    conversation = tables.conversation_id(store.keys, sender)
    with engine.begin() as db:
        db.execute(tables.addresses.update().where(
            tables.addresses.c.conversation_id == conversation).values(
            last_inbound_at=time.time() - 25 * 3600))
    assert store.enqueue(conversation, "agent:late", "agent", "An agent writes after a day")
    problem = wait_until(lambda: [p for p in store.problems() if p["conversation_id"] == conversation])
    assert problem and problem[0]["status"] == "outside_window" and problem[0]["origin"] == "agent"
    assert rig.replies(sender, 1) == ["echo 1: first"]


def test_media_is_acknowledged_and_kept_with_the_conversation_encrypted(rig):
    sender = number()
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME" + secrets.token_hex(8)
    rig.text(sender, "", media_url=url)
    assert rig.replies(sender, 1) == ["echo 1: /share_media"]
    store = tables.ChannelStore(engine_of(rig), _keys(rig))
    conversation = tables.conversation_id(store.keys, sender)
    with store.engine.connect() as db:
        row = db.execute(sa.select(tables.inbound).where(
            tables.inbound.c.conversation_id == conversation)).first()
    assert url not in row.media_enc and url in store.keys.decrypt(row.media_enc)


def test_phone_numbers_and_texts_are_not_stored_in_clear(rig):
    sender = number()
    secret_text = "my boss took my passport " + secrets.token_hex(4)
    rig.text(sender, secret_text)
    rig.replies(sender, 1)
    engine = engine_of(rig)
    with engine.connect() as db:
        dump = " ".join(str(value) for table in tables.metadata.sorted_tables
                        for row in db.execute(sa.select(table)) for value in row)
    assert sender not in dump and sender.lstrip("+") not in dump
    assert secret_text not in dump


def _keys(rig: Rig):
    from bot.privacy import load_keys
    from bot.settings import Settings
    return load_keys(Settings.from_env(rig.env))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_reply_accepted_before_a_crash_is_sent_once_after_restart(tmp_path, kind):
    with new_database(kind) as url, Rig(home=tmp_path, database_url=url).running() as rig:
        sender = number()
        rig.faults(500, 10_000)
        rig.text(sender, "before the crash")
        engine = engine_of(rig)
        assert wait_until(lambda: _outbox_statuses(engine))
        rig.kill("channel")
        rig.faults(500, 0)
        assert rig.sent_to(sender) == []
        rig.start_channel()
        assert rig.replies(sender, 1, timeout=30) == ["echo 1: before the crash"]


def test_a_turn_interrupted_by_a_crash_is_processed_after_restart_and_answered_once(tmp_path):
    with Rig(home=tmp_path, delay=3.0).running() as rig:
        sender = number()
        rig.text(sender, "in flight")
        time.sleep(1.0)
        rig.kill("channel")
        rig.delay = 0.0
        rig.start_channel()
        assert rig.replies(sender, 1, timeout=30) == ["echo 1: in flight"]
