"""Scale-out the Rasa way (issue 8, item 5): two Rasa servers behind a round-robin balancer, sharing
a PostgreSQL tracker store and channel tables and a Redis lock store. Each conversation's messages
must be answered exactly once and in order although consecutive ones land on different servers,
and a MessageSid delivered again (to the other server, or to both at once) is processed once.

Real processes (``bench.cluster``): one action server, two ``rasa run`` replicas, the Twilio
stand-in posting its signed webhooks to ``bench.balancer``; a fresh PostgreSQL database and a Redis
database index of their own, both emptied before and after.
"""
from __future__ import annotations

import json
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, MultiFernet
from twilio.request_validator import RequestValidator

from bench.cluster import ACCOUNT, HOTLINE, Cluster, flush_redis, fresh_database
from bench.ledger import Sent, audit, tracker_sids
from bot import DATA_DIR
from bot.channels.config import WEBHOOK_PATH
from bot.channels.store import WAITING, UNSENT, ChannelStore, conversation_id, inbound, outbox
from bot.privacy import Keys
from bot.replay.script import load_script
from bot.storage import make_engine
from tests.channel_rig import Rig, http, wait_until
from tests.conftest import free_port

#: A Redis database index no other test uses (the lock store's keys are flushed before and after).
REDIS_URL = "redis://127.0.0.1:6379/11"
#: Seven texters, an odd number: sent round by round through a balancer that alternates webhooks,
#: each texter's consecutive messages land on alternate servers (with six, each would stay on one).
LANGUAGES = ("en", "es", "fr", "ar", "zh", "uk", "hi")
MESSAGES = 8
#: How long the dispatchers need to notice stored work they were not woken for (polls every 0.5 s).
QUIET = 3.0


# Two replicas' stores on one database: the claim logic alone, fast, SQLite and PostgreSQL ----------

LEASE = 30.0


@pytest.fixture(params=["sqlite", "postgresql"])
def replicas(request, tmp_path):
    """Two ChannelStores on one database, as two Rasa replicas have (each its own worker id)."""
    keys = Keys(hash_key=b"scale-out-test", fernet=MultiFernet([Fernet(Fernet.generate_key())]))
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hotline.db'}"
        yield [ChannelStore(make_engine(url), keys, LEASE) for _ in range(2)]
        return
    with fresh_database() as url:
        stores = [ChannelStore(make_engine(url), keys, LEASE) for _ in range(2)]
        yield stores
        for store in stores:
            store.engine.dispose()


def test_a_conversation_delivered_to_both_replicas_is_worked_one_message_at_a_time(replicas):
    first, second = replicas
    for index in range(4):
        replicas[index % 2].accept(f"SM{index:032x}", "+15145550111", HOTLINE, f"m{index}", [])
    taken = second.claim_inbound()
    assert [message.body for message in taken] == ["m0"]
    assert first.claim_inbound() == [] and second.claim_inbound() == []
    second.complete(taken[0], ["reply"])
    taken = first.claim_inbound()
    assert [message.body for message in taken] == ["m1"]


def at_once(replicas, sids: list[str], address: str) -> list[bool]:
    """Both replicas store a message from ``address`` at the same moment; whether each was new."""
    barrier = threading.Barrier(2)

    def store(index: int) -> bool:
        barrier.wait()
        return replicas[index].accept(sids[index], address, HOTLINE, f"message {index}", [])[0]

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(store, (0, 1)))


def test_a_new_texters_first_messages_stored_by_both_replicas_at_once_are_both_kept(replicas):
    for attempt in range(20):
        sids = [f"SM{attempt:016x}{index:016x}" for index in (0, 1)]
        assert at_once(replicas, sids, f"+1514556{attempt:04d}") == [True, True]


def test_the_same_message_stored_by_both_replicas_at_once_is_kept_once(replicas):
    for attempt in range(20):
        sid = f"SM{attempt:032x}"
        assert sorted(at_once(replicas, [sid, sid], f"+1514557{attempt:04d}")) == [False, True]
    with replicas[0].engine.connect() as db:
        assert db.execute(sa.select(sa.func.count()).select_from(inbound)).scalar() == 20


