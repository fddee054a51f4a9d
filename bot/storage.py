"""The project's SQL database: SQLite under HOTLINE_HOME by default, PostgreSQL via DATABASE_URL.

The channel's inbox and outbox (and later the agent hub) live here, beside Rasa's tracker store.
SQLAlchemy core with the synchronous drivers Rasa already installs; async callers run queries in a
worker thread (``asyncio.to_thread``) so the event loop never waits on the database.
"""
from __future__ import annotations

import fcntl
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine

from bot.settings import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: PostgreSQL advisory lock id held while migrating (any fixed number, the same in every process).
MIGRATION_LOCK = 7_240_011
_migrated: set[str] = set()
_migrating = threading.Lock()


def database_url(settings: Settings) -> str:
    if not settings.database_url:
        settings.home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{settings.home / 'hotline.db'}"
    url = settings.database_url
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    return url


def _sqlite_pragmas(connection, _record) -> None:
    """WAL lets readers work while one writer writes; wait instead of failing when busy."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # SQLAlchemy 1.4 opens a new SQLite connection per use (NullPool): 1 ms of a 3 ms insert.
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                  poolclass=sa.pool.QueuePool, pool_size=4, max_overflow=4,
                                  future=True)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, future=True)


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema (Alembic, ``bot/migrations``), once per process.

    Every process that uses the tables calls this at start; a lock makes the processes that start
    together (Rasa, actions, hub) take turns, and the later ones find nothing left to do.
    """
    key = str(engine.url)
    with _migrating:
        if key in _migrated:
            return
        with _exclusive(engine) as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        _migrated.add(key)


@contextmanager
def _exclusive(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that no other process migrates at the same time."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK})
            yield connection
        return
    database = engine.url.database
    lock_path = Path(f"{database}.migrate.lock") if database and database != ":memory:" else None
    handle = open(lock_path, "a") if lock_path else None
    try:
        if handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
        with engine.begin() as connection:
            yield connection
    finally:
        if handle:
            handle.close()
