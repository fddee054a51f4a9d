"""Real processes for channel tests: the Twilio stand-in and a server with the real channel.

The channel server is ``tests.support.echo_channel`` (the project's channel in front of a scripted
dialogue), or Rasa itself in the stack tests. Webhooks are signed with the ``twilio`` library.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from twilio.request_validator import RequestValidator

from bot import PROJECT_ROOT
from tests.conftest import free_port

TOKEN = "test-auth-token-" + secrets.token_hex(8)
ACCOUNT = "AC" + "0" * 31 + "1"
HOTLINE = "+15145550000"


def http(method: str, url: str, data: bytes | None = None, headers: dict | None = None,
         timeout: float = 10) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until(check, timeout: float = 20, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    return check()


@dataclass
class Rig:
    home: Path
    database_url: str | None = None
    delay: float = 0.0
    extra_env: dict = field(default_factory=dict)
    standin_port: int = field(default_factory=free_port)
    channel_port: int = field(default_factory=free_port)
    processes: dict = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = {**os.environ, "HOTLINE_HOME": str(self.home), "TWILIO_ACCOUNT_SID": ACCOUNT,
               "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_API_URL": f"http://127.0.0.1:{self.standin_port}",
               "HOTLINE_RASA_PORT": str(self.channel_port), "HOTLINE_RETRY_BASE": "0.2",
               "HOTLINE_CLAIM_LEASE": "2", "PYTHONUNBUFFERED": "1", **self.extra_env}
        env.pop("HOTLINE_PUBLIC_URL", None)
        env.pop("DATABASE_URL", None)
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        return env

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.channel_port}/webhooks/hotline_twilio/webhook"

    def start_standin(self) -> None:
        self._start("standin", [sys.executable, "-m", "bot.channels.standin", "--port",
                                str(self.standin_port)],
                    f"http://127.0.0.1:{self.standin_port}/emulator/threads")

    def start_channel(self) -> None:
        self._start("channel", [sys.executable, "-m", "tests.support.echo_channel",
                                str(self.channel_port), str(self.delay)],
                    f"http://127.0.0.1:{self.channel_port}/webhooks/hotline_twilio/")

    def _start(self, name: str, args: list[str], ready: str) -> None:
        log = open(self.home / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(args, cwd=PROJECT_ROOT, env=self.env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)
        up = wait_until(lambda: self.processes[name].poll() is None and self._ready(ready),
                        timeout=60, every=0.2)
        assert up, (self.home / f"{name}.log").read_text(errors="replace")[-3000:]

    @staticmethod
    def _ready(url: str) -> bool:
        try:
            return http("GET", url, timeout=2)[0] == 200
        except OSError:
            return False

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, sig)
        process.wait(20)

    def stop(self) -> None:
        for name in list(self.processes):
            self.kill(name, signal.SIGTERM)

    @contextlib.contextmanager
    def running(self):
        """The stand-in and the channel for the length of a ``with`` block."""
        self.start_standin()
        self.start_channel()
        try:
            yield self
        finally:
            self.stop()

    # Texting ----------------------------------------------------------------------------------

    def post_webhook(self, params: dict[str, str], signature: str | None = "sign",
                     url: str | None = None) -> int:
        url = url or self.webhook_url
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature == "sign":
            signature = self.sign(params, url)
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        body = urllib.parse.urlencode(params).encode()
        return http("POST", url, body, headers)[0]

    def sign(self, params: dict[str, str], url: str | None = None) -> str:
        """X-Twilio-Signature as Twilio computes it, for the webhook URL by default."""
        return RequestValidator(TOKEN).compute_signature(url or self.webhook_url, params)

    def inbound(self, sender: str, body: str, sid: str | None = None, **extra: str) -> dict[str, str]:
        hotline = f"whatsapp:{HOTLINE}" if sender.startswith("whatsapp:") else HOTLINE
        return {"MessageSid": sid or "SM" + secrets.token_hex(16), "AccountSid": ACCOUNT,
                "From": sender, "To": hotline, "Body": body, "NumMedia": "0", **extra}

    def text(self, sender: str, body: str, channel: str = "sms", media_url: str | None = None) -> dict:
        payload = {"from": sender, "channel": channel, "body": body}
        if media_url:
            payload["media_url"] = media_url
        status, reply = http("POST", f"http://127.0.0.1:{self.standin_port}/emulator/send",
                             json.dumps(payload).encode(), {"Content-Type": "application/json"})
        assert status == 200, reply
        return json.loads(reply)

    def sent_to(self, address: str) -> list[dict]:
        query = urllib.parse.urlencode({"to": address})
        status, reply = http("GET", f"http://127.0.0.1:{self.standin_port}/emulator/messages?{query}")
        assert status == 200
        return json.loads(reply)

    def replies(self, address: str, count: int, timeout: float = 20) -> list[str]:
        """Wait for ``count`` messages to ``address``, then a moment more to catch duplicates."""
        wait_until(lambda: len(self.sent_to(address)) >= count, timeout)
        time.sleep(0.5)
        return [message["body"] for message in self.sent_to(address)]

    def faults(self, status: int, count: int) -> None:
        http("POST", f"http://127.0.0.1:{self.standin_port}/emulator/faults",
             json.dumps({"status": status, "count": count}).encode(),
             {"Content-Type": "application/json"})
