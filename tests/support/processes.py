"""The stack's processes started one by one, for fault tests: any of them can be killed, stopped or
restarted while the others run, which ``hotline up`` (one parent stopping everything when a child
dies) does not allow.

- ``PrivateCluster``: a PostgreSQL cluster of the test's own (``initdb`` into a temporary
  directory, ``pg_ctl`` on a free port), so a test may stop and restart it; the machine's
  PostgreSQL is never touched.
- ``Processes``: the action server, the Rasa server, the Twilio stand-in and the agent hub with
  the command lines, environment and readiness URLs of ``bot.stack`` (``children``, ``standin``),
  each with its own log file.
- ``Texter``: a texter's phone through the stand-in (signed webhooks), or signed webhooks sent
  directly with a fixed ``MessageSid`` and retried like Twilio's retries while they are refused.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path

from twilio.request_validator import RequestValidator

from bot import PROJECT_ROOT
from bot.agents.app import CSRF_HEADER, CSRF_VALUE
from bot.channels.config import WEBHOOK_PATH
from bot.channels.store import conversation_id
from bot.privacy import load_keys
from bot.replay.spawn import OUTSIDE, free_port
from bot.settings import Settings, write_endpoints
from bot.stack import Child, children, standin, twilio_env
from tests.support.stack import wait_for

POSTGRES_BIN = Path(os.environ.get("HOTLINE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
START_TIMEOUT = 300
HOTLINE = "+15145550000"


def http(method: str, url: str, body: dict | bytes | None = None, headers: dict | None = None,
         opener: urllib.request.OpenerDirector | None = None, timeout: float = 10) -> tuple[int, bytes]:
    """One HTTP request; (status, body), 0 when nothing answered."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {**({"Content-Type": "application/json"} if isinstance(body, dict) else {}), **(headers or {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with (opener or urllib.request.build_opener()).open(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster of its own on a free port, in a directory under the system's temporary
    directory (the server's user must reach it: pytest's temporary directories are private to
    root), run as the ``postgres`` user when the tests run as root (``initdb`` refuses root)."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hotline-pg-")))
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str) -> None:
        user = "postgres" if os.geteuid() == 0 else None
        result = subprocess.run([str(POSTGRES_BIN / args[0]), *args[1:]], user=user, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, f"{args[0]}: {result.stdout[-2000:]}{result.stderr[-2000:]}"

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, as in a restart of the server."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        if self.running():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg2

        connection = psycopg2.connect(self.url())
        connection.autocommit = True
        connection.cursor().execute(f"CREATE DATABASE {name}")
        connection.close()
        return self.url(name)


class Processes:
    """The stack's four processes on free ports, state in ``home``, each started, killed, stopped
    or restarted alone. Names: ``actions``, ``rasa``, ``agent hub``, ``twilio stand-in``."""

    def __init__(self, model: Path, home: Path, database_url: str | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        (home / "logs").mkdir(exist_ok=True)
        env = {key: value for key, value in os.environ.items() if key not in OUTSIDE}
        env.update({
            "HOTLINE_HOME": str(home), "HOTLINE_RASA_PORT": str(free_port()),
            "HOTLINE_ACTIONS_PORT": str(free_port()), "HOTLINE_HUB_PORT": str(free_port()),
            "HOTLINE_TWILIO_PORT": str(free_port()), "RASA_AUTH_TOKEN": secrets.token_urlsafe(24),
            "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", "RASA_TELEMETRY_ENABLED": "false",
            **({"DATABASE_URL": database_url} if database_url else {}), **(extra_env or {}),
        })
        self.settings = Settings.from_env(env)
        self.env = {**env, **twilio_env(self.settings, env)}
        self.keys = load_keys(self.settings, self.env)
        endpoints = write_endpoints(self.settings)
        stack = children(self.settings, str(model), str(endpoints), self.env["RASA_AUTH_TOKEN"])
        self.children: dict[str, Child] = {child.name: child for child in [*stack, standin(self.settings)]}

    # Processes -----------------------------------------------------------------------------

    def start(self, *names: str) -> None:
        """Start these processes (all when none named) and wait until each answers."""
        names = names or tuple(self.children)
        for name in names:
            child = self.children[name]
            log = open(self.log_path(name), "ab")
            child.process = subprocess.Popen(child.args, cwd=PROJECT_ROOT, env=self.env, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
        for name in names:
            child = self.children[name]
            up = wait_for(lambda: not child.alive() or child.ready(), timeout=START_TIMEOUT, every=0.5)
            assert up and child.alive(), f"{name} did not start:\n{self.log_tail(name)}"

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a process's group (SIGKILL: no chance to clean up) and wait until it is gone."""
        child = self.children[name]
        os.killpg(child.process.pid, sig)
        child.process.wait(60)

    def stop(self, name: str) -> None:
        self.children[name].stop()

    def restart(self, name: str) -> None:
        self.stop(name)
        self.start(name)

    def stop_all(self) -> None:
        for child in reversed(list(self.children.values())):
            child.stop()

    def log_path(self, name: str) -> Path:
        return self.home / "logs" / f"{name.replace(' ', '_')}.log"

    def log_tail(self, name: str, chars: int = 4000) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    # Addresses -----------------------------------------------------------------------------

    @property
    def rasa(self) -> str:
        return f"http://127.0.0.1:{self.settings.rasa_port}"

    @property
    def standin(self) -> str:
        return f"http://127.0.0.1:{self.settings.twilio_port}"

    @property
    def hub(self) -> str:
        return f"http://127.0.0.1:{self.settings.hub_port}"

    # What the stack did --------------------------------------------------------------------

    def conversation(self, address: str) -> str:
        """Rasa's sender id for a texter's address (an HMAC of the number)."""
        return conversation_id(self.keys, address)

    def tracker(self, address: str) -> dict:
        """Rasa's tracker of the texter's conversation, through Rasa's REST API with the token."""
        query = urllib.parse.urlencode({"token": self.env["RASA_AUTH_TOKEN"]})
        status, body = http("GET", f"{self.rasa}/conversations/{self.conversation(address)}/tracker?{query}")
        assert status == 200, (status, body[:300])
        return json.loads(body)

    def faults(self, status: int, count: int) -> None:
        """The stand-in answers the next ``count`` API calls with ``status`` (500 or 429)."""
        assert http("POST", f"{self.standin}/emulator/faults", {"status": status, "count": count})[0] == 200

    def agent_session(self, name: str, role: str = "agent") -> "HubSession":
        from bot.agents.accounts import Accounts
        from bot.storage import database_url, make_engine

        engine = make_engine(database_url(self.settings))
        password = Accounts(engine).add(name, role)
        engine.dispose()
        return HubSession(self.hub, name, password)


class HubSession:
    """An agent logged in to the hub's API (cookie session, the console's CSRF header)."""

    def __init__(self, base: str, name: str, password: str) -> None:
        self.base, self.name, self.password = base, name, password
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def login(self) -> None:
        status, body = self.post("/api/login", {"username": self.name, "password": self.password})
        assert status == 200, body

    def get(self, path: str) -> tuple[int, object]:
        status, body = http("GET", self.base + path, opener=self.opener)
        return status, json.loads(body) if body else None

    def post(self, path: str, body: dict) -> tuple[int, bytes]:
        return http("POST", self.base + path, body, {CSRF_HEADER: CSRF_VALUE}, opener=self.opener)

    def cookie_header(self) -> str:
        return "; ".join(f"{cookie.name}={cookie.value}" for cookie in self.jar)


class Texter:
    """One texter's phone: messages to the hotline and what the hotline sent back."""

    def __init__(self, processes: Processes, number: str) -> None:
        self.processes, self.number = processes, number
        self.sids: list[str] = []

    @property
    def conversation(self) -> str:
        return self.processes.conversation(self.number)

    def send(self, text: str) -> int:
        """Through the stand-in, which signs and posts Twilio's webhook; the webhook's status."""
        status, body = http("POST", f"{self.processes.standin}/emulator/send",
                            {"from": self.number, "channel": "sms", "body": text}, timeout=30)
        assert status == 200, body
        return json.loads(body)["webhook_status"]

    def webhook(self, text: str, sid: str | None = None) -> tuple[str, int]:
        """Twilio's signed webhook posted directly, with ``sid`` (a new one by default)."""
        sid = sid or "SM" + secrets.token_hex(16)
        params = {"MessageSid": sid, "SmsMessageSid": sid, "AccountSid": self.processes.env["TWILIO_ACCOUNT_SID"],
                  "From": self.number, "To": HOTLINE, "Body": text, "NumMedia": "0"}
        url = self.processes.rasa + WEBHOOK_PATH
        signature = RequestValidator(self.processes.env["TWILIO_AUTH_TOKEN"]).compute_signature(url, params)
        status, _ = http("POST", url, urllib.parse.urlencode(params).encode(),
                         {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})
        return sid, status

    def received(self) -> list[str]:
        query = urllib.parse.urlencode({"to": self.number})
        status, body = http("GET", f"{self.processes.standin}/emulator/messages?{query}")
        assert status == 200
        return [message["body"] for message in json.loads(body)]

    def wait_for(self, count: int, timeout: float = 60.0) -> list[str]:
        """The messages received once there are at least ``count`` (fewer after ``timeout``)."""
        wait_for(lambda: len(self.received()) >= count, timeout)
        return self.received()

    def settled(self, quiet: float = 2.0, timeout: float = 60.0) -> list[str]:
        """The messages received once nothing new came for ``quiet`` seconds: a duplicate or a late
        reply would have arrived by then."""
        deadline = time.monotonic() + timeout
        last, since = self.received(), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet:
            time.sleep(0.2)
            now = self.received()
            if now != last:
                last, since = now, time.monotonic()
        return last
