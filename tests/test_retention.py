"""Deletion: a confirmed "delete" erases the conversation everywhere (tracker, channel messages,
every case and its notes, recorded scripts) after the confirmation has gone out, under Rasa's
lock; SQLite and PostgreSQL. The proof scans every table and column for what is left."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, MultiFernet
from rasa.core.lock_store import InMemoryLockStore
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot.agents.handoff import SqlHandoffQueue, handoff_requests
from bot.agents.tables import audit_log
from bot.channels import store as tables
from bot.channels.store import ChannelStore, conversation_id
from bot.privacy import Keys
from bot.retention import DeletionRequests, Eraser, deletion_requests
from bot.storage import make_engine
from tests.support.privacy_scan import CONVERSATION_TABLES, census, scan, unclassified
from tests.support.retention_world import Texter, world as storage
from tests.test_channel import new_database


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request, tmp_path):
    with new_database(request.param) as url:
        url = url or f"sqlite:///{tmp_path / 'hotline.db'}"
        engine = make_engine(url)
        keys = Keys(b"k" * 32, MultiFernet([Fernet(Fernet.generate_key())]))
        parsed = sa.engine.make_url(url)
        trackers = SQLTrackerStore(Domain.empty(), dialect=parsed.drivername, host=parsed.host,
                                   port=parsed.port, db=parsed.database, username=parsed.username)
        yield SimpleNamespace(engine=engine, keys=keys, trackers=trackers,
                              channel=ChannelStore(engine, keys, 30), requests=DeletionRequests(engine),
                              queue=SqlHandoffQueue(engine, keys))
        trackers.engine.dispose()
        engine.dispose()


def converse(world, conv: str, address: str) -> None:
    asyncio.run(world.trackers.save(DialogueStateTracker.from_events(conv, [UserUttered("my boss has my passport")])))
    world.channel.accept(f"SM{conv[-8:]:0>32}"[:34], address, "+15145550000", "my boss has my passport", [])
    world.queue.escalate(conv, {"risk": "medium", "transcript": []}, "consent")


def count(world, table, conv: str) -> int:
    with world.engine.connect() as db:
        return db.execute(sa.select(sa.func.count()).select_from(table).where(table.c.conversation_id == conv)).scalar()


def test_erasing_one_conversation_leaves_the_others(world):
    gone, kept = conversation_id(world.keys, "+15145550101"), conversation_id(world.keys, "+15145550102")
    converse(world, gone, "+15145550101")
    converse(world, kept, "+15145550102")
    for item in world.channel.claim_inbound(10):
        world.channel.complete(item, ["thanks"])
    for item in world.channel.claim_outgoing(10):
        world.channel.mark_outgoing(item.id, "sent", f"SM{item.id:032d}")
    world.requests.request(gone)
    agent = SimpleNamespace(lock_store=InMemoryLockStore(), tracker_store=world.trackers)
    [request] = world.requests.pending()
    assert asyncio.run(Eraser(world.requests, agent, world.channel).erase(request))
    assert asyncio.run(world.trackers.retrieve(gone)) is None
    assert asyncio.run(world.trackers.retrieve(kept)) is not None
    for table in (tables.inbound, tables.outbox, tables.addresses, handoff_requests):
        assert count(world, table, gone) == 0, table.name
        assert count(world, table, kept) == 1, table.name
    assert world.requests.pending() == []


def test_nothing_is_erased_while_the_confirmation_is_still_to_be_sent(world):
    conv = conversation_id(world.keys, "+15145550103")
    converse(world, conv, "+15145550103")
    world.requests.request(conv)
    agent = SimpleNamespace(lock_store=InMemoryLockStore(), tracker_store=world.trackers)
    [request] = world.requests.pending()
    assert not asyncio.run(Eraser(world.requests, agent, world.channel).erase(request))
    assert count(world, tables.inbound, conv) == 1 and world.requests.pending()


def test_an_opted_out_number_keeps_only_its_opt_out(world):
    conv = conversation_id(world.keys, "+15145550104")
    converse(world, conv, "+15145550104")
    world.channel.set_opted_out(conv, True)
    for item in world.channel.claim_inbound(10):
        world.channel.complete(item, [])
    world.requests.request(conv)
    agent = SimpleNamespace(lock_store=InMemoryLockStore(), tracker_store=world.trackers)
    [request] = world.requests.pending()
    assert asyncio.run(Eraser(world.requests, agent, world.channel).erase(request))
    assert world.channel.is_opted_out(conv)
    with world.engine.connect() as db:
        row = db.execute(sa.select(tables.addresses).where(tables.addresses.c.conversation_id == conv)).first()
    assert row.address_enc == ""


# The proof: a whole conversation in every table, erased; every table and column scanned -----------

@pytest.fixture(params=["sqlite", "postgresql"])
def hotline(request, tmp_path):
    with storage(request.param, tmp_path) as made:
        yield made


def outbox_bodies(hotline, conv: str) -> list[tuple[str, str]]:
    with hotline.engine.connect() as db:
        rows = db.execute(sa.select(tables.outbox.c.status, tables.outbox.c.body_enc)
                          .where(tables.outbox.c.conversation_id == conv).order_by(tables.outbox.c.id))
        return [(row.status, hotline.keys.decrypt(row.body_enc)) for row in rows]


def test_delete_erases_the_conversation_from_every_table_and_nothing_of_another(hotline):
    gone, kept = Texter(hotline, "+15147200111"), Texter(hotline, "+14168200122", whatsapp=True)
    gone.whole_conversation()
    kept.whole_conversation()
    gone.says("delete", ["Reply YES to delete this chat."])
    gone.send_all()
    late = gone.text("Are you still there?")  # an agent's reply queued while the texter confirms

    def confirming_turn() -> None:
        hotline.requests.request(gone.conv)  # what action_delete_data does
        hotline.channel.enqueue(gone.conv, "agent:late", "agent", late)
    gone.says("YES", ["This chat is being deleted."], during_turn=confirming_turn)
    engines, keys = hotline.engines(), hotline.keys
    assert unclassified(engines) == [], "a new table: make Texter reach it, or list it in privacy_scan"
    before = census(engines, keys, gone.trace)
    assert set(before) >= CONVERSATION_TABLES, CONVERSATION_TABLES - set(before)
    kept_before = census(engines, keys, kept.trace)
    assert set(kept_before) >= CONVERSATION_TABLES - {"deletion_requests"}
    files = {path: path.exists() for path in (hotline.home / "recorded").iterdir()}
    assert len(files) == 2 and all(files.values())

    eraser = Eraser(hotline.requests, hotline.agent(), hotline.channel)
    [request] = hotline.requests.pending()
    assert not asyncio.run(eraser.erase(request))  # the confirmation is not sent yet
    assert outbox_bodies(hotline, gone.conv)[-1] == ("queued", gone.trace.texts[-1])
    assert late not in [body for _, body in outbox_bodies(hotline, gone.conv)]  # dropped, never sent
    gone.send_all()
    assert asyncio.run(eraser.erase(request))

    hits = scan(engines, keys, gone.trace)
    assert {(hit.table, hit.column) for hit in hits} == {("deletion_requests", "conversation_id")}, \
        "\n".join(map(str, hits))
    with hotline.engine.connect() as db:
        [row] = db.execute(sa.select(deletion_requests)).all()
        audit = db.execute(sa.select(audit_log.c.action).where(audit_log.c.case_id.in_(gone.cases))).scalars().all()
    assert set(row._mapping) == {"id", "conversation_id", "requested_at", "done_at"} and row.done_at
    assert sorted(audit) == ["close", "note", "take"]  # kept, without content (the scan found none)
    assert [path.exists() for path in files] == [path.name.startswith(kept.cases[0]) for path in files]
    assert census(engines, keys, kept.trace) == kept_before
