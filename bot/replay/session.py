"""``hotline replay``: which stack to play against, the run with its progress bar, the reports,
and ``--compare`` of two models on the golden set."""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from bot import DATA_DIR
from bot.privacy import load_keys
from bot.replay.report import terminal_summary, write_html, write_junit
from bot.replay.runner import Endpoints, ScriptResult, play_all
from bot.replay.script import Script
from bot.replay.spawn import spawn_stack
from bot.settings import Settings, secret

GOLDEN = DATA_DIR / "replay" / "golden"
TRAINER = "replay-trainer"


def running_stack(env: dict[str, str]) -> Endpoints:
    """The stack ``hotline up`` runs with this environment (same home, same ports and keys)."""
    settings = Settings.from_env(env)
    return Endpoints(
        twilio=env.get("TWILIO_API_URL") or f"http://127.0.0.1:{settings.twilio_port}",
        rasa=f"http://127.0.0.1:{settings.rasa_port}", hub=f"http://127.0.0.1:{settings.hub_port}",
        rasa_token=secret(settings, "rasa_api_token", "RASA_AUTH_TOKEN"), keys=load_keys(settings, env),
        hub_user=env.get("HOTLINE_REPLAY_USER") or None, hub_password=env.get("HOTLINE_REPLAY_PASSWORD") or None,
    )


@contextlib.contextmanager
def spawned(model: Path, extra_env: dict[str, str] | None = None) -> Iterator[Endpoints]:
    """A stack of its own serving ``model``, with a trainer account made for the run; removed after."""
    from bot.agents.accounts import Accounts
    from bot.storage import database_url, make_engine

    with tempfile.TemporaryDirectory(prefix="hotline-replay-") as tmp:
        stack = spawn_stack(model, Path(tmp) / "models", Path(tmp) / "state", extra_env)
        try:
            settings = Settings.from_env(stack.env)
            password = Accounts(make_engine(database_url(settings))).add(TRAINER, "trainer")
            yield Endpoints(
                twilio=f"http://127.0.0.1:{stack.twilio}", rasa=f"http://127.0.0.1:{stack.rasa}",
                hub=f"http://127.0.0.1:{stack.hub}",
                rasa_token=(stack.home / "rasa_api_token.secret").read_text().strip(),
                keys=load_keys(settings, stack.env), hub_user=TRAINER, hub_password=password,
            )
        finally:
            stack.stop()


def play(scripts: list[Script], endpoints: Endpoints, concurrency: int, progress: bool = True
         ) -> tuple[list[ScriptResult], float]:
    """All scripts with a progress bar (one step per turn) on standard error."""
    from tqdm import tqdm

    bar = tqdm(total=sum(len(s.turns) for s in scripts), unit="turn", file=sys.stderr,
               disable=not progress, desc="replay")
    started = time.monotonic()
    try:
        results = asyncio.run(play_all(scripts, endpoints, concurrency, on_turn=lambda: bar.update(1)))
    finally:
        bar.close()
    return results, time.monotonic() - started


def report(results: list[ScriptResult], seconds: float, junit: Path | None, html: Path | None) -> int:
    print(terminal_summary(results, seconds))
    if junit:
        write_junit(results, junit, seconds)
        print(f"JUnit XML: {junit}")
    if html:
        write_html(results, html, seconds)
        print(f"HTML report: {html}")
    return 0 if all(r.passed for r in results) else 1


def record(case_id: str, out: Path | None) -> int:
    """A case of the running stack's hub as a redacted script; checked like any script."""
    from bot.replay.record import fetch_case, save, script_from_case, to_yaml
    from bot.replay.script import ScriptError, load_script
    from bot.storage import database_url, make_engine

    try:
        case = asyncio.run(fetch_case(running_stack(dict(os.environ)), case_id))
        text = to_yaml(script_from_case(case))
    except RuntimeError as error:
        print(f"hotline replay --record: {error}", file=sys.stderr)
        return 1
    if out is None:
        sys.stdout.write(text)
        return 0
    try:
        save(make_engine(database_url(Settings.from_env())), case_id, text, out)
    except LookupError:
        print(f"hotline replay --record: case {case_id} is not in this machine's database (DATABASE_URL,"
              " HOTLINE_HOME), so the file could not be registered to be deleted with the conversation;"
              " run --record --out where the hotline's database is", file=sys.stderr)
        return 1
    try:
        load_script(out)
    except ScriptError as error:
        print(f"hotline replay --record: the recorded script does not load: {error}", file=sys.stderr)
        return 1
    print(f"recorded {case_id} to {out}")
    return 0


def compare(scripts: list[Script], old: Path, new: Path, concurrency: int, progress: bool = True) -> int:
    """The golden set on both models, one after the other; every conversation whose triage changed.
    Exit status 1 when any changed, so a release script stops for a person to look."""
    triage: dict[str, dict[str, dict]] = {}
    for label, model in (("old", old), ("new", new)):
        print(f"{label} model: {model}", file=sys.stderr)
        with spawned(model) as endpoints:
            results, seconds = play(scripts, endpoints, concurrency, progress)
        print(f"{label} model: " + terminal_summary(results, seconds).splitlines()[-1], file=sys.stderr)
        triage[label] = {r.script.name: (r.triage() if not r.error else {"error": r.error}) for r in results}
    changed = [name for name in triage["old"] if triage["old"][name] != triage["new"].get(name)]
    for name in changed:
        before, after = triage["old"][name], triage["new"].get(name, {})
        fields = sorted({k for k in (*before, *after) if before.get(k) != after.get(k)})
        print(f"CHANGED {name}: " + "; ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in fields))
    print(f"{len(changed)} of {len(triage['old'])} conversations changed triage "
          f"(language, indicators, risk, imminent, handoff)")
    return 1 if changed else 0