def test_a_live_replicas_claim_is_renewed_and_a_dead_ones_taken_over(replicas):
    live, other = replicas
    start = time.time()
    live.accept("SM" + "1" * 32, "+15145550112", HOTLINE, "slow turn", [], now=start)
    assert len(live.claim_inbound(now=start)) == 1
    live.claim_inbound(0, now=start + LEASE / 2)  # still polling: alive
    assert other.claim_inbound(now=start + LEASE * 1.2) == []
    # The replica stops polling (it died): the other takes the work over once the lease has run out.
    taken = other.claim_inbound(now=start + LEASE * 1.6)
    assert [message.body for message in taken] == ["slow turn"]


def test_two_replicas_claiming_at_once_keep_each_conversation_in_order(replicas):
    """Both replicas claim and complete as fast as they can, in threads (real concurrent
    transactions on PostgreSQL): every message is worked once, each conversation in order."""
    conversations = [f"+1514555{n:04d}" for n in range(12)]
    for index in range(10):
        for number, address in enumerate(conversations):
            replicas[(index + number) % 2].accept(f"SM{index:016x}{number:016x}", address, HOTLINE, str(index), [])
    worked: list[tuple[str, int]] = []
    lock = threading.Lock()

    def work(store: ChannelStore) -> None:
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 2.0:
            messages = store.claim_inbound(limit=4)
            if messages:
                idle_since = time.monotonic()
            for message in messages:
                with lock:
                    worked.append((message.conversation_id, int(message.body)))
                store.complete(message, [])

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(work, replicas))
    assert len(worked) == len(set(worked)) == 120
    for conversation in {conversation for conversation, _ in worked}:
        assert [index for conv, index in worked if conv == conversation] == list(range(10))


# Two real Rasa replicas behind a balancer -----------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(trained_model, tmp_path_factory):
    flush_redis(REDIS_URL)
    with fresh_database() as database_url:
        cluster = Cluster(Path(trained_model), tmp_path_factory.mktemp("scale_out"), database_url,
                          REDIS_URL, replicas=2)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
            flush_redis(REDIS_URL)


@pytest.fixture(scope="module")
def engine(cluster):
    engine = make_engine(cluster.database_url)
    yield engine
    engine.dispose()


def texts(language: str) -> list[str]:
    script = load_script(DATA_DIR / "replay" / "golden" / language / "help_and_handoff.yml")
    return [turn.texter for turn in script.turns[:MESSAGES]]


def send(cluster: Cluster, number: str, body: str) -> Sent:
    """A texter's SMS: the stand-in signs it and posts it to the balancer, as Twilio would."""
    at = time.time()
    status, reply = http("POST", cluster.url("standin", "/emulator/send"),
                         json.dumps({"from": number, "channel": "sms", "body": body}).encode(),
                         {"Content-Type": "application/json"}, timeout=30)
    answer = json.loads(reply)
    return Sent(number, answer.get("sid", ""), at, status == 200 and answer.get("webhook_status") == 200)


def get_json(url: str):
    status, body = http("GET", url, timeout=30)
    assert status == 200, (url.split("?")[0], status)
    return json.loads(body)


def tracker(cluster: Cluster, number: str) -> dict:
    conversation = urllib.parse.quote(conversation_id(cluster.keys, number), safe="")
    return get_json(cluster.url("balancer", f"/conversations/{conversation}/tracker?token={cluster.token}"))


def phones(cluster: Cluster) -> list[dict]:
    return get_json(cluster.url("standin", "/emulator/messages"))


def drained(engine, sids: list[str]) -> bool:
    """Every message's turn is over and nothing is left to send."""
    with engine.connect() as db:
        waiting = db.execute(sa.select(sa.func.count()).select_from(inbound).where(
            inbound.c.sid.in_(sids), inbound.c.status.in_(WAITING))).scalar()
        stored = db.execute(sa.select(sa.func.count()).select_from(inbound).where(
            inbound.c.sid.in_(sids))).scalar()
        unsent = db.execute(sa.select(sa.func.count()).select_from(outbox).where(
            outbox.c.status.in_(UNSENT))).scalar()
    return stored == len(sids) and not waiting and not unsent


