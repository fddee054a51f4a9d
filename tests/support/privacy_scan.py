"""Proof that a conversation is gone: every table and every column of the project's database and of
Rasa's tracker store, read through SQLAlchemy's inspector (so a table added later is scanned
without anyone listing it), searched for what identifies the conversation or repeats its words.
Every Fernet token found is decrypted with the test's keys and its plaintext searched too; a token
the keys cannot open fails the scan, since nothing could be proved about it."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import sqlalchemy as sa
from cryptography.fernet import InvalidToken
from sqlalchemy.engine import Engine

from bot.privacy import Keys

FERNET = re.compile(r"gAAAAA[A-Za-z0-9_\-]{20,}={0,2}")

#: Tables that never hold anything of a conversation (accounts, sessions, schema version, the
#: audit log's who-did-what-to-which-case-id). Scanned all the same; a table in neither this list
#: nor ``CONVERSATION_TABLES`` fails ``unclassified`` until someone decides which it is.
NO_CONVERSATION_DATA = {"agents", "agent_sessions", "audit_log", "login_failures", "alembic_version"}
#: Tables a conversation's data reaches (the proof's conversations reach every one of them).
CONVERSATION_TABLES = {"events", "channel_addresses", "channel_inbound", "channel_outbox",
                       "channel_delivery_events", "handoff_requests", "case_notes", "recorded_scripts",
                       "deletion_requests"}


@dataclass
class Trace:
    """What identifies one conversation or repeats its words."""
    conversation_id: str
    address_hmac: str
    number: str
    texts: list[str]
    sids: list[str] = field(default_factory=list)

    def needles(self) -> dict[str, str]:
        """Search strings, each with what it stands for (texts also as JSON escapes them)."""
        found = {self.conversation_id: "conversation id", self.address_hmac: "address HMAC",
                 self.address_hmac[:40]: "address HMAC (as in the id)", self.number: "phone number",
                 self.number.lstrip("+")[1:]: "phone number (national)"}
        for text in self.texts:
            found[text] = "message text"
            found[json.dumps(text)[1:-1]] = "message text (JSON-escaped)"
        for sid in self.sids:
            found[sid] = "Twilio message id"
        return found


@dataclass(frozen=True)
class Hit:
    table: str
    column: str
    row: tuple
    what: str
    encrypted: bool

    def __str__(self) -> str:
        return f"{self.table}.{self.column}: {self.what}{' (inside a Fernet token)' if self.encrypted else ''}"


def tables(engines: list[Engine]) -> list[tuple[Engine, str]]:
    """Every table of every database, as the inspector sees them now."""
    return [(engine, name) for engine in engines for name in sa.inspect(engine).get_table_names()]


def unclassified(engines: list[Engine]) -> list[str]:
    return sorted(name for _, name in tables(engines) if name not in NO_CONVERSATION_DATA | CONVERSATION_TABLES)


def rows(engine: Engine, name: str) -> tuple[list[str], list[tuple]]:
    table = sa.Table(name, sa.MetaData(), autoload_with=engine)
    with engine.connect() as db:
        return [c.name for c in table.columns], [tuple(row) for row in db.execute(sa.select(table))]


def _texts(value, keys: Keys) -> list[tuple[str, bool]]:
    """A value as text, and the plaintext of every Fernet token inside it (recursively)."""
    if value is None:
        return []
    text = value.decode("utf-8", "replace") if isinstance(value, (bytes, memoryview)) else str(value)
    found = [(text, False)]
    for token in FERNET.findall(text):
        try:
            plain = keys.fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken as error:
            raise AssertionError(f"a Fernet token the test's keys cannot open: {token[:16]}...") from error
        found += [(inner, True) for inner, _ in _texts(plain, keys)]
    return found


def scan(engines: list[Engine], keys: Keys, trace: Trace) -> list[Hit]:
    """Every place where the conversation shows, in every column of every row of every table."""
    needles = trace.needles()
    hits = []
    for engine, name in tables(engines):
        columns, table_rows = rows(engine, name)
        for row in table_rows:
            for column, value in zip(columns, row):
                for text, encrypted in _texts(value, keys):
                    hits += [Hit(name, column, row, what, encrypted) for needle, what in needles.items()
                             if needle and needle in text]
    return hits


def census(engines: list[Engine], keys: Keys, trace: Trace) -> dict[str, set[tuple]]:
    """The rows, whole, that hold something of the conversation, per table."""
    found: dict[str, set[tuple]] = {}
    for hit in scan(engines, keys, trace):
        found.setdefault(hit.table, set()).add(hit.row)
    return found
