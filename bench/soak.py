"""A bounded soak: texters at a steady rate for minutes, a fault in the middle, then the books.

Run (the README's "Measured" has the figures of a 10-minute run)::

    .venv/bin/python bench/soak.py --model models/X.tar.gz --minutes 10 --rate 2 --texters 20 \\
        --fault kill-rasa

By default it starts the production layout in miniature (``bench.cluster``): two Rasa replicas
behind ``bench.balancer``, a fresh PostgreSQL database (``--admin-url``) for the tracker store and
the channel's tables, a Redis database index of its own (``--redis-url``, flushed) as Rasa's lock
store, one action server, the agent hub and the Twilio stand-in answering each API call after
``--latency`` seconds as Twilio does. ``--attach`` instead uses the stack the environment describes
(the one ``hotline up`` runs: ``HOTLINE_*`` ports, ``DATABASE_URL`` or ``HOTLINE_HOME``'s SQLite,
the API token), for ``--fault twilio-500`` or ``none``.

This process is the texters: ``--texters`` of them play the golden replay scripts (every one that
is answered at each turn: ``stop`` scripts are left out) through the stand-in, which signs each
message and posts it to the webhook as Twilio does; messages leave at ``--rate`` per second in
all, evenly spaced, whether or not the previous ones were answered. A texter whose script ends
starts a new conversation from a new number. Faults, at half time:

- ``kill-rasa``: ``kill -9`` of one Rasa replica while it works on a turn (it waits up to 20 s to
  see one of the messages the balancer gave it in progress), started again at once (it is back
  when its model is loaded); the balancer sends the webhooks to the other meanwhile, and the work
  the killed one had claimed is taken over when its lease ends (``HOTLINE_CLAIM_LEASE``, 30 s);
- ``twilio-500``: the stand-in answers every API call with HTTP 500 for ``--fault-seconds``;
- ``none``.

Then it waits until every accepted message's turn is over and every reply sent, and reports
(``bench.ledger``): messages sent, accepted, answered, lost, duplicated, out of order, turns tried
more than once; the first reply's latency p50/p95 (from sending to the stand-in receiving it); and
each process's resident memory (``/proc/<pid>/status`` VmRSS with its children) when ready, after
the first minute of load, just before the fault and at the end. Exit status 1 when anything was lost, duplicated or out of
order, 2 when the stack could not be started.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiohttp
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cluster import POSTGRES_ADMIN, Cluster, flush_redis, fresh_database, rss_kib  # noqa: E402
from bench.ledger import Audit, Sent, audit, percentile  # noqa: E402
from bot.channels.store import UNSENT, WAITING, conversation_id, inbound, outbox  # noqa: E402
from bot.privacy import Keys  # noqa: E402
from bot.replay.script import Script, load_scripts  # noqa: E402
from bot.storage import make_engine  # noqa: E402
from bot.training import latest_model  # noqa: E402

FAULTS = ("kill-rasa", "twilio-500", "none")
GOLDEN = ROOT / "data" / "replay" / "golden"
#: Seconds the kill-rasa fault waits for the victim to be working on a turn before it kills anyway.
KILL_WAIT = 20.0
#: Memory samples, in the order they are taken.
MOMENTS = ("ready", "warm", "fault", "end")


@dataclass
class Target:
    """Where the soak sends and what it reads: the stand-in, Rasa's API, the database, the keys."""
    standin: str
    rasa: str
    token: str
    database_url: str
    keys: Keys
    pids: dict[str, int]


@dataclass
class Run:
    sent: list[Sent] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)
    behind: int = 0
    memory: dict[str, dict[str, int]] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)

    def sample(self, moment: str, pids: dict[str, int]) -> None:
        for name, pid in pids.items():
            self.memory.setdefault(name, {})[moment] = rss_kib(pid)

    def note(self, started: float, text: str) -> None:
        self.events.append(f"{time.monotonic() - started:7.1f} s  {text}")
        print(self.events[-1], flush=True)


def scripts() -> list[Script]:
    """Golden scripts in which every turn is answered (the STOP ones end with silence)."""
    return [script for script in load_scripts([GOLDEN])
            if not any(turn.expect.get("silent") for turn in script.turns)]


def numbers() -> itertools.count:
    """Numbers of this run: +1 438 7xx xxxx from a random block, so runs never share a texter."""
    return itertools.count(7_000_000 + secrets.randbelow(900) * 1000)