def reply_bodies(cluster: Cluster, engine, number: str) -> list[str]:
    """The replies queued for a texter, decrypted, in the order they were queued."""
    conversation = conversation_id(cluster.keys, number)
    with engine.connect() as db:
        rows = db.execute(sa.select(outbox.c.body_enc).where(outbox.c.conversation_id == conversation)
                          .order_by(outbox.c.id)).all()
    return [cluster.keys.decrypt(row.body_enc) for row in rows]


@pytest.fixture(scope="module")
def conversations(cluster, engine):
    """Seven texters, eight messages each, sent quickly round by round without waiting for replies;
    returns what was sent per number once every turn is over and every reply sent."""
    numbers = {language: f"+1438555{index:04d}" for index, language in enumerate(LANGUAGES, 1)}
    scripts = {language: texts(language) for language in LANGUAGES}
    started = time.monotonic()
    sent: dict[str, list[Sent]] = {number: [] for number in numbers.values()}
    for round_ in range(MESSAGES):
        for language, number in numbers.items():
            sent[number].append(send(cluster, number, scripts[language][round_]))
    sending = time.monotonic() - started
    sids = [message.sid for messages in sent.values() for message in messages]
    assert wait_until(lambda: drained(engine, sids), timeout=300, every=0.5), "turns still waiting after 5 min"
    print(f"\n{len(sids)} messages from {len(numbers)} texters sent in {sending:.1f} s; all answered "
          f"{time.monotonic() - started:.1f} s after the first")
    return {"sent": sent, "scripts": scripts, "numbers": numbers}


@pytest.mark.slow
def test_consecutive_messages_of_each_conversation_land_on_both_servers(cluster, conversations):
    routes = get_json(cluster.url("balancer", "/balancer/stats"))["routes"]
    for number, messages in conversations["sent"].items():
        servers = [routes[message.sid] for message in messages]
        assert all(a != b for a, b in zip(servers, servers[1:])), (number, servers)


@pytest.mark.slow
def test_every_message_answered_once_and_in_order(cluster, engine, conversations):
    sent = [message for messages in conversations["sent"].values() for message in messages]
    assert all(message.accepted for message in sent)
    trackers = {number: tracker(cluster, number) for number in conversations["sent"]}
    books = audit(sent, engine, phones(cluster), trackers)
    assert (books.accepted, books.answered, books.lost) == (len(sent), len(sent), [])
    assert (books.resent, books.turns_twice, books.out_of_order) == (0, 0, [])
    for number, messages in conversations["sent"].items():
        # Rasa's tracker holds the texter's messages exactly in the order they were sent.
        assert tracker_sids(trackers[number]) == [message.sid for message in messages]


@pytest.mark.slow
def test_the_bot_answers_each_message_before_the_next_is_read(cluster, conversations):
    for number in conversations["sent"]:
        events = tracker(cluster, number)["events"]
        kinds = [event["event"] for event in events if event["event"] in ("user", "bot")]
        turns = "".join("u" if kind == "user" else "b" for kind in kinds)
        assert turns.count("u") == MESSAGES and "uu" not in turns and turns.endswith("b"), (number, turns)


@pytest.mark.slow
def test_each_texter_receives_exactly_the_queued_replies_in_order(cluster, engine, conversations):
    delivered = phones(cluster)
    for number in conversations["sent"]:
        received = [m["body"] for m in delivered if m["to"] == number and m["direction"] == "outbound-api"]
        assert received == reply_bodies(cluster, engine, number)
        assert len(received) >= MESSAGES


