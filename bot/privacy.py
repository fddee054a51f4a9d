"""Keys for protecting what texters send: a keyed hash for phone numbers, encryption for text at rest.

Phone numbers are looked up by an HMAC-SHA256 of the address (a plain hash of a phone number is
reversible by trying every number), and every stored text or address is encrypted with Fernet
(``cryptography``; AES-128-CBC + HMAC). Keys come from the environment, else from 0600 files
created once under ``HOTLINE_HOME``:

- ``HOTLINE_HASH_KEY`` / ``hash.key``: the HMAC key. Changing it orphans every stored lookup key.
- ``HOTLINE_DATA_KEYS`` / ``data.keys``: Fernet keys, comma-separated or one per line, newest
  first. Rotation: put a new key first and keep the old ones after it; new writes use the first
  key, reads try each (``MultiFernet``); re-encrypt old rows, then drop the old key.
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
