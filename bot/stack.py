"""``hotline up``: trains a model if none exists, starts every process, stops them all together.

Processes are started in their own process groups so Ctrl-C or SIGTERM on ``hotline up`` stops
each child and its own children; if any child dies, the others are stopped too rather than left
serving half a stack.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field

from bot import PROJECT_ROOT
from bot.channels.config import WEBHOOK_PATH
from bot.privacy import load_keys
from bot.settings import Settings, secret, write_endpoints
from bot.training import latest_model, train

READY_TIMEOUT = 300
STOP_TIMEOUT = 15


@dataclass
class Child:
    name: str
    args: list[str]
    ready_url: str
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(self.args, cwd=PROJECT_ROOT, env=env, start_new_session=True)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.ready_url, timeout=2) as response:
                return response.status < 500
        except OSError:
            return False

    def stop(self) -> None:
        if not self.alive():
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def twilio_env(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """Without Twilio credentials, the local stand-in's: a development account and token.

    The token is ``TWILIO_AUTH_TOKEN`` when set, else one generated once (0600 file); the stand-in
    signs its webhooks with it and the channel checks them with it.
    """
    if env.get("TWILIO_ACCOUNT_SID"):
        return {}
    return {
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": secret(settings, "twilio_dev_token", "TWILIO_AUTH_TOKEN"),
        "TWILIO_API_URL": f"http://127.0.0.1:{settings.twilio_port}",
    }


def standin(settings: Settings) -> Child:
    return Child(
        "twilio stand-in",
        [sys.executable, "-m", "bot.channels.standin", "--port", str(settings.twilio_port)],
        f"http://127.0.0.1:{settings.twilio_port}/emulator/threads",
    )


def children(settings: Settings, model: str, endpoints: str, token: str) -> list[Child]:
    """The processes of the stack on these settings."""
    python = sys.executable
    return [
        Child(
            "actions",
            [python, "-m", "rasa_sdk", "--actions", "actions", "--port", str(settings.actions_port)],
            f"http://127.0.0.1:{settings.actions_port}/health",
        ),
        Child(
            "rasa",
            [python, "-m", "rasa", "run", "--model", model, "--endpoints", endpoints,
             "--credentials", str(PROJECT_ROOT / "credentials.yml"), "--enable-api", "--auth-token", token,
             "--interface", settings.bind, "--port", str(settings.rasa_port)],
            f"http://127.0.0.1:{settings.rasa_port}/",
        ),
        Child(
            "agent hub",
            [python, "-m", "bot.agents.app"],
            f"http://127.0.0.1:{settings.hub_port}/healthz",
        ),
    ]


def _wait_ready(stack: list[Child], stopping: threading.Event) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    pending = list(stack)
    while pending and time.monotonic() < deadline and not stopping.is_set():
        if any(not child.alive() for child in stack):
            return False
        pending = [child for child in pending if not child.ready()]
        time.sleep(0.5)
    return not pending


def run_stack(train_if_missing: bool = True) -> int:
    settings = Settings.from_env()
    model = latest_model(settings.models)
    if model is None:
        if not train_if_missing:
            print("no model in", settings.models, "- run `hotline train`", file=sys.stderr)
            return 1
        print("No model yet: training one (a few minutes on 2 cores)...", flush=True)
        model = train(out=settings.models)
    # Databases, logs and keys the stack creates are readable by its own user only.
    os.umask(0o077)
    endpoints = write_endpoints(settings)
    token = secret(settings, "rasa_api_token", "RASA_AUTH_TOKEN")
    development = twilio_env(settings, dict(os.environ))
    env = {**os.environ, **development, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    load_keys(settings)
    stack = children(settings, str(model), str(endpoints), token)
    if development:
        stack.append(standin(settings))

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        for child in stack:
            child.start(env)
        if not _wait_ready(stack, stopping):
            if stopping.is_set():
                return 0
            print("the stack did not start; see the output above", file=sys.stderr)
            return 1
        print(f"Rasa server:   http://127.0.0.1:{settings.rasa_port}/  (REST channel: /webhooks/rest/webhook)")
        print(f"Action server: http://127.0.0.1:{settings.actions_port}/health")
        print(f"Agent console: http://127.0.0.1:{settings.hub_port}/  (add an agent: hotline agents add NAME)")
        print(f"Twilio webhook: http://127.0.0.1:{settings.rasa_port}{WEBHOOK_PATH}")
        if development:
            print(f"Twilio stand-in (no TWILIO_ACCOUNT_SID): http://127.0.0.1:{settings.twilio_port}/"
                  f"  (texter simulator); development auth token: {development['TWILIO_AUTH_TOKEN']}")
        print(f"Model: {model}. Stop with Ctrl-C.", flush=True)
        while not stopping.is_set():
            if any(not child.alive() for child in stack):
                print("a process of the stack exited; stopping the others", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        for child in reversed(stack):
            child.stop()