class Texters:
    """The load: ``count`` texters, messages evenly spaced at ``rate`` per second in all."""

    def __init__(self, target: Target, session: aiohttp.ClientSession, run: Run, rate: float,
                 count: int) -> None:
        self.target, self.session, self.run = target, session, run
        self.rate, self.count = rate, count
        self.library = scripts()
        self.picks = itertools.count()
        self.fresh = numbers()

    async def play(self, until: float) -> None:
        started = time.monotonic()
        await asyncio.gather(*(self.texter(index, started, until) for index in range(self.count)))

    async def texter(self, index: int, started: float, until: float) -> None:
        """One texter: its slots are ``index/rate + k*count/rate`` seconds after the start."""
        slot = itertools.count()
        while True:
            script = self.library[next(self.picks) % len(self.library)]
            address = f"+1438{next(self.fresh):07d}"
            if script.channel == "whatsapp":
                address = "whatsapp:" + address
            for turn in script.turns:
                due = started + (index + next(slot) * self.count) / self.rate
                if due >= until:
                    return
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    self.run.behind += 1
                await self.send(address, turn.texter)

    async def send(self, address: str, body: str) -> None:
        channel = "whatsapp" if address.startswith("whatsapp:") else "sms"
        payload = {"from": address.removeprefix("whatsapp:"), "channel": channel, "body": body}
        at, clock = time.time(), time.perf_counter()
        try:
            async with self.session.post(f"{self.target.standin}/emulator/send", json=payload) as reply:
                answer = await reply.json(content_type=None)
                accepted = reply.status == 200 and answer.get("webhook_status") == 200
                sid = answer.get("sid", "")
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            accepted, sid = False, ""
        self.run.acks.append(time.perf_counter() - clock)
        self.run.sent.append(Sent(address, sid, at, accepted))


async def inject(fault: str, seconds: float, cluster: Cluster | None, target: Target,
                 session: aiohttp.ClientSession, run: Run, started: float) -> None:
    if fault == "kill-rasa":
        victim = cluster.rasa_names[-1]
        busy = await victim_busy(cluster, session, cluster.rasa_names.index(victim), KILL_WAIT)
        cluster.kill(victim)
        run.note(started, f"fault: kill -9 {victim} ({'while' if busy else 'not seen'} working on a turn);"
                          " starting it again")
        killed = time.monotonic()
        await asyncio.to_thread(cluster.restart, victim)
        target.pids[victim] = cluster.pid(victim)
        run.sample("restarted", {victim: target.pids[victim]})
        run.note(started, f"{victim} ready again after {time.monotonic() - killed:.0f} s")
    elif fault == "twilio-500":
        await set_faults(session, target, 10 ** 9)
        run.note(started, f"fault: the stand-in answers HTTP 500 for {seconds:.0f} s")
        await asyncio.sleep(seconds)
        await set_faults(session, target, 0)
        run.note(started, "fault over: the stand-in answers normally")


async def victim_busy(cluster: Cluster, session: aiohttp.ClientSession, replica: int,
                      wait: float) -> bool:
    """Wait (at most ``wait`` s) until a message the balancer gave ``replica`` is being worked on,
    so that the kill interrupts a turn; True if one was seen."""
    engine = make_engine(cluster.database_url)
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline:
            async with session.get(cluster.url("balancer", "/balancer/stats")) as reply:
                routes = (await reply.json())["routes"]
            if set(await asyncio.to_thread(in_progress, engine)) & {
                    sid for sid, index in routes.items() if index == replica}:
                return True
            await asyncio.sleep(0.02)
        return False
    finally:
        engine.dispose()


def in_progress(engine) -> list[str]:
    with engine.connect() as db:
        return list(db.execute(sa.select(inbound.c.sid).where(inbound.c.status == "processing")).scalars())


async def set_faults(session: aiohttp.ClientSession, target: Target, count: int) -> None:
    async with session.post(f"{target.standin}/emulator/faults", json={"status": 500, "count": count}) as reply:
        reply.raise_for_status()


def outstanding(engine, sids: list[str]) -> int:
    """Accepted messages whose turn is not over, plus replies not yet sent."""
    with engine.connect() as db:
        waiting = sum(db.execute(sa.select(sa.func.count()).select_from(inbound).where(
            inbound.c.sid.in_(sids[i:i + 500]), inbound.c.status.in_(WAITING))).scalar()
            for i in range(0, len(sids), 500))
        unsent = db.execute(sa.select(sa.func.count()).select_from(outbox).where(
            outbox.c.status.in_(UNSENT))).scalar()
    return waiting + unsent


