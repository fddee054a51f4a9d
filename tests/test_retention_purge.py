"""The retention purge: a conversation quiet for longer than the period, with no active case and
nothing waiting, is erased from every table (proved by scanning every table and column, as for
"delete"); anything still going on is left whole. In the test process, from ``hotline purge`` (a
real process), and from the Rasa server's job; SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
import sqlalchemy as sa

from bot import PROJECT_ROOT
from bot.agents.handoff import CLOSED, HELD, OPEN, RETURNED
from bot.agents.tables import audit_log, handoff_requests
from bot.channels import store as tables
from bot.retention import KEPT, Eraser, Purger, retention_days
from tests.support.privacy_scan import CONVERSATION_TABLES, census, scan, unclassified
from tests.support.retention_world import Texter, age, world as storage

DAYS = 30
#: The tables whose rows each hold something of the conversation (one purged row, one census row).
COUNTED = CONVERSATION_TABLES - {"deletion_requests"}


@pytest.fixture(params=["sqlite", "postgresql"])
def hotline(request, tmp_path):
    with storage(request.param, tmp_path) as made:
        yield made


def purger(hotline, **kwargs) -> Purger:
    agent = hotline.agent()  # as in the Rasa server process
    return Purger(hotline.engine, agent.tracker_store, agent.lock_store, DAYS, **kwargs)


def purge(hotline, dry_run: bool = False):
    return asyncio.run(purger(hotline).purge(dry_run=dry_run))


def everything(hotline, *texters) -> list:
    return [census(hotline.engines(), hotline.keys, texter.trace) for texter in texters]


def test_a_quiet_closed_conversation_is_purged_from_every_table_and_nothing_else(hotline):
    old, recent, waiting = (Texter(hotline, number) for number in ("+15147200131", "+14168200142", "+16047200153"))
    old.whole_conversation(reopen=False)
    recent.whole_conversation(reopen=False)
    waiting.whole_conversation(reopen=True)  # its second case waits for an agent
    age(hotline, old.trace, DAYS + 1)
    age(hotline, waiting.trace, DAYS + 10)
    assert unclassified(hotline.engines()) == [], "a new table: make Texter reach it, or list it in privacy_scan"
    [before], kept_before = everything(hotline, old), everything(hotline, recent, waiting)
    assert set(before) >= COUNTED, COUNTED - set(before)
    with hotline.engine.connect() as db:
        audited = db.execute(sa.select(sa.func.count()).select_from(audit_log)
                             .where(audit_log.c.case_id.in_(old.cases))).scalar()

    counts = purge(hotline)

    assert (counts["conversations"], counts[KEPT]) == (1, 1)
    assert {table: counts[table] for table in COUNTED} == {table: len(before[table]) for table in COUNTED}
    hits = scan(hotline.engines(), hotline.keys, old.trace)
    assert hits == [], "\n".join(map(str, hits))
    assert everything(hotline, recent, waiting) == kept_before
    recordings = [(hotline.home / "recorded" / f"{texter.cases[0]}.yml").exists() for texter in (old, recent, waiting)]
    assert recordings == [False, True, True]
    with hotline.engine.connect() as db:  # the audit log keeps its rows (without content: the scan found none)
        assert db.execute(sa.select(sa.func.count()).select_from(audit_log)
                          .where(audit_log.c.case_id.in_(old.cases))).scalar() == audited == 3


@pytest.mark.parametrize("status", [OPEN, HELD, RETURNED, CLOSED])
def test_only_a_closed_case_lets_an_old_conversation_go(hotline, status):
    texter = Texter(hotline, "+15147200164")
    texter.says("my boss keeps my passport", ["Thank you for writing."])
    texter.send_all()
    case = texter.escalates()
    with hotline.engine.begin() as db:
        db.execute(handoff_requests.update().where(handoff_requests.c.id == case).values(status=status))
    age(hotline, texter.trace, DAYS + 100)
    [before] = everything(hotline, texter)
    counts = purge(hotline)
    if status == CLOSED:
        assert counts["conversations"] == 1 and scan(hotline.engines(), hotline.keys, texter.trace) == []
    else:
        assert counts[KEPT] == 1 and everything(hotline, texter) == [before]


def test_a_message_still_to_send_keeps_an_old_conversation(hotline):
    texter = Texter(hotline, "+15147200175")
    texter.whole_conversation(reopen=False)
    hotline.channel.enqueue(texter.conv, "agent:follow-up", "agent", texter.text("Are you safe now?"))
    age(hotline, texter.trace, DAYS + 5)
    [before] = everything(hotline, texter)
    counts = purge(hotline)
    assert (counts["conversations"], counts[KEPT]) == (0, 1)
    assert everything(hotline, texter) == [before]
    texter.send_all()  # sent: now nothing holds it, and the sending itself is old news in 30 days
    age(hotline, texter.trace, DAYS + 1)
    assert purge(hotline)["conversations"] == 1
    assert scan(hotline.engines(), hotline.keys, texter.trace) == []


def test_a_dry_run_deletes_nothing_and_counts_what_the_purge_then_deletes(hotline):
    old, recent = Texter(hotline, "+15147200186"), Texter(hotline, "+14168200197")
    old.whole_conversation(reopen=False)
    recent.whole_conversation(reopen=False)
    age(hotline, old.trace, DAYS + 1)
    before = everything(hotline, old, recent)
    planned = purge(hotline, dry_run=True)
    assert everything(hotline, old, recent) == before
    assert all(path.exists() for path in (hotline.home / "recorded").iterdir())
    assert planned["conversations"] == 1 and planned["events"] > 0
    assert purge(hotline) == planned


def test_the_purge_is_idempotent(hotline):
    old, recent = Texter(hotline, "+15147200208"), Texter(hotline, "+14168200219")
    old.whole_conversation(reopen=False)
    recent.whole_conversation(reopen=True)
    age(hotline, old.trace, DAYS + 1)
    assert purge(hotline)["conversations"] == 1
    after = everything(hotline, old, recent)
    again = purge(hotline)
    assert +again == {} and everything(hotline, old, recent) == after


def test_a_case_closed_long_ago_goes_while_its_conversation_goes_on(hotline):
    texter = Texter(hotline, "+15147200221")
    texter.whole_conversation(reopen=False)
    age(hotline, texter.trace, DAYS + 1)
    texter.says("hello again, it is me", ["Thank you for writing again."])
    texter.send_all()
    counts = purge(hotline)
    assert (counts["conversations"], counts["handoff_requests"], counts["case_notes"]) == (0, 1, 2)
    found = census(hotline.engines(), hotline.keys, texter.trace)
    assert "handoff_requests" not in found and "case_notes" not in found
    assert {"events", "channel_inbound", "channel_outbox", "channel_addresses"} <= set(found)


def test_an_opted_out_number_keeps_only_its_opt_out(hotline):
    texter = Texter(hotline, "+15147200232")
    texter.whole_conversation(reopen=False)
    hotline.channel.set_opted_out(texter.conv, True)
    age(hotline, texter.trace, DAYS + 1)
    assert purge(hotline)["conversations"] == 1
    hits = scan(hotline.engines(), hotline.keys, texter.trace)
    assert {(hit.table, hit.column) for hit in hits} == {("channel_addresses", "conversation_id")}
    assert hotline.channel.is_opted_out(texter.conv)
    with hotline.engine.connect() as db:
        row = db.execute(sa.select(tables.addresses)).one()
    assert (row.address_enc, row.hotline_number, row.last_inbound_at) == ("", "", row.opted_out_at)
    assert purge(hotline)["conversations"] == 0  # an emptied opt-out is nothing to purge


def test_a_conversation_only_rasa_has_is_purged_too(hotline):
    texter = Texter(hotline, "+15147200243")
    texter.says("hello", ["Hi, this is the hotline's automated assistant."])
    with hotline.engine.begin() as db:  # as a REST conversation: nothing in the channel's tables
        for table, where in tables.conversation_rows(texter.conv):
            db.execute(table.delete().where(where))
    age(hotline, texter.trace, DAYS + 1)
    assert set(census(hotline.engines(), hotline.keys, texter.trace)) == {"events"}
    assert purge(hotline)["conversations"] == 1
    assert scan(hotline.engines(), hotline.keys, texter.trace) == []


def test_the_rasa_servers_job_purges_every_hour_beside_deletion_requests(hotline):
    old, gone, kept = (Texter(hotline, number) for number in ("+15147200254", "+15147200265", "+14168200276"))
    for texter in (old, gone, kept):
        texter.whole_conversation(reopen=False)
    age(hotline, old.trace, DAYS + 1)
    hotline.requests.request(gone.conv)
    [kept_before] = everything(hotline, kept)
    eraser = Eraser(hotline.requests, hotline.agent(), hotline.channel, poll=0.05,
                    purger=purger(hotline, every=0.2, first_after=0.0))

    async def for_a_while() -> None:
        task = asyncio.create_task(eraser.run())
        await asyncio.sleep(1.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    asyncio.run(for_a_while())
    assert scan(hotline.engines(), hotline.keys, old.trace) == []
    assert {hit.table for hit in scan(hotline.engines(), hotline.keys, gone.trace)} == {"deletion_requests"}
    assert everything(hotline, kept) == [kept_before]


def run_purge(hotline, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot.cli", "purge", *args], cwd=PROJECT_ROOT,
                          env=env or hotline.env(), capture_output=True, text=True, timeout=300)


def test_hotline_purge_prints_counts_never_content(hotline):
    old, recent = Texter(hotline, "+15147200287"), Texter(hotline, "+14168200298")
    old.whole_conversation(reopen=False)
    recent.whole_conversation(reopen=False)
    age(hotline, old.trace, DAYS + 1)
    env = hotline.env()
    if hotline.url.startswith("postgresql"):  # the lock store the Rasa servers share
        env["REDIS_URL"] = "redis://127.0.0.1:6379/5"
    before = everything(hotline, old, recent)

    dry = run_purge(hotline, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert everything(hotline, old, recent) == before
    done = run_purge(hotline, env=env)
    assert done.returncode == 0, done.stderr[-2000:]

    assert "conversations quiet for more than 30 days would be purged: 1" in dry.stdout
    assert "dry run: nothing was deleted" in dry.stdout
    assert "conversations quiet for more than 30 days purged: 1" in done.stdout
    assert dry.stdout.replace("would be purged", "purged").replace("dry run: nothing was deleted\n", "") == done.stdout
    output = dry.stdout + dry.stderr + done.stdout + done.stderr
    for needle, what in {**old.trace.needles(), **recent.trace.needles()}.items():
        assert needle not in output, what
    assert scan(hotline.engines(), hotline.keys, old.trace) == []
    assert everything(hotline, recent) == before[1:]


def test_hotline_purge_says_what_to_do_with_a_wrong_period(hotline):
    zero = run_purge(hotline, "--days", "0")
    assert zero.returncode == 2 and "--days must be above 0" in zero.stderr
    bad = run_purge(hotline, env={**hotline.env(), "HOTLINE_RETENTION_DAYS": "thirty"})
    assert bad.returncode == 2 and "HOTLINE_RETENTION_DAYS must be a number of days above 0" in bad.stderr


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "30 days"])
def test_a_wrong_retention_period_is_refused(value):
    with pytest.raises(ValueError, match="unset it for the default of 30 days"):
        retention_days({"HOTLINE_RETENTION_DAYS": value})


def test_the_retention_period_defaults_to_30_days():
    assert retention_days({}) == 30 and retention_days({"HOTLINE_RETENTION_DAYS": "7.5"}) == 7.5


def test_hotline_purge_says_what_to_do_when_redis_is_down(hotline):
    old = Texter(hotline, "+15147200309")
    old.whole_conversation(reopen=False)
    age(hotline, old.trace, DAYS + 1)
    [before] = everything(hotline, old)
    down = run_purge(hotline, env={**hotline.env(), "REDIS_URL": "redis://127.0.0.1:1/0"})
    assert down.returncode == 2 and "Redis (REDIS_URL) are up" in down.stderr and "Traceback" not in down.stderr
    assert everything(hotline, old) == [before]  # nothing erased without Rasa's lock
