"""Load on the Twilio webhook: the project's channel against Rasa's built-in ``twilio`` channel.

Run: ``.venv/bin/python bench/webhook_load.py [--model models/X.tar.gz] [--seconds 20]``.

One Rasa server (the latest model) serves both channels; the action server and the local Twilio
stand-in run beside it. The stand-in answers each API call after ``--latency`` seconds (default
0.15 s, about Twilio's real Messages API time seen from North America) so that a channel that
blocks its event loop on Twilio pays for it as it would in production. This process is the load
generator: it signs each webhook like Twilio and reads the replies from the stand-in. Per channel:

1. ack latency: signed webhooks at ``--rate`` messages per second (default 50) for ``--seconds``,
   each a new conversation's "hello"; time from POST to the HTTP answer, p50 and p99 (a webhook
   not answered within Twilio's 15-second limit counts as 15 s and as failed);
2. reply latency: ``--conversations`` (default 20) texters each sending "hello", waiting for the
   reply, reading and typing for ``--think`` seconds (default 3) and sending again, for
   ``--seconds``; inbound-to-outbound time p50/p95;
3. sustained throughput: the same texters with no pause at all (a closed loop that keeps the
   server saturated), for ``--seconds``: replies per second, and the reply time under saturation;
4. lost and duplicated: after draining, every conversation must hold exactly one reply per message.

Bounded: each phase stops after ``--seconds``; the whole run after about 4x that per channel.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.training import latest_model  # noqa: E402

ACCOUNT = "AC" + "0" * 32
HOTLINE = "+15145550000"
TWILIO_TIMEOUT = 15.0  # Twilio gives up on a webhook after 15 seconds (error 11200)
CHANNELS = {"hotline_twilio": "/webhooks/hotline_twilio/webhook", "builtin twilio": "/webhooks/twilio/webhook"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class Stack:
    """Stand-in, action server and one Rasa server with both channels, in a temporary home."""

    def __init__(self, model: Path, latency: float) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="webhook_load_"))
        self.token = secrets.token_hex(16)
        self.ports = {"rasa": free_port(), "actions": free_port(), "twilio": free_port()}
        self.model, self.latency = model, latency
        self.processes: list[subprocess.Popen] = []

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "HOTLINE_HOME": str(self.home), "TWILIO_ACCOUNT_SID": ACCOUNT,
                "TWILIO_AUTH_TOKEN": self.token, "TWILIO_API_URL": f"http://127.0.0.1:{self.ports['twilio']}",
                "HOTLINE_RASA_PORT": str(self.ports["rasa"]), "RASA_TELEMETRY_ENABLED": "false",
                "TF_CPP_MIN_LOG_LEVEL": "3"}

    def start(self) -> None:
        from bot.settings import Settings, write_endpoints

        settings = Settings.from_env({"HOTLINE_HOME": str(self.home),
                                      "HOTLINE_ACTIONS_PORT": str(self.ports["actions"])})
        endpoints = write_endpoints(settings)
        credentials = self.home / "credentials.yml"
        credentials.write_text(
            f"twilio:\n  account_sid: {ACCOUNT}\n  auth_token: {self.token}\n  twilio_number: \"{HOTLINE}\"\n"
            "bot.channels.rasa_channel.HotlineTwilioInput:\n")
        python = sys.executable
        self._spawn([python, "-m", "bot.channels.standin", "--port", str(self.ports["twilio"]),
                     "--latency", str(self.latency)])
        self._spawn([python, "-m", "rasa_sdk", "--actions", "actions", "--port", str(self.ports["actions"])])
        self._spawn([python, str(ROOT / "bench" / "rasa_patched_twilio.py"), "run", "--model", str(self.model),
                     "--endpoints", str(endpoints), "--credentials", str(credentials),
                     "--port", str(self.ports["rasa"]), "--interface", "127.0.0.1"])

    def _spawn(self, args: list[str]) -> None:
        log = open(self.home / f"process{len(self.processes)}.log", "wb")
        self.processes.append(subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            process.wait(30)

    def url(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"


class Load:
    def __init__(self, stack: Stack, session: aiohttp.ClientSession, path: str) -> None:
        self.stack, self.session, self.path = stack, session, path
        self.validator = RequestValidator(stack.token)
        self.sent: dict[str, int] = {}
        self.failed = 0

    async def post(self, sender: str, body: str) -> float:
        """Seconds until the webhook answered; TWILIO_TIMEOUT if it failed or took longer."""
        try:
            return await asyncio.wait_for(self._post(sender, body), TWILIO_TIMEOUT)
        except (asyncio.TimeoutError, aiohttp.ClientError, RuntimeError):
            self.failed += 1
            return TWILIO_TIMEOUT

    async def _post(self, sender: str, body: str) -> float:
        url = self.stack.url("rasa", self.path)
        params = {"MessageSid": "SM" + secrets.token_hex(16), "AccountSid": ACCOUNT, "From": sender,
                  "To": HOTLINE, "Body": body, "NumMedia": "0"}
        headers = {"X-Twilio-Signature": self.validator.compute_signature(url, params),
                   "Content-Type": "application/x-www-form-urlencoded"}
        self.sent[sender] = self.sent.get(sender, 0) + 1
        start = time.perf_counter()
        async with self.session.post(url, data=urlencode(params), headers=headers) as reply:
            await reply.read()
            if reply.status not in (200, 204):
                raise RuntimeError(f"webhook answered {reply.status}")
        return time.perf_counter() - start

    async def replies(self, sender: str, count: int, timeout: float = 30) -> list[dict]:
        query = urlencode({"to": sender, "count": count, "timeout": timeout})
        async with self.session.get(self.stack.url("twilio", f"/emulator/wait?{query}")) as reply:
            return await reply.json()

    async def ack_phase(self, rate: float, seconds: float, prefix: str) -> list[float]:
        acks, tasks = [], []
        interval, start = 1 / rate, time.perf_counter()
        for index in range(int(rate * seconds)):
            delay = start + index * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.post(f"+1{prefix}{index:06d}", "hello")))
        for task in tasks:
            acks.append(await task)
        return acks

    async def conversation(self, sender: str, until: float, latencies: list[float],
                           think: float = 0.0) -> None:
        count = 0
        await asyncio.sleep(random.uniform(0, think))
        while time.time() < until:
            started = time.time()
            await self.post(sender, "hello")
            count += 1
            messages = await self.replies(sender, count)
            if len(messages) < count:
                return
            latencies.append(messages[count - 1]["created"] - started)
            await asyncio.sleep(think)

    async def drain(self, timeout: float) -> tuple[int, int]:
        """Lost and duplicated replies over every conversation of the run, once replies stop coming."""
        expected = sum(self.sent.values())
        deadline, last = time.time() + timeout, -1
        while time.time() < deadline:
            await asyncio.sleep(3)
            counts = await self.reply_counts()
            total = sum(counts.get(sender, 0) for sender in self.sent)
            if total >= expected or total == last:
                break
            last = total
        counts = await self.reply_counts()
        lost = sum(max(0, n - counts.get(sender, 0)) for sender, n in self.sent.items())
        duplicated = sum(max(0, counts.get(sender, 0) - n) for sender, n in self.sent.items())
        return lost, duplicated

    async def reply_counts(self) -> dict[str, int]:
        async with self.session.get(self.stack.url("twilio", "/emulator/messages")) as reply:
            return collections.Counter(message["to"] for message in await reply.json())


async def measure(stack: Stack, name: str, args: argparse.Namespace, prefix: str) -> dict:
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        load = Load(stack, session, CHANNELS[name])
        await load.post(f"+1{prefix}9" + "0" * 5, "hello")  # warm-up turn
        await load.replies(f"+1{prefix}9" + "0" * 5, 1, 60)
        acks = await load.ack_phase(args.rate, args.seconds, prefix + "1")
        await load.drain(args.seconds * 4)
        paced: list[float] = []
        until = time.time() + args.seconds
        await asyncio.gather(*(load.conversation(f"+1{prefix}2{i:05d}", until, paced, args.think)
                               for i in range(args.conversations)))
        saturated: list[float] = []
        until, started = time.time() + args.seconds, time.perf_counter()
        await asyncio.gather(*(load.conversation(f"+1{prefix}3{i:05d}", until, saturated)
                               for i in range(args.conversations)))
        elapsed = time.perf_counter() - started
        lost, duplicated = await load.drain(args.seconds * 4)
    return {"channel": name, "ack_p50_ms": round(statistics.median(acks) * 1000, 1),
            "ack_p99_ms": round(percentile(acks, 99) * 1000, 1),
            "reply_p50_ms": round(percentile(paced, 50) * 1000), "reply_p95_ms": round(percentile(paced, 95) * 1000),
            "replies_per_second": round(len(saturated) / elapsed, 1),
            "saturated_reply_p50_ms": round(percentile(saturated, 50) * 1000),
            "saturated_reply_p95_ms": round(percentile(saturated, 95) * 1000),
            "messages": sum(load.sent.values()), "webhooks_failed": load.failed,
            "lost": lost, "duplicated": duplicated}


async def wait_ready(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            try:
                async with session.get(stack.url("rasa", "/webhooks/hotline_twilio/")) as reply:
                    if reply.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError(f"stack did not start; logs in {stack.home}")


async def run(args: argparse.Namespace) -> list[dict]:
    stack = Stack(args.model, args.latency)
    stack.start()
    try:
        await wait_ready(stack)
        return [await measure(stack, "hotline_twilio", args, "438"),
                await measure(stack, "builtin twilio", args, "514")]
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("--think", type=float, default=3.0)
    args = parser.parse_args()
    args.model = args.model or latest_model(ROOT / "models")
    if args.model is None:
        sys.exit("no model: run `hotline train` first")
    rows = asyncio.run(run(args))
    for row in rows:
        print(json.dumps(row))
    ours, builtin = rows
    print(json.dumps({"throughput_ratio": round(ours["replies_per_second"] / max(builtin["replies_per_second"], 1e-9), 2),
                      "settings": {k: str(v) for k, v in vars(args).items()}}))


if __name__ == "__main__":
    main()
