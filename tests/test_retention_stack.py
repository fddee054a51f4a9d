""""delete" through the whole stack (`hotline up`): a texter in danger gets a case, a supervisor
records it as a script, the texter deletes; the Rasa server's job erases the conversation after the
confirmation reached the phone, and a scan of every table and column of both databases (Fernet
values decrypted with the stack's keys) finds nothing of it but the deletion request's id."""
from __future__ import annotations

import random
import secrets
import subprocess
import sys

import pytest
import sqlalchemy as sa

from bot import PROJECT_ROOT
from bot.agents.tables import handoff_requests
from bot.channels.store import conversation_id
from bot.privacy import load_keys
from bot.retention import deletion_requests
from bot.settings import Settings
from bot.storage import database_url, make_engine
from tests.support.privacy_scan import Trace, census, scan
from tests.support.stack import sent_to, text_from, wait_for

pytestmark = pytest.mark.slow


def number() -> str:
    """A texter's number outside the fictional 555-01xx range (those are training texters)."""
    return f"+1514720{random.randint(0, 9999):04d}"


def cli(stack, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=PROJECT_ROOT, env={**stack["env"], **(env or {})},
                          capture_output=True, text=True, timeout=300)


def test_delete_through_the_stack_leaves_only_the_request(stacks, tmp_path):
    stack = stacks.running()
    settings = Settings.from_env(stack["env"])
    keys = load_keys(settings, stack["env"])
    engine = make_engine(database_url(settings))
    engines = [engine, make_engine(f"sqlite:///{settings.home / 'trackers.db'}")]
    gone, kept = number(), number()
    gone_conv, tag = conversation_id(keys, gone), secrets.token_hex(3)
    words = [f"he is outside with a knife, help me ({tag})", f"my boss took my passport ({tag})"]
    trace = Trace(gone_conv, keys.address_key(gone), gone, words)

    text_from(stack, gone, words[0])
    case = wait_for(lambda: _case(engine, gone_conv), timeout=90)
    assert case, "the texter in danger got no case"
    text_from(stack, gone, words[1])
    text_from(stack, kept, f"hello, I need help with my job ({secrets.token_hex(3)})")
    kept_trace = Trace(conversation_id(keys, kept), keys.address_key(kept), kept, [])
    assert wait_for(lambda: len(sent_to(stack, kept)) >= 1, timeout=90)
    supervisor = f"sup-{tag}"
    password = cli(stack, "agents", "add", supervisor, "--role", "supervisor").stdout.strip()
    script = tmp_path / "recorded" / "case.yml"
    recorded = cli(stack, "replay", "--record", case, "--out", str(script),
                   env={"HOTLINE_REPLAY_USER": supervisor, "HOTLINE_REPLAY_PASSWORD": password})
    assert recorded.returncode == 0 and script.exists(), recorded.stderr[-2000:]

    replies = len(wait_for(lambda: sent_to(stack, gone), timeout=60))
    text_from(stack, gone, "delete")
    assert wait_for(lambda: len(sent_to(stack, gone)) > replies, timeout=60)
    replies = len(sent_to(stack, gone))
    text_from(stack, gone, "yes")
    assert wait_for(lambda: _request_done(engine, gone_conv), timeout=120), \
        f"not carried out; requests {_requests(engine)}; the stack's log:\n" + "".join(_about_deletion(stack["lines"]))
    assert len(sent_to(stack, gone)) > replies, "erased before the confirmation was sent"

    hits = scan(engines, keys, trace)
    assert {(hit.table, hit.column) for hit in hits} == {("deletion_requests", "conversation_id")}, \
        "\n".join(map(str, hits))
    assert not script.exists()
    assert {"events", "channel_inbound", "channel_outbox", "channel_addresses"} <= set(census(engines, keys, kept_trace))
    for each in engines:
        each.dispose()


def _case(engine, conv: str) -> str | None:
    with engine.connect() as db:
        return db.execute(sa.select(handoff_requests.c.id).where(handoff_requests.c.conversation_id == conv)).scalar()


def _request_done(engine, conv: str) -> bool:
    with engine.connect() as db:
        return bool(db.execute(sa.select(deletion_requests.c.done_at).where(
            deletion_requests.c.conversation_id == conv, deletion_requests.c.done_at.isnot(None))).first())


def _requests(engine) -> list:
    with engine.connect() as db:
        return [tuple(row) for row in db.execute(sa.select(deletion_requests))]


def _about_deletion(lines: list[str]) -> list[str]:
    """The stack's log from the first line about deletion or retention on (what went wrong)."""
    start = next((i for i, line in enumerate(lines) if "deletion" in line or "retention" in line), len(lines))
    return lines[start:start + 60]
