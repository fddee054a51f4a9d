"""A whole stack (``hotline up``) in a child process on free ports, with its own home and model.

``hotline replay --spawn`` and ``--compare`` use it to replay against a model without touching
the stack a trainer may already be running; the test suite uses it for its end-to-end tests.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bot import PROJECT_ROOT

#: Variables of the caller's environment that would point the spawned stack elsewhere.
OUTSIDE = ("DATABASE_URL", "REDIS_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_URL",
           "HOTLINE_PUBLIC_URL", "RASA_AUTH_TOKEN", "HOTLINE_HANDOFF_WAIT", "HOTLINE_HASH_KEY",
           "HOTLINE_DATA_KEYS")
START_TIMEOUT = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SpawnedStack:
    process: subprocess.Popen
    rasa: int
    actions: int
    twilio: int
    hub: int
    home: Path
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)


def spawn_stack(model: Path, models: Path, home: Path, extra_env: dict[str, str] | None = None) -> SpawnedStack:
    """Start ``hotline up --no-train`` serving ``model`` (copied into ``models``) with its state in
    ``home``; returns once it printed its addresses, or raises with its last output lines."""
    models.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, models / model.name)
    ports = {"HOTLINE_RASA_PORT": free_port(), "HOTLINE_ACTIONS_PORT": free_port(),
             "HOTLINE_TWILIO_PORT": free_port(), "HOTLINE_HUB_PORT": free_port()}
    env = {key: value for key, value in os.environ.items() if key not in OUTSIDE}
    env.update({"HOTLINE_MODELS": str(models), "HOTLINE_HOME": str(home),
                **{k: str(v) for k, v in ports.items()}, **(extra_env or {})})
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "up", "--no-train"], cwd=PROJECT_ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines = _read_until_ready(process)
    if not any(line.startswith("Rasa server:") for line in lines):
        if process.poll() is None:
            process.kill()
        raise RuntimeError("the stack did not start:\n" + "".join(lines[-50:]))
    # Keep reading the stack's output: a full pipe would block its processes mid-turn. The lines are
    # kept (the stack logs little at INFO) so tests can read every log line the processes wrote.
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
    return SpawnedStack(process=process, rasa=ports["HOTLINE_RASA_PORT"], actions=ports["HOTLINE_ACTIONS_PORT"],
                        twilio=ports["HOTLINE_TWILIO_PORT"], hub=ports["HOTLINE_HUB_PORT"],
                        home=home, env=env, lines=lines)


def _read_until_ready(process: subprocess.Popen) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if line.startswith("Model:"):
            break
    return lines
