"""Handoff latency: from the texter's message that triggers a handoff to the case in front of an agent.

Run: ``.venv/bin/python bench/handoff.py [--model models/X.tar.gz] [--cases 40]``.

Starts ``hotline up --no-train`` on free ports with a fresh embedded database (SQLite), adds an
agent, keeps a console WebSocket open and polls ``GET /api/cases`` every 20 ms. Each round, a new
texter sends "he is outside with a knife, help me" through the Twilio stand-in (a signed webhook,
as Twilio would); the clock starts when that webhook is sent. Measured per case: the first
``GET /api/cases`` answer listing it, and the first WebSocket message listing it (p50/p95; target
p95 under 1 s). Then the console in Debian's Chromium (headless): time to the login form
(navigation to ``load``), and from pressing "Log in" to the queue drawn with the cases.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.training import latest_model  # noqa: E402

HEADERS = {"X-Requested-With": "hotline-console"}
DANGER = "he is outside with a knife, help me"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Stack:
    def __init__(self, model: Path) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
        (self.tmp / "models").mkdir()
        shutil.copy(model, self.tmp / "models" / model.name)
        self.ports = {name: free_port() for name in ("RASA", "ACTIONS", "TWILIO", "HUB")}
        drop = ("DATABASE_URL", "REDIS_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_URL")
        self.env = {key: value for key, value in os.environ.items() if key not in drop}
        self.env.update({"HOTLINE_HOME": str(self.tmp / "home"), "HOTLINE_MODELS": str(self.tmp / "models"),
                         "HOTLINE_HANDOFF_WAIT": "3600",
                         **{f"HOTLINE_{name}_PORT": str(port) for name, port in self.ports.items()}})
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "bot.cli", "up", "--no-train"], cwd=ROOT,
                                        env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in self.process.stdout:
            if line.startswith("Model:"):
                break
        else:
            raise SystemExit("the stack did not start")
        # Keep reading the stack's output: a full pipe would block its processes.
        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def add_agent(self, name: str) -> str:
        result = subprocess.run([sys.executable, "-m", "bot.cli", "agents", "add", name], cwd=ROOT, env=self.env,
                                capture_output=True, text=True, check=True)
        return result.stdout.strip()

    def url(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"


async def measure_cases(stack: Stack, password: str, count: int) -> tuple[list[float], list[float]]:
    api_times: list[float] = []
    ws_times: list[float] = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.post(stack.url("HUB", "/api/login"), json={"username": "bench", "password": password},
                                headers=HEADERS) as response:
            assert response.status == 200
        socket_ = await session.ws_connect(stack.url("HUB", "/api/live").replace("http", "ws"))
        await socket_.receive_json()
        for index in range(count):
            known = {case["id"] for case in await _cases(session, stack)}
            sender = f"+1514555{index:04d}"
            started = time.perf_counter()
            await _text(session, stack, sender)
            api, ws = await asyncio.gather(_api_sees_new(session, stack, known, started),
                                           _ws_sees_new(socket_, known, started))
            api_times.append(api)
            ws_times.append(ws)
        await socket_.close()
    return api_times, ws_times


async def _cases(session: aiohttp.ClientSession, stack: Stack) -> list[dict]:
    async with session.get(stack.url("HUB", "/api/cases")) as response:
        return await response.json()


async def _text(session: aiohttp.ClientSession, stack: Stack, sender: str) -> None:
    async with session.post(stack.url("TWILIO", "/emulator/send"),
                            json={"from": sender, "channel": "sms", "body": DANGER}) as response:
        assert (await response.json())["webhook_status"] == 200


async def _api_sees_new(session, stack: Stack, known: set[str], started: float, timeout: float = 30) -> float:
    while time.perf_counter() - started < timeout:
        if {case["id"] for case in await _cases(session, stack)} - known:
            return time.perf_counter() - started
        await asyncio.sleep(0.02)
    return timeout


async def _ws_sees_new(socket_, known: set[str], started: float, timeout: float = 30) -> float:
    while time.perf_counter() - started < timeout:
        message = await socket_.receive_json(timeout=timeout)
        if message["type"] == "cases" and {case["id"] for case in message["cases"]} - known:
            return time.perf_counter() - started
    return timeout


def measure_console(stack: Stack, password: str, rounds: int = 5) -> tuple[list[float], list[float]]:
    """Chromium: navigation to ``load`` of the login page, and login to the queue drawn."""
    from playwright.sync_api import sync_playwright

    loads, queues = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        for _ in range(rounds):
            page = browser.new_context().new_page()
            started = time.perf_counter()
            page.goto(stack.url("HUB", "/"), wait_until="load")
            page.wait_for_selector("#username")
            loads.append(time.perf_counter() - started)
            page.fill("#username", "bench")
            page.fill("#password", password)
            started = time.perf_counter()
            page.click("#login")
            page.wait_for_selector("#queue [data-case-id]")
            queues.append(time.perf_counter() - started)
            page.context.close()
        browser.close()
    return loads, queues


def row(name: str, values: list[float]) -> str:
    return (f"| {name} | {len(values)} | {statistics.median(values) * 1000:.0f} ms | "
            f"{percentile(values, 0.95) * 1000:.0f} ms | {max(values) * 1000:.0f} ms |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--cases", type=int, default=40)
    args = parser.parse_args()
    model = args.model or latest_model(ROOT / "models")
    if model is None:
        raise SystemExit("no model: run `hotline train` or pass --model")
    stack = Stack(model)
    try:
        stack.start()
        password = stack.add_agent("bench")
        api, ws = asyncio.run(measure_cases(stack, password, args.cases))
        loads, queues = measure_console(stack, password)
    finally:
        stack.stop()
    print(f"model {model.name}; {args.cases} handoffs, one at a time, SQLite, hub polling every 250 ms\n")
    print("| measure | n | p50 | p95 | max |\n|---|---|---|---|---|")
    for name, values in (("texter message -> case in GET /api/cases", api),
                         ("texter message -> case over WebSocket", ws),
                         ("console: login page loaded (Chromium)", loads),
                         ("console: log in -> queue drawn (Chromium)", queues)):
        print(row(name, values))
    print(json.dumps({"api_p95": percentile(api, 0.95), "ws_p95": percentile(ws, 0.95)}))


if __name__ == "__main__":
    main()
