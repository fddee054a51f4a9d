"""Schema migrations (Alembic, bot/migrations): a new database gets exactly the tables the code
uses, a database from before migrations keeps its rows, and processes starting together do not
trip over each other, on SQLite and PostgreSQL."""
from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from bot import PROJECT_ROOT
from bot.agents.tables import metadata as hub_metadata
from bot.channels.store import metadata as channel_metadata
from bot.retention import metadata as retention_metadata
from bot.storage import MIGRATIONS, make_engine, migrate
from tests.test_channel import new_database


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    with new_database(request.param) as url:
        yield url or f"sqlite:///{tmp_path / 'hotline.db'}"


def head() -> str:
    """The newest revision, so adding a migration does not mean editing these tests."""
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def code_metadata() -> sa.MetaData:
    combined = sa.MetaData()
    for metadata in (hub_metadata, channel_metadata, retention_metadata):
        for table in metadata.tables.values():
            table.to_metadata(combined)
    return combined


def test_a_new_database_has_exactly_the_tables_the_code_uses(url):
    engine = make_engine(url)
    migrate(engine)
    with engine.connect() as db:
        differences = compare_metadata(MigrationContext.configure(db), code_metadata())
    assert differences == []
    engine.dispose()


def _upgrade(engine, revision: str) -> None:
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_a_database_from_before_migrations_keeps_its_rows(url):
    engine = make_engine(url)
    _upgrade(engine, "0001")
    with engine.begin() as db:  # as the code before Alembic left it: tables, no version table
        db.execute(sa.text("DROP TABLE alembic_version"))
        db.execute(sa.text(
            "INSERT INTO handoff_requests (id, conversation_id, status, risk, priority, reason, summary_enc,"
            " created_at, updated_at) VALUES ('c1', 'sms-x', 'waiting', 'high', 3, 'consent', 'enc', 1, 1)"))
    migrate(make_engine(url))
    with engine.connect() as db:
        row = db.execute(sa.text("SELECT id, risk, training, assigned_to FROM handoff_requests")).one()
        version = db.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert (row.id, row.risk, bool(row.training), row.assigned_to) == ("c1", "high", False, None)
    assert version == head()
    engine.dispose()


def test_processes_starting_together_migrate_once(url):
    code = f"from bot.storage import make_engine, migrate; migrate(make_engine({url!r}))"
    processes = [subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT, stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
    results = [(process.wait(120), process.stderr.read()) for process in processes]
    assert all(code == 0 for code, _ in results), results
    engine = make_engine(url)
    with engine.connect() as db:
        assert db.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [head()]
    engine.dispose()
