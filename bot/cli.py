"""The ``hotline`` command: ``triage``, ``train``, ``up``, ``hub``, ``agents add``, ``replay`` and ``purge``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bot import PROJECT_ROOT
from bot.log_redaction import install as redact_logs


def _quiet_libraries() -> None:
    """TensorFlow and Rasa print banners and warnings on import; keep stdout for results."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    import warnings

    warnings.filterwarnings("ignore")


def cmd_triage(args: argparse.Namespace) -> int:
    """JSON lines in, one JSON object per line out (DESIGN.md contract 2)."""
    _quiet_libraries()
    from bot.triage.pipeline import Triage, triage_lines

    triage = Triage()
    source = open(args.file, "rb") if args.file else sys.stdin.buffer
    out = sys.stdout
    try:
        for line in triage_lines(source, triage):
            out.write(line + "\n")
            if args.flush:
                out.flush()
    finally:
        if args.file:
            source.close()
    out.flush()
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train the Rasa model (NLU and dialogue) with the project's files."""
    _quiet_libraries()
    from bot.training import train

    model = train(out=Path(args.out), epochs=args.epochs, fixed_model_name=args.fixed_model_name)
    print(model)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Start the whole stack on the embedded default (DESIGN.md contract 3)."""
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    from bot.stack import run_stack

    return run_stack(train_if_missing=not args.no_train)


def cmd_agents_add(args: argparse.Namespace) -> int:
    """Create an agent account and print its generated password (shown only this once)."""
    from bot.agents.accounts import AccountError, Accounts
    from bot.settings import Settings
    from bot.storage import database_url, make_engine

    accounts = Accounts(make_engine(database_url(Settings.from_env())))
    try:
        password = accounts.add(args.name, args.role)
    except AccountError as error:
        print(f"hotline agents add: {error}", file=sys.stderr)
        return 1
    print(password)
    return 0


def cmd_hub(_args: argparse.Namespace) -> int:
    """Run the agent hub alone (``hotline up`` starts it with the rest)."""
    from bot.agents.app import run_hub

    run_hub()
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Conversation scripts through the whole stack, with reports (data/replay/README.md)."""
    _quiet_libraries()
    from bot.replay import session
    from bot.replay.script import ScriptError, load_scripts
    from bot.training import latest_model

    if args.record:
        return session.record(args.record, Path(args.out) if args.out else None)
    try:
        scripts = load_scripts([Path(p) for p in args.paths] or [session.GOLDEN])
    except ScriptError as error:
        print(f"hotline replay: {error}", file=sys.stderr)
        return 2
    progress = not args.no_progress
    if args.compare:
        old, new = (Path(p) for p in args.compare)
        return session.compare(scripts, old, new, args.concurrency, progress)
    if args.spawn:
        model = Path(args.model) if args.model else latest_model(Path(os.environ.get("HOTLINE_MODELS", PROJECT_ROOT / "models")))
        if model is None:
            print("hotline replay: no model to spawn a stack with (hotline train, or --model)", file=sys.stderr)
            return 2
        with session.spawned(model) as endpoints:
            results, seconds = session.play(scripts, endpoints, args.concurrency, progress)
    else:
        results, seconds = session.play(scripts, session.running_stack(dict(os.environ)), args.concurrency, progress)
    return session.report(results, seconds, args.junit and Path(args.junit), args.html and Path(args.html))


