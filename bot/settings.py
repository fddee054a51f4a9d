"""Runtime settings from the environment, and the Rasa endpoints they imply.

Secrets and addresses come from the environment only. The embedded default keeps everything under
``HOTLINE_HOME`` (default ``.hotline/`` in the project): SQLite trackers and generated secrets.
``DATABASE_URL`` (PostgreSQL) and ``REDIS_URL`` switch the tracker store and add a Redis lock store.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml

from bot import PROJECT_ROOT


@dataclass(frozen=True)
class Settings:
    home: Path
    models: Path
    bind: str
    rasa_port: int
    actions_port: int
    hub_port: int
    twilio_port: int
    database_url: str | None
    redis_url: str | None
    actions_url: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        return cls(
            home=Path(env.get("HOTLINE_HOME", PROJECT_ROOT / ".hotline")),
            models=Path(env.get("HOTLINE_MODELS", PROJECT_ROOT / "models")),
            bind=env.get("HOTLINE_BIND", "127.0.0.1"),
            rasa_port=int(env.get("HOTLINE_RASA_PORT", 5005)),
            actions_port=int(env.get("HOTLINE_ACTIONS_PORT", 5055)),
            hub_port=int(env.get("HOTLINE_HUB_PORT", 8080)),
            twilio_port=int(env.get("HOTLINE_TWILIO_PORT", 8099)),
            database_url=env.get("DATABASE_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            actions_url=env.get("HOTLINE_ACTIONS_URL") or None,
        )


def secret(settings: Settings, name: str, env_var: str) -> str:
    """A secret from the environment, else one generated once and kept in a 0600 file."""
    if os.environ.get(env_var):
        return os.environ[env_var]
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.home / f"{name}.secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


#: Rasa's SQL tracker store with the events encrypted at rest (``bot/trackers.py``).
TRACKER_STORE = "bot.trackers.EncryptedSQLTrackerStore"


def tracker_store(settings: Settings) -> dict:
    """The encrypted SQL tracker store: PostgreSQL from DATABASE_URL, else SQLite under HOTLINE_HOME."""
    if not settings.database_url:
        return {"type": TRACKER_STORE, "dialect": "sqlite", "db": str(settings.home / "trackers.db")}
    url = urlparse(settings.database_url)
    scheme = url.scheme.split("+")[0]
    dialect = "postgresql" if scheme in ("postgres", "postgresql") else scheme
    store = {"type": TRACKER_STORE, "dialect": dialect, "url": url.hostname or "localhost", "db": url.path.lstrip("/")}
    if url.port:
        store["port"] = url.port
    if url.username:
        store["username"] = unquote(url.username)
    if url.password:
        store["password"] = unquote(url.password)
    return store


def lock_store(settings: Settings) -> dict | None:
    """A Redis lock store from REDIS_URL, so several Rasa servers can share conversations."""
    if not settings.redis_url:
        return None
    url = urlparse(settings.redis_url)
    store = {"type": "redis", "url": url.hostname or "localhost", "port": url.port or 6379,
             "db": int(url.path.lstrip("/") or 0)}
    if url.password:
        store["password"] = unquote(url.password)
    return store


def action_url(settings: Settings) -> str:
    """The action server's webhook: ``HOTLINE_ACTIONS_URL`` where the actions run elsewhere (a
    Kubernetes Service in front of several replicas), else the local one ``hotline up`` starts."""
    return settings.actions_url or f"http://127.0.0.1:{settings.actions_port}/webhook"


def write_endpoints(settings: Settings) -> Path:
    """Render the Rasa endpoints file for these settings into HOTLINE_HOME; returns its path."""
    endpoints = {
        "action_endpoint": {"url": action_url(settings)},
        "tracker_store": tracker_store(settings),
    }
    lock = lock_store(settings)
    if lock:
        endpoints["lock_store"] = lock
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.home / "endpoints.yml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(endpoints, handle)
    return path