async def drain(engine, run: Run, timeout: float, started: float) -> None:
    sids = [message.sid for message in run.sent if message.accepted]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = await asyncio.to_thread(outstanding, engine, sids)
        if not left:
            run.note(started, "drained: every accepted message's turn is over and every reply sent")
            return
        await asyncio.sleep(2)
    run.note(started, f"still {left} turns or replies outstanding after {timeout:.0f} s of draining")


async def books(target: Target, session: aiohttp.ClientSession, run: Run, engine) -> Audit:
    async with session.get(f"{target.standin}/emulator/messages") as reply:
        phones = await reply.json()
    trackers = {}
    for address in {message.number for message in run.sent}:
        conversation = quote(conversation_id(target.keys, address), safe="")
        url = f"{target.rasa}/conversations/{conversation}/tracker"
        async with session.get(url, params={"token": target.token}) as reply:
            reply.raise_for_status()
            trackers[address] = await reply.json()
    return await asyncio.to_thread(audit, run.sent, engine, phones, trackers)


async def soak(args: argparse.Namespace, target: Target, cluster: Cluster | None) -> tuple[Audit, Run]:
    run = Run()
    engine = make_engine(target.database_url)
    run.sample("ready", target.pids)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=100)) as session:
        started = time.monotonic()
        until = started + args.minutes * 60
        texters = Texters(target, session, run, args.rate, args.texters)
        load = asyncio.create_task(texters.play(until))
        run.note(started, f"load: {args.rate} messages/s from {args.texters} texters for {args.minutes} min")
        await asyncio.sleep(min(60, args.minutes * 30))
        run.sample("warm", target.pids)
        await asyncio.sleep(max(0.0, started + args.minutes * 30 - time.monotonic()))
        run.sample("fault", target.pids)
        await inject(args.fault, args.fault_seconds, cluster, target, session, run, started)
        await load
        run.note(started, f"load over: {len(run.sent)} messages sent")
        await drain(engine, run, args.drain, started)
        run.sample("end", target.pids)
        result = await books(target, session, run, engine)
    engine.dispose()
    return result, run


def report(args: argparse.Namespace, result: Audit, run: Run) -> str:
    acks = run.acks
    lines = [
        f"soak: {args.minutes} min, {args.rate} msg/s, {args.texters} texters, fault {args.fault}",
        "",
        "| measure | value |", "|---|---|",
        f"| messages sent | {result.sent} |",
        f"| accepted (webhook 200) | {result.accepted} |",
        f"| refused (not 200) | {result.refused} |",
        f"| answered | {result.answered} |",
        f"| lost (accepted, not answered) | {len(result.lost)} |",
        f"| duplicated (sent twice / turns run twice) | {result.duplicated} ({result.resent} / {result.turns_twice}) |",
        f"| conversations out of order | {len(result.out_of_order)} |",
        f"| turns tried more than once (taken over, retried) | {result.retried} |",
        f"| first reply p50 / p95 / max | {ms(percentile(result.first_reply, 50))} / "
        f"{ms(percentile(result.first_reply, 95))} / {ms(max(result.first_reply, default=float('nan')))} |",
        f"| webhook answer via stand-in p50 / p95 | {ms(percentile(acks, 50))} / {ms(percentile(acks, 95))} |",
        f"| messages sent late (sender behind schedule) | {run.behind} |",
        "", "| process | " + " | ".join(MOMENTS) + " | growth warm -> end |",
        "|---|" + "---|" * (len(MOMENTS) + 1),
    ]
    for name, samples in run.memory.items():
        base = samples.get("restarted", samples.get("warm", 0))
        cells = [mib(samples.get(moment)) for moment in MOMENTS]
        note = f" (since its restart at {mib(base)})" if "restarted" in samples else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mib(samples.get('end', 0) - base)}{note} |")
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1000:,.0f} ms"


def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:,.0f} MiB"