def signed_webhook(cluster: Cluster, sid: str, number: str, body: str) -> tuple[bytes, dict[str, str]]:
    """Twilio's webhook for one message, signed for the public URL (the balancer) as Twilio signs it."""
    params = {"MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid, "AccountSid": ACCOUNT,
              "From": number, "To": HOTLINE, "Body": body, "NumMedia": "0", "SmsStatus": "received",
              "ApiVersion": "2010-04-01"}
    signature = RequestValidator(cluster.twilio_token).compute_signature(cluster.public_url + WEBHOOK_PATH, params)
    return urllib.parse.urlencode(params).encode(), {
        "X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}


def post_to(cluster: Cluster, replica: int, payload: tuple[bytes, dict[str, str]]) -> int:
    name = cluster.rasa_names[replica]
    return http("POST", cluster.url(name, WEBHOOK_PATH), payload[0], payload[1])[0]


def outbound_to(cluster: Cluster, number: str) -> int:
    return sum(1 for m in phones(cluster) if m["to"] == number and m["direction"] == "outbound-api")


@pytest.mark.slow
def test_a_message_delivered_again_to_the_other_server_is_not_processed_again(cluster, conversations):
    routes = get_json(cluster.url("balancer", "/balancer/stats"))["routes"]
    number = conversations["numbers"]["es"]
    before_events = len(tracker(cluster, number)["events"])
    before_replies = outbound_to(cluster, number)
    for index, message in enumerate(conversations["sent"][number]):
        other = 1 - routes[message.sid]
        payload = signed_webhook(cluster, message.sid, number, conversations["scripts"]["es"][index])
        assert post_to(cluster, other, payload) == 200
    time.sleep(QUIET)
    assert len(tracker(cluster, number)["events"]) == before_events
    assert outbound_to(cluster, number) == before_replies


@pytest.mark.slow
def test_a_message_delivered_to_both_servers_at_once_is_processed_once(cluster, engine):
    number = "+14385559999"
    sid = "SM" + "ab" * 16
    payload = signed_webhook(cluster, sid, number, "hi i need help please")
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda replica=replica: statuses.append(post_to(cluster, replica, payload)))
               for replica in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200, 200]
    assert wait_until(lambda: drained(engine, [sid]) and outbound_to(cluster, number), timeout=120, every=0.3)
    time.sleep(QUIET)
    assert tracker_sids(tracker(cluster, number)) == [sid]
    assert outbound_to(cluster, number) == len(reply_bodies(cluster, engine, number)) >= 1


@pytest.mark.slow
def test_a_turn_longer_than_the_claim_lease_runs_once(tmp_path):
    """A live process keeps its claim: a turn slower than ``HOTLINE_CLAIM_LEASE`` (2 s here; the
    echo dialogue takes 5 s) is not taken over and run again by the process's own next poll. The
    echo dialogue numbers the turns it ran per texter: the next reply shows how many ran."""
    with Rig(home=tmp_path, delay=5.0).running() as rig:
        texter = "+14385550777"
        rig.text(texter, "slow")
        assert rig.replies(texter, 1, timeout=30) == ["echo 1: slow"]
        rig.text(texter, "next")
        assert rig.replies(texter, 2, timeout=30) == ["echo 1: slow", "echo 2: next"]


@pytest.mark.slow
def test_a_replica_with_every_turn_slot_busy_keeps_its_claims(tmp_path):
    """Replica 1 runs two slow turns (15 s) with its two slots full, so it claims nothing new; a
    second replica on the same database polls meanwhile. Replica 1's claims must stay renewed (2 s
    lease): no turn is taken over (the store counts a take-over as an attempt)."""
    rig = Rig(home=tmp_path, delay=15.0, extra_env={"HOTLINE_TURN_CONCURRENCY": "2"})
    texters = ["+14385550781", "+14385550782"]
    with rig.running():
        for texter in texters:
            rig.text(texter, "slow")
        engine = make_engine(f"sqlite:///{tmp_path / 'hotline.db'}")
        assert wait_until(lambda: in_progress(engine) == 2, timeout=5)
        rig.extra_env = {"HOTLINE_TURN_CONCURRENCY": "4"}
        second = free_port()
        rig._start("replica 2", [sys.executable, "-m", "tests.support.echo_channel", str(second), "0"],
                   f"http://127.0.0.1:{second}/webhooks/hotline_twilio/")
        for texter in texters:
            assert rig.replies(texter, 1, timeout=40) == ["echo 1: slow"]
        with engine.connect() as db:
            assert db.execute(sa.select(inbound.c.attempts)).scalars().all() == [0, 0]
        engine.dispose()


def in_progress(engine) -> int:
    with engine.connect() as db:
        return db.execute(sa.select(sa.func.count()).select_from(inbound)
                          .where(inbound.c.status == "processing")).scalar()
