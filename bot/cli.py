"""The ``hotline`` command: ``triage``, ``train``, ``up``, ``hub`` and ``agents add``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bot import PROJECT_ROOT


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

    hub = sub.add_parser("hub", help="run the agent hub alone (port 8080)")
    hub.set_defaults(func=cmd_hub)

    up = sub.add_parser("up", help="start the whole stack (Rasa, actions, ...)")
    up.add_argument("--no-train", action="store_true", help="fail instead of training when no model exists")
    up.set_defaults(func=cmd_up)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
