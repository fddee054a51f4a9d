"""Keys for protecting what texters send: a keyed hash for phone numbers, encryption for text at rest.

Phone numbers are looked up by an HMAC-SHA256 of the address (a plain hash of a phone number is
reversible by trying every number), and every stored text or address is encrypted with Fernet
(``cryptography``; AES-128-CBC + HMAC). Keys come from the environment, else from 0600 files
created once under ``HOTLINE_HOME``:

- ``HOTLINE_HASH_KEY`` / ``hash.key``: the HMAC key. Changing it orphans every stored lookup key.
- ``HOTLINE_DATA_KEYS`` / ``data.keys``: Fernet keys, comma-separated or one per line, newest
  first. Rotation: put a new key first and keep the old ones after it; new writes use the first
  key, reads try each (``MultiFernet``); ``hotline keys rotate`` re-encrypts every stored value
  (``rotate``), then drop the old key.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bot.settings import Settings


def _key_file(path: Path, make: callable) -> str:
    """Read a key file, creating it with 0600 rights if missing (safe when processes race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(make())
    return path.read_text().strip()


@dataclass(frozen=True)
class Keys:
    hash_key: bytes
    fernet: MultiFernet

    def address_key(self, address: str) -> str:
        """The lookup key of a phone or WhatsApp address: HMAC-SHA256, hex."""
        return hmac.new(self.hash_key, address.encode("utf-8"), hashlib.sha256).hexdigest()

    def encrypt(self, text: str | None) -> str | None:
        if text is None:
            return None
        return self.fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str | None) -> str | None:
        """Decrypt a stored value; an unreadable value (lost key) reads as ``None``, not a crash."""
        if token is None:
            return None
        try:
            return self.fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            return None


def load_keys(settings: Settings, env: dict[str, str] | None = None) -> Keys:
    env = dict(os.environ if env is None else env)
    hash_key = env.get("HOTLINE_HASH_KEY") or _key_file(
        settings.home / "hash.key", lambda: os.urandom(32).hex())
    data_keys = env.get("HOTLINE_DATA_KEYS") or _key_file(
        settings.home / "data.keys", lambda: Fernet.generate_key().decode("ascii"))
    fernets = [Fernet(key.strip()) for key in data_keys.replace(",", "\n").split() if key.strip()]
    return Keys(hash_key=hash_key.encode("utf-8"), fernet=MultiFernet(fernets))


@lru_cache(maxsize=1)
def default_keys() -> Keys:
    """The keys of this process's environment, loaded once."""
    return load_keys(Settings.from_env())


#: Encrypted columns are named ``*_enc``; Rasa's tracker ``events.data`` is encrypted too (bot/trackers.py).
TRACKER_COLUMN = ("events", "data")


def encrypted_columns(engine) -> list[tuple[str, str, str]]:
    """(table, primary key, column) of every encrypted column in the database, found by name so
    a table added later is rotated without a change here."""
    import sqlalchemy as sa

    inspector = sa.inspect(engine)
    found = []
    for table in inspector.get_table_names():
        key = inspector.get_pk_constraint(table)["constrained_columns"]
        for column in inspector.get_columns(table):
            if len(key) == 1 and (column["name"].endswith("_enc") or (table, column["name"]) == TRACKER_COLUMN):
                found.append((table, key[0], column["name"]))
    return found


def rotate(engine, keys: Keys, batch: int = 500) -> dict[str, int]:
    """Re-encrypt every encrypted value with the newest key (``MultiFernet.rotate``); returns the
    number of values rewritten per ``table.column``.

    Rotation: put a new key first in ``HOTLINE_DATA_KEYS`` (or ``data.keys``), restart, run
    ``hotline keys rotate``, then drop the old key. Processes keep running meanwhile: they already
    write with the new key, and a value rewritten here reads the same. Plain values (tracker rows
    from before encryption) are encrypted; a value no key opens is left as it is and counted under
    ``unreadable`` so the operator knows a key is missing.
    """
    import sqlalchemy as sa

    counts: dict[str, int] = {}
    for table_name, key, column in encrypted_columns(engine):
        table = sa.Table(table_name, sa.MetaData(), autoload_with=engine)
        last, rewritten = None, 0
        while True:
            query = sa.select(table.c[key], table.c[column]).where(table.c[column].isnot(None))
            if last is not None:
                query = query.where(table.c[key] > last)
            with engine.begin() as db:
                rows = db.execute(query.order_by(table.c[key]).limit(batch)).all()
                for row_key, value in rows:
                    new = _rotated(keys, value)
                    if new is None:
                        counts["unreadable"] = counts.get("unreadable", 0) + 1
                    elif new != value:
                        db.execute(table.update().where(table.c[key] == row_key).values({column: new}))
                        rewritten += 1
            if len(rows) < batch:
                break
            last = rows[-1][0]
        counts[f"{table_name}.{column}"] = rewritten
    return counts


def _rotated(keys: Keys, value: str) -> str | None:
    if value.startswith("{"):
        return keys.encrypt(value)
    try:
        return keys.fernet.rotate(value.encode("ascii")).decode("ascii")
    except InvalidToken:
        return None
