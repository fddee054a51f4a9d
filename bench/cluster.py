"""The production layout in miniature: several Rasa replicas behind a balancer, one database, Redis.

Used by ``bench/soak.py`` (an operator runs it by hand) and ``tests/test_scale_out.py``. Processes,
each a real child in its own session, with its log under ``home``:

- ``balancer``: ``bench.balancer``, round robin over the replicas; Twilio (the stand-in) posts its
  webhooks and status callbacks there, and ``HOTLINE_PUBLIC_URL`` names it, as a public URL names
  the production load balancer;
- ``rasa-1`` ... ``rasa-N``: ``rasa run`` with the project's channel, the same command line as
  ``hotline up`` (``bot.stack.children``), sharing ``DATABASE_URL`` (Rasa's tracker store and the
  channel's tables) and ``REDIS_URL`` (Rasa's lock store);
- ``actions``: one action server; ``standin``: the local Twilio; ``hub`` (optional): the agent hub,
  which reaches Rasa through the balancer.

Every process gets the same keys (``HOTLINE_HASH_KEY``, ``HOTLINE_DATA_KEYS``) and API token from the
environment, as a secret store would give them; the keys are generated here for the run.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from cryptography.fernet import Fernet

from bot import PROJECT_ROOT
from bot.channels.config import WEBHOOK_PATH
from bot.privacy import Keys, load_keys
from bot.replay.spawn import OUTSIDE, free_port
from bot.settings import Settings, write_endpoints
from bot.stack import children, standin

ACCOUNT = "AC" + "0" * 31 + "5"
HOTLINE = "+15145550000"
HEALTH_PATH = WEBHOOK_PATH.rsplit("/", 1)[0] + "/"
READY_TIMEOUT = 420.0
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def fresh_database(admin_url: str = POSTGRES_ADMIN, prefix: str = "hotline_scale_") -> Iterator[str]:
    """A new, empty PostgreSQL database for one run, dropped afterwards; yields its URL."""
    import psycopg2

    name = prefix + secrets.token_hex(6)
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def flush_redis(url: str) -> None:
    """Empty the Redis database the run's lock store uses (its own index: nobody else's keys)."""
    import redis

    redis.Redis.from_url(url).flushdb()


def rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants, KiB, from /proc (0 once it is gone)."""
    total = 0
    for member in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(kid) for kid in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
            found += kids
            frontier += kids
    return found


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status == 200
    except (OSError, urllib.error.URLError):
        return False


@dataclass
class Cluster:
    """The processes of one scale-out run; ``start`` returns when every one is ready."""
    model: Path
    home: Path
    database_url: str
    redis_url: str
    replicas: int = 2
    hub: bool = False
    standin_latency: float = 0.0
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.ports = {"balancer": free_port(), "actions": free_port(), "standin": free_port(),
                      "hub": free_port(), **{f"rasa-{n}": free_port() for n in range(1, self.replicas + 1)}}
        self.token = secrets.token_urlsafe(24)
        self.twilio_token = secrets.token_hex(16)
        self.secrets = {"HOTLINE_HASH_KEY": secrets.token_hex(32),
                        "HOTLINE_DATA_KEYS": Fernet.generate_key().decode("ascii")}

    # Addresses ----------------------------------------------------------------------------------

    @property
    def rasa_names(self) -> list[str]:
        return [f"rasa-{n}" for n in range(1, self.replicas + 1)]

    def url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    @property
    def public_url(self) -> str:
        return self.url("balancer")

    @property
    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in OUTSIDE}
        env.update({
            "HOTLINE_HOME": str(self.home), "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
            "HOTLINE_PUBLIC_URL": self.public_url, "RASA_AUTH_TOKEN": self.token,
            "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": self.twilio_token,
            "TWILIO_API_URL": self.url("standin"), "HOTLINE_NUMBER": HOTLINE,
            # The hub and the stand-in find "the Rasa server" here: the balancer.
            "HOTLINE_RASA_PORT": str(self.ports["balancer"]),
            "HOTLINE_ACTIONS_PORT": str(self.ports["actions"]), "HOTLINE_HUB_PORT": str(self.ports["hub"]),
            "HOTLINE_TWILIO_PORT": str(self.ports["standin"]), "TF_CPP_MIN_LOG_LEVEL": "3",
            "RASA_TELEMETRY_ENABLED": "false", "PYTHONUNBUFFERED": "1", **self.secrets, **self.extra_env})
        return env

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    @property
    def keys(self) -> Keys:
        return load_keys(self.settings, self.env)

    # Processes ----------------------------------------------------------------------------------

    def commands(self) -> dict[str, tuple[list[str], str]]:
        """Each process's command line and readiness URL, from ``hotline up``'s own where it has one."""
        settings = self.settings
        endpoints = str(write_endpoints(settings))
        stack = {child.name: child for child in children(settings, str(self.model), endpoints, self.token)}
        commands = {"actions": (stack["actions"].args, stack["actions"].ready_url)}
        for name in self.rasa_names:
            args = list(stack["rasa"].args)
            args[args.index("--port") + 1] = str(self.ports[name])
            commands[name] = (args, self.url(name, HEALTH_PATH))
        twilio = standin(settings)
        commands["standin"] = (twilio.args + ["--latency", str(self.standin_latency)], twilio.ready_url)
        commands["balancer"] = (
            [sys.executable, "-m", "bench.balancer", "--port", str(self.ports["balancer"]),
             *[arg for name in self.rasa_names for arg in ("--upstream", self.url(name))]],
            self.url("balancer", "/balancer/stats"))
        if self.hub:
            commands["hub"] = (stack["agent hub"].args, stack["agent hub"].ready_url)
        return commands

    def start(self) -> None:
        """Start every process (the replicas together, as a Deployment does) and wait until ready."""
        commands = self.commands()
        for name in commands:
            self.launch(name, commands[name][0])
        self.wait_ready({name: ready for name, (_, ready) in commands.items()})

    def launch(self, name: str, args: list[str]) -> None:
        log = open(self.home / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(args, cwd=PROJECT_ROOT, env=self.env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def wait_ready(self, ready: dict[str, str], timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        pending = dict(ready)
        while pending:
            for name in list(pending):
                if self.processes[name].poll() is not None:
                    raise RuntimeError(f"{name} exited at start; the end of {self.home / (name + '.log')}:\n"
                                       + self.log_tail(name))
                if http_ok(pending[name]):
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout:.0f} s: {', '.join(pending)}; logs in {self.home}")
            time.sleep(0.5)

    def log_tail(self, name: str, size: int = 3000) -> str:
        return (self.home / f"{name}.log").read_text(errors="replace")[-size:]

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a process's whole session (kill -9 by default) and wait until it is gone."""
        process = self.processes[name]
        if process.poll() is None:
            os.killpg(process.pid, sig)
        process.wait(60)

    def restart(self, name: str) -> None:
        """Start a stopped process again with the same command line, and wait until it is ready."""
        args, ready = self.commands()[name]
        self.launch(name, args)
        self.wait_ready({name: ready})

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