def cmd_keys_rotate(_args: argparse.Namespace) -> int:
    from bot.privacy import load_keys, rotate
    from bot.settings import Settings, tracker_store
    from bot.storage import database_url, make_engine

    settings = Settings.from_env()
    keys = load_keys(settings)
    urls = {database_url(settings)}
    trackers = tracker_store(settings)
    if trackers["dialect"] == "sqlite":  # a file of its own; on PostgreSQL, the same database
        urls.add(f"sqlite:///{trackers['db']}")
    unreadable = 0
    for url in sorted(urls):
        engine = make_engine(url)
        for column, count in rotate(engine, keys).items():
            if column == "unreadable":
                unreadable += count
            else:
                print(f"{column}: {count} re-encrypted")
        engine.dispose()
    if unreadable:
        print(f"{unreadable} values open with none of the keys: an old key is missing; nothing was changed "
              "in those rows", file=sys.stderr)
        return 1
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    """The retention purge now (the Rasa server runs it every hour): counts only, never content."""
    _quiet_libraries()
    import asyncio

    from bot.retention import KEPT, open_purger

    if args.days is not None and not args.days > 0:
        print("hotline purge: --days must be above 0 (a number of days, e.g. --days 30)", file=sys.stderr)
        return 2
    try:
        purger = open_purger(args.days)
    except (ValueError, RuntimeError, NotImplementedError) as error:
        print(f"hotline purge: {error}", file=sys.stderr)
        return 2
    try:
        counts = asyncio.run(purger.purge(dry_run=args.dry_run))
    except Exception as error:  # noqa: BLE001 - a database or Redis that cannot be reached
        print(f"hotline purge: stopped ({type(error).__name__}); check that the database (DATABASE_URL,"
              " else HOTLINE_HOME) and Redis (REDIS_URL) are up, then run it again: what was purged"
              " stays purged, the rest is done next time", file=sys.stderr)
        return 2
    verb = "would be purged" if args.dry_run else "purged"
    print(f"conversations quiet for more than {purger.days:g} days {verb}: {counts['conversations']}")
    print(f"{KEPT}: {counts[KEPT]}")
    for name in sorted(set(counts) - {"conversations", KEPT}):
        print(f"  {name}: {counts[name]}")
    if args.dry_run:
        print("dry run: nothing was deleted")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    triage = sub.add_parser("triage", help="language, indicators and risk of JSON lines {\"text\": ...}")
    triage.add_argument("file", nargs="?", help="input file of JSON lines (default: standard input)")
    triage.add_argument("--flush", action="store_true", help="flush after every line (for pipes)")
    triage.set_defaults(func=cmd_triage)

    train = sub.add_parser("train", help="train the Rasa model (wraps rasa train)")
    train.add_argument("--out", default=str(PROJECT_ROOT / "models"))
    train.add_argument("--epochs", type=int, default=None, help="override DIET epochs (smaller = faster)")
    train.add_argument("--fixed-model-name", default=None)
    train.set_defaults(func=cmd_train)

    agents = sub.add_parser("agents", help="hotline agents' accounts")
    agents_sub = agents.add_subparsers(dest="agents_command", required=True)
    add = agents_sub.add_parser("add", help="create an agent; prints the generated password")
    add.add_argument("name")
    add.add_argument("--role", choices=["agent", "supervisor", "trainer"], default="agent")
    add.set_defaults(func=cmd_agents_add)

    keys = sub.add_parser("keys", help="keys of the data at rest")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser("rotate", help="re-encrypt everything stored with the newest data key")
    rotate.set_defaults(func=cmd_keys_rotate)

    hub = sub.add_parser("hub", help="run the agent hub alone (port 8080)")
    hub.set_defaults(func=cmd_hub)

    replay = sub.add_parser("replay", help="play conversation scripts through the stack and report")
    replay.add_argument("paths", nargs="*", help="script files or folders (default: the golden set)")
    replay.add_argument("--spawn", action="store_true", help="start a stack of its own for the run")
    replay.add_argument("--model", help="with --spawn: the model to serve (default: the latest in models/)")
    replay.add_argument("--compare", nargs=2, metavar=("OLD_MODEL", "NEW_MODEL"),
                        help="replay on both models; list every conversation whose triage changed")
    replay.add_argument("--record", metavar="CASE_ID",
                        help="write a finished case from the hub as a redacted script (to --out or stdout)")
    replay.add_argument("--out", help="with --record: the script file to write")
    replay.add_argument("--concurrency", type=int, default=4, help="conversations played at once (default 4)")
    replay.add_argument("--junit", help="write a JUnit XML report here")
    replay.add_argument("--html", help="write a self-contained HTML report here")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar")
    replay.set_defaults(func=cmd_replay)

    purge = sub.add_parser("purge", help="delete conversations quiet for longer than the retention period (counts only)")
    purge.add_argument("--days", type=float, default=None,
                       help="retention period in days (default: HOTLINE_RETENTION_DAYS, else 30)")
    purge.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
    purge.set_defaults(func=cmd_purge)

    up = sub.add_parser("up", help="start the whole stack (Rasa, actions, ...)")
    up.add_argument("--no-train", action="store_true", help="fail instead of training when no model exists")
    up.set_defaults(func=cmd_up)
    return parser


def main(argv: list[str] | None = None) -> int:
    redact_logs()
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
