"""The project's SQL database: SQLite under HOTLINE_HOME by default, PostgreSQL via DATABASE_URL.

The channel's inbox and outbox (and later the agent hub) live here, beside Rasa's tracker store.
SQLAlchemy core with the synchronous drivers Rasa already installs; async callers run queries in a
worker thread (``asyncio.to_thread``) so the event loop never waits on the database.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.settings import Settings


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
