"""Key rotation: after `hotline keys rotate` every stored value (channel tables, cases, Rasa's tracker)
opens with the new key alone, and a value no key opens is reported, not destroyed."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import sqlalchemy as sa
from cryptography.fernet import Fernet

from bot import PROJECT_ROOT
from bot.agents.handoff import SqlHandoffQueue
from bot.channels.store import ChannelStore, conversation_id
from bot.privacy import encrypted_columns, load_keys
from bot.settings import Settings
from bot.storage import database_url, make_engine
from bot.trackers import EncryptedSQLTrackerStore
from tests.test_trackers import DOMAIN, conversation

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def fill(home, data_keys: str) -> str:
    """A conversation stored with ``data_keys``: channel message, case, tracker; returns its id."""
    env = {"HOTLINE_HOME": str(home), "HOTLINE_DATA_KEYS": data_keys, "HOTLINE_HASH_KEY": "h" * 32}
    settings = Settings.from_env(env)
    keys = load_keys(settings, env)
    engine = make_engine(database_url(settings))
    conv = conversation_id(keys, "+15145550188")
    ChannelStore(engine, keys, 30).accept("SM" + "1" * 32, "+15145550188", "+15145550000", "he has my passport", [])
    SqlHandoffQueue(engine, keys).escalate(conv, {"risk": "high", "transcript": []}, "consent")
    trackers = EncryptedSQLTrackerStore(DOMAIN, dialect="sqlite", db=str(home / "trackers.db"), keys=keys)
    asyncio.run(trackers.save(conversation(conv)))
    trackers.engine.dispose()
    engine.dispose()
    return conv


def rotate(home, data_keys: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOTLINE_HOME": str(home), "HOTLINE_DATA_KEYS": data_keys, "HOTLINE_HASH_KEY": "h" * 32}
    env.pop("DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "bot.cli", "keys", "rotate"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_after_rotation_the_new_key_alone_opens_everything(tmp_path):
    conv = fill(tmp_path, OLD)
    result = rotate(tmp_path, f"{NEW},{OLD}")
    assert result.returncode == 0, result.stderr
    assert "events.data: 3 re-encrypted" in result.stdout
    assert "channel_inbound.body_enc: 1 re-encrypted" in result.stdout and "handoff_requests.summary_enc: 1" in result.stdout
    new_only = load_keys(Settings.from_env({"HOTLINE_HOME": str(tmp_path)}),
                         {"HOTLINE_DATA_KEYS": NEW, "HOTLINE_HASH_KEY": "h" * 32})
    for path in (tmp_path / "hotline.db", tmp_path / "trackers.db"):
        engine = make_engine(f"sqlite:///{path}")
        columns = encrypted_columns(engine)
        assert columns
        with engine.connect() as db:
            for table, _key, column in columns:
                for (value,) in db.execute(sa.text(f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL")):
                    assert new_only.decrypt(value) is not None, (table, column)
        engine.dispose()
    trackers = EncryptedSQLTrackerStore(DOMAIN, dialect="sqlite", db=str(tmp_path / "trackers.db"), keys=new_only)
    assert asyncio.run(trackers.retrieve(conv)).latest_message.text.startswith("mi jefe")


def test_a_missing_old_key_is_reported_and_nothing_is_lost(tmp_path):
    fill(tmp_path, OLD)
    result = rotate(tmp_path, NEW)
    assert result.returncode == 1 and "an old key is missing" in result.stderr
    assert rotate(tmp_path, f"{NEW},{OLD}").returncode == 0
