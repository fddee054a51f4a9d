"""The channel store's rules, directly: dedupe, order, leases, delivery states, keyword parsing."""
from __future__ import annotations

import pytest

from bot.channels.inbound import BadRequest, INTENT_PREFIX, parse_incoming, turn_texts
from bot.channels.keywords import carrier_keywords
from bot.channels.store import ChannelStore, Inbound
from bot.privacy import load_keys
from bot.settings import Settings
from bot.storage import make_engine

SID = "SM" + "a" * 32


@pytest.fixture()
def store(tmp_path):
    keys = load_keys(Settings.from_env({"HOTLINE_HOME": str(tmp_path)}), env={})
    return ChannelStore(make_engine(f"sqlite:///{tmp_path / 'store.db'}"), keys, lease=5)


def sid(n: int) -> str:
    return f"SM{n:032x}"


def test_the_same_message_sid_is_accepted_once(store):
    assert store.accept(SID, "+15145550100", "+15145550000", "hi", [])[0]
    assert not store.accept(SID, "+15145550100", "+15145550000", "hi", [])[0]
    assert len(store.claim_inbound()) == 1


def test_only_the_oldest_waiting_message_of_a_conversation_is_claimed(store):
    for n in range(3):
        store.accept(sid(n), "+15145550100", "+15145550000", f"m{n}", [], now=100 + n)
    store.accept(sid(9), "+15145550199", "+15145550000", "other", [], now=100)
    first = store.claim_inbound(now=200)
    assert sorted(m.body for m in first) == ["m0", "other"]
    assert store.claim_inbound(now=200) == []
    store.complete(next(m for m in first if m.body == "m0"), ["r0"], now=201)
    assert [m.body for m in store.claim_inbound(now=202)] == ["m1"]


def test_a_claim_whose_process_died_is_taken_over_after_the_lease(store):
    store.accept(SID, "+15145550100", "+15145550000", "hi", [], now=100)
    assert store.claim_inbound(now=100)
    # The process died; its successor (a new worker id) polls. A live process renews its claims.
    restarted = ChannelStore(store.engine, store.keys, lease=5)
    assert restarted.claim_inbound(now=103) == []
    assert [m.body for m in restarted.claim_inbound(now=106)] == ["hi"]


def test_replies_of_a_turn_processed_twice_are_queued_once(store):
    store.accept(SID, "+15145550100", "+15145550000", "hi", [], now=100)
    message = store.claim_inbound(now=100)[0]
    assert store.complete(message, ["a", "b"]) == 2
    assert store.complete(message, ["a", "b"]) == 0
    assert [m.body for m in store.claim_outgoing()] == ["a"]


def test_outgoing_messages_leave_in_order_and_a_retry_holds_back_the_rest(store):
    store.accept(SID, "+15145550100", "+15145550000", "hi", [], now=100)
    store.complete(store.claim_inbound(now=100)[0], ["a", "b"])
    first = store.claim_outgoing()[0]
    store.mark_outgoing(first.id, "queued", retry_at=10**10)
    assert store.claim_outgoing() == []


def test_delivery_status_never_goes_backwards(store):
    store.accept(SID, "+15145550100", "+15145550000", "hi", [], now=100)
    store.complete(store.claim_inbound(now=100)[0], ["a"])
    message = store.claim_outgoing()[0]
    store.mark_outgoing(message.id, "accepted", "SM" + "b" * 32)
    assert store.record_delivery("SM" + "b" * 32, "delivered", None)
    assert store.record_delivery("SM" + "b" * 32, "sent", None)
    assert store.record_delivery("SM" + "c" * 32, "sent", None) is False
    with store.engine.connect() as db:
        from bot.channels.store import outbox
        assert db.execute(outbox.select()).first().status == "delivered"


def test_an_agent_message_needs_a_known_conversation(store):
    with pytest.raises(KeyError):
        store.enqueue("sms-unknown", "agent:1", "agent", "hello")


@pytest.mark.parametrize("body,kind", [
    ("STOP", "opt_out"), (" stop. ", "opt_out"), ("Arrêt", "opt_out"), ("arret!", "opt_out"),
    ("START", "opt_in"), ("unstop", "opt_in"), ("HELP", "help"), ("aide", "help"),
    ("stop hitting me", None), ("help me please", None), ("ayuda", None), ("", None),
])
def test_carrier_keywords_are_whole_messages_in_english_french_and_spanish(body, kind):
    assert carrier_keywords().classify(body) == kind


def test_spanish_opt_out_words_are_keywords():
    assert {carrier_keywords().classify(word) for word in ("PARAR", "baja")} == {"opt_out"}


def _inbound(body: str, media: list | None = None) -> Inbound:
    return Inbound(id=1, sid=SID, conversation_id="sms-x", channel="sms", body=body, media=media or [])


def test_texters_cannot_trigger_intents_with_a_slash():
    assert turn_texts(_inbound("/emergency{\"x\": 1}"), None) == ["emergency{\"x\": 1}"]
    assert INTENT_PREFIX.sub("", "  //stop") == "stop"


def test_media_becomes_an_acknowledged_turn_after_the_text():
    media = [{"url": "https://x/y", "content_type": "image/jpeg"}]
    assert turn_texts(_inbound("", media), None) == ["/share_media"]
    assert turn_texts(_inbound("my contract", media), None) == ["my contract", "/share_media"]
    assert turn_texts(_inbound("STOP"), "opt_out") == ["/stop"]


@pytest.mark.parametrize("params", [
    {"From": "+15145550100", "To": "+15145550000"},
    {"MessageSid": SID, "From": "not-a-number", "To": "+15145550000"},
    {"MessageSid": SID, "From": "+15145550100", "To": "+15145550000", "NumMedia": "many"},
])
def test_unusable_webhooks_are_bad_requests(params):
    with pytest.raises(BadRequest):
        parse_incoming(params)


def test_bodies_are_cleaned_and_bounded():
    message = parse_incoming({"MessageSid": SID, "From": "whatsapp:+15145550100",
                              "To": "whatsapp:+15145550000", "Body": "a\x00b" + "x" * 9000})
    assert message.body.startswith("ab") and len(message.body) == 5000


def test_the_whatsapp_window_is_known_for_the_agent(store):
    store.accept(SID, "whatsapp:+15145550100", "whatsapp:+15145550000", "hola", [], now=1000)
    store.accept(sid(2), "+15145550100", "+15145550000", "hola", [], now=1000)
    conversations = {m.channel: m.conversation_id for m in store.claim_inbound(now=1000)}
    assert store.window_remaining(conversations["whatsapp"], now=1000 + 3600) == 23 * 3600
    assert store.window_remaining(conversations["whatsapp"], now=1000 + 25 * 3600) == 0
    assert store.window_remaining(conversations["sms"], now=1000) is None
