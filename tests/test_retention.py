"""Deletion: a confirmed "delete" erases the conversation's tracker, channel messages and case,
after the confirmation has gone out, under Rasa's lock; SQLite and PostgreSQL."""
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
from bot.channels import store as tables
from bot.channels.store import ChannelStore, conversation_id
from bot.privacy import Keys
from bot.retention import DeletionRequests, Eraser
from bot.storage import make_engine
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
