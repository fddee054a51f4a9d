"""``hotline up`` in a subprocess on free ports, for tests that need the whole stack."""
from __future__ import annotations

import json
import signal
import time
import urllib.parse
import urllib.request
from pathlib import Path

from bot.replay.spawn import spawn_stack


def start_stack(model: Path, models: Path, home: Path, extra_env: dict[str, str] | None = None) -> dict:
    """Start the stack with ``model``; returns the ports, the process and its first output lines."""
    stack = spawn_stack(model, models, home, extra_env)
    return {"process": stack.process, "rasa": stack.rasa, "actions": stack.actions, "twilio": stack.twilio,
            "hub": stack.hub, "lines": stack.lines, "home": home, "env": stack.env}


class StackHolder:
    """One stack for the test session (starting one takes a minute or more on 2 cores); started
    again when a test stopped it (the SIGTERM test does)."""

    def __init__(self, model: Path, tmp_path_factory, extra_env: dict[str, str]) -> None:
        self.model, self.tmp_path_factory, self.extra_env = model, tmp_path_factory, extra_env
        self.current: dict | None = None

    def running(self) -> dict:
        if self.current is None or self.current["process"].poll() is not None:
            self.current = start_stack(self.model, self.tmp_path_factory.mktemp("stack_models"),
                                       self.tmp_path_factory.mktemp("home"), self.extra_env)
        return self.current

    def stop(self) -> None:
        if self.current:
            stop_stack(self.current)


def stop_stack(stack: dict) -> None:
    process = stack["process"]
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def text_from(stack: dict, sender: str, text: str, channel: str = "sms") -> None:
    """A texter's message through the stand-in: Twilio-signed webhook to the Rasa server."""
    payload = {"from": sender, "channel": channel, "body": text}
    request = urllib.request.Request(f"http://127.0.0.1:{stack['twilio']}/emulator/send",
                                     data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read())["webhook_status"] == 200


def sent_to(stack: dict, address: str) -> list[dict]:
    """What the stand-in delivered to ``address`` (contract 5)."""
    query = urllib.parse.urlencode({"to": address})
    with urllib.request.urlopen(f"http://127.0.0.1:{stack['twilio']}/emulator/messages?{query}", timeout=10) as reply:
        return json.loads(reply.read())


def wait_for(predicate, timeout: float = 60.0, every: float = 0.2):
    """Poll ``predicate`` until it returns something truthy; returns it (or the last falsy value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)
