"""The tracker store keeps events encrypted at rest (SQLite and PostgreSQL) and reads them back;
the endpoints `hotline up` renders really load it (Rasa falls back to memory on a bad class path)."""
from __future__ import annotations

import asyncio
import json
import logging

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, MultiFernet
from rasa.core.tracker_store import create_tracker_store
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import read_endpoint_config

from bot.privacy import Keys
from bot.settings import Settings, write_endpoints
from bot.trackers import EncryptedSQLTrackerStore
from tests.test_channel import new_database

WORDS = "mi jefe tiene mi pasaporte y no me deja salir"
DOMAIN = Domain.from_dict({"slots": {"evidence": {"type": "any", "mappings": [{"type": "custom"}]}},
                           "intents": ["describe_situation"]})


def new_keys() -> Keys:
    return Keys(b"k" * 32, MultiFernet([Fernet(Fernet.generate_key())]))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    with new_database(request.param) as url:
        url = sa.engine.make_url(url or f"sqlite:///{tmp_path / 'trackers.db'}")
        trackers = EncryptedSQLTrackerStore(DOMAIN, dialect=url.drivername, host=url.host, port=url.port,
                                            db=url.database, username=url.username, keys=new_keys())
        yield trackers
        trackers.engine.dispose()


def conversation(sender: str) -> DialogueStateTracker:
    return DialogueStateTracker.from_events(sender, [
        ActionExecuted("action_listen"),
        UserUttered(WORDS, {"name": "describe_situation", "confidence": 0.9}),
        SlotSet("evidence", {"DOC": ["tiene mi pasaporte"]}),
    ], slots=DOMAIN.slots)


def stored_rows(store) -> list:
    with store.engine.connect() as db:
        return list(db.execute(sa.text("SELECT type_name, intent_name, data FROM events")))


def test_events_are_encrypted_in_the_database_and_read_back(store):
    asyncio.run(store.save(conversation("sms-abc")))
    rows = stored_rows(store)
    assert len(rows) == 3
    assert all("pasaporte" not in row.data and not row.data.startswith("{") for row in rows)
    assert [row.intent_name for row in rows if row.type_name == "user"] == ["describe_situation"]
    tracker = asyncio.run(store.retrieve("sms-abc"))
    assert tracker.latest_message.text == WORDS
    assert tracker.get_slot("evidence") == {"DOC": ["tiene mi pasaporte"]}


def test_later_turns_append_only_the_new_events(store):
    tracker = conversation("sms-abc")
    asyncio.run(store.save(tracker))
    tracker.update(UserUttered("gracias", {"name": "thank", "confidence": 1.0}))
    asyncio.run(store.save(tracker))
    assert len(stored_rows(store)) == 4
    texts = [e.text for e in asyncio.run(store.retrieve("sms-abc")).events if isinstance(e, UserUttered)]
    assert texts == [WORDS, "gracias"]


def test_rows_from_before_encryption_are_still_read(store):
    with store.engine.begin() as db:
        db.execute(sa.text("INSERT INTO events (sender_id, type_name, timestamp, data) VALUES "
                           "('sms-old', 'user', 1.0, :data)"),
                   {"data": json.dumps(UserUttered("old words", timestamp=1.0).as_dict())})
    assert asyncio.run(store.retrieve("sms-old")).latest_message.text == "old words"


def test_a_row_no_key_opens_is_left_out_with_a_warning_without_content(store, caplog):
    asyncio.run(store.save(conversation("sms-abc")))
    foreign = Keys(b"k" * 32, MultiFernet([Fernet(Fernet.generate_key())]))
    with store.engine.begin() as db:
        db.execute(sa.text("INSERT INTO events (sender_id, type_name, timestamp, data) VALUES "
                           "('sms-abc', 'user', 9e9, :data)"),
                   {"data": foreign.encrypt(json.dumps(UserUttered("lost", timestamp=9e9).as_dict()))})
    with caplog.at_level(logging.WARNING, logger="bot.trackers"):
        tracker = asyncio.run(store.retrieve("sms-abc"))
    assert tracker.latest_message.text == WORDS
    assert "could not be decrypted" in caplog.text and "lost" not in caplog.text


def test_the_rendered_endpoints_load_the_encrypted_store(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("HOTLINE_DATA_KEYS", raising=False)
    monkeypatch.delenv("HOTLINE_HASH_KEY", raising=False)
    monkeypatch.setenv("HOTLINE_HOME", str(tmp_path))
    from bot.privacy import default_keys
    default_keys.cache_clear()
    try:
        endpoints = write_endpoints(Settings.from_env())
        store = create_tracker_store(read_endpoint_config(str(endpoints), "tracker_store"), DOMAIN)
        assert isinstance(store._tracker_store, EncryptedSQLTrackerStore)
        asyncio.run(store.save(conversation("sms-abc")))
        assert b"pasaporte" not in (tmp_path / "trackers.db").read_bytes()
    finally:
        default_keys.cache_clear()


def test_the_action_server_can_be_named_for_a_cluster(tmp_path):
    settings = Settings.from_env({"HOTLINE_HOME": str(tmp_path), "HOTLINE_ACTIONS_URL": "http://actions:5055/webhook"})
    assert read_endpoint_config(str(write_endpoints(settings)), "action_endpoint").url == "http://actions:5055/webhook"
    local = Settings.from_env({"HOTLINE_HOME": str(tmp_path), "HOTLINE_ACTIONS_PORT": "5999"})
    assert read_endpoint_config(str(write_endpoints(local)), "action_endpoint").url == "http://127.0.0.1:5999/webhook"