def attached_target() -> Target:
    """The stack the environment describes (``hotline up``'s settings)."""
    from bot.privacy import load_keys
    from bot.settings import Settings, secret
    from bot.storage import database_url

    settings = Settings.from_env()
    ports = {"rasa": settings.rasa_port, "actions": settings.actions_port, "hub": settings.hub_port,
             "standin": settings.twilio_port}
    pids = {name: pid for name, pid in ((name, listening_pid(port)) for name, port in ports.items()) if pid}
    return Target(standin=f"http://127.0.0.1:{settings.twilio_port}",
                  rasa=f"http://127.0.0.1:{settings.rasa_port}",
                  token=secret(settings, "rasa_api_token", "RASA_AUTH_TOKEN"),
                  database_url=database_url(settings), keys=load_keys(settings), pids=pids)


def listening_pid(port: int) -> int | None:
    """The process listening on a local TCP port, from /proc (for memory samples when attached)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(str(fd.readlink()) in inodes for fd in fd_dir.iterdir()):
                return int(fd_dir.parent.name)
        except (PermissionError, FileNotFoundError, ProcessLookupError):
            continue
    return None


def cluster_target(cluster: Cluster) -> Target:
    return Target(standin=cluster.url("standin"), rasa=cluster.url("balancer"), token=cluster.token,
                  database_url=cluster.database_url, keys=cluster.keys,
                  pids={name: cluster.pid(name) for name in cluster.processes})


def run_own(args: argparse.Namespace) -> tuple[Audit, Run]:
    """Start the cluster on a fresh database, soak it, stop it and drop the database."""
    flush_redis(args.redis_url)
    home = Path(tempfile.mkdtemp(prefix="hotline-soak-"))
    with fresh_database(args.admin_url, prefix="hotline_soak_") as database_url:
        cluster = Cluster(args.model, home, database_url, args.redis_url, replicas=args.replicas,
                          hub=not args.no_hub, standin_latency=args.latency)
        print(f"starting {args.replicas} Rasa replicas, actions, stand-in, balancer"
              f"{'' if args.no_hub else ', hub'}; logs in {home}", flush=True)
        try:
            clock = time.monotonic()
            try:
                cluster.start()
            except RuntimeError as error:
                print(f"the stack did not start: {error}", file=sys.stderr)
                sys.exit(2)
            print(f"ready after {time.monotonic() - clock:.0f} s", flush=True)
            return asyncio.run(soak(args, cluster_target(cluster), cluster))
        finally:
            cluster.stop()
            flush_redis(args.redis_url)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model archive (default: the newest in models/)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=2.0, help="messages per second, all texters together")
    parser.add_argument("--texters", type=int, default=20)
    parser.add_argument("--fault", choices=FAULTS, default="kill-rasa")
    parser.add_argument("--fault-seconds", type=float, default=30.0, help="how long twilio-500 lasts")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.15, help="seconds each stand-in API call takes")
    parser.add_argument("--no-hub", action="store_true", help="do not start the agent hub")
    parser.add_argument("--drain", type=float, default=600.0, help="seconds to wait for the queue to drain")
    parser.add_argument("--admin-url", default=POSTGRES_ADMIN, help="PostgreSQL where the run's database is made")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12",
                        help="Redis database for the lock store; FLUSHED before and after")
    parser.add_argument("--attach", action="store_true",
                        help="soak the running stack the environment describes instead of starting one")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.attach and args.fault == "kill-rasa":
        parser.error("--fault kill-rasa restarts a replica the soak started itself: drop --attach, "
                     "or choose --fault twilio-500 or none")
    if not args.attach:
        args.model = args.model or latest_model(ROOT / "models")
        if args.model is None:
            parser.error("no model in models/: train one (`hotline train`) or pass --model")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.attach:
        result, run = asyncio.run(soak(args, attached_target(), None))
    else:
        result, run = run_own(args)
    print("\n" + report(args, result, run))
    if args.json:
        args.json.write_text(json.dumps({
            "settings": {k: str(v) for k, v in vars(args).items()},
            "sent": result.sent, "accepted": result.accepted, "refused": result.refused,
            "answered": result.answered, "lost": len(result.lost), "resent": result.resent,
            "turns_twice": result.turns_twice, "out_of_order": len(result.out_of_order),
            "retried": result.retried,
            "first_reply_p50": percentile(result.first_reply, 50),
            "first_reply_p95": percentile(result.first_reply, 95),
            "memory_kib": run.memory, "events": run.events}, indent=2))
    failed = result.lost or result.duplicated or result.out_of_order
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
