"""A small round-robin HTTP load balancer for benches and tests: it plays the production one.

Run: ``.venv/bin/python -m bench.balancer --port 8000 --upstream http://127.0.0.1:5005
--upstream http://127.0.0.1:5006``. Production puts a real balancer (a Kubernetes Service, nginx,
a cloud load balancer) in front of the Rasa replicas; this one does the few things they do that
the scale-out tests depend on, so that what the tests show holds behind them:

- requests go to the replicas in turn; Twilio's webhooks have their own turn counter, so that a
  texter's consecutive messages land on different replicas even while delivery callbacks and API
  calls pass through too;
- a replica is used only while its health URL answers 200 (checked every ``--check`` seconds, like
  a readiness probe: taken out after 3 failed checks in a row, as Kubernetes does by default, so a
  replica busy for a moment is not), and one that refuses a connection is skipped at once until
  it answers again;
- a request that could not be delivered is tried on the next replica. For Twilio's webhook and
  status callback this includes a connection lost after sending (nginx: ``proxy_next_upstream
  error timeout non_idempotent``): both are idempotent by ``MessageSid``. Other requests (Rasa's
  API) are retried only when the connection was refused, so they never run twice.

``GET /balancer/stats`` gives requests and failures per replica and, for the webhook, which
replica each ``MessageSid`` went to (tests check that a conversation's messages reached both).
Nothing is logged about a request but its replica and status: never a body.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

logger = logging.getLogger("bench.balancer")

#: Headers that belong to one hop, never forwarded (RFC 9110, section 7.6.1), plus ones we recompute.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "transfer-encoding", "upgrade", "host", "content-length"}
#: Paths whose requests are idempotent by MessageSid: safe to send again after a lost connection.
IDEMPOTENT_PREFIX = "/webhooks/hotline_twilio/"
WEBHOOK_PATH = "/webhooks/hotline_twilio/webhook"


#: Failed readiness checks in a row before a replica gets no more traffic (Kubernetes' default).
FAILURE_THRESHOLD = 3


@dataclass
class Upstream:
    url: str
    healthy: bool = False
    requests: int = 0
    failures: int = 0
    failed_checks: int = 0

    def checked(self, ok: bool) -> None:
        self.failed_checks = 0 if ok else self.failed_checks + 1
        if ok:
            self.healthy = True
        elif self.failed_checks >= FAILURE_THRESHOLD:
            self.healthy = False


@dataclass
class Balancer:
    upstreams: list[Upstream]
    health_path: str
    check_every: float = 1.0
    timeout: float = 30.0
    routes: dict[str, int] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        self.turns = itertools.count()
        self.webhook_turns = itertools.count()

    def candidates(self, webhook: bool) -> list[int]:
        """Replica indexes to try, in order: the next in turn first, healthy ones only (all of them
        when none is known healthy, so a balancer started before its replicas still tries)."""
        healthy = [index for index, upstream in enumerate(self.upstreams) if upstream.healthy]
        pool = healthy or list(range(len(self.upstreams)))
        start = next(self.webhook_turns if webhook else self.turns) % len(pool)
        return pool[start:] + pool[:start]

    async def forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        webhook = request.method == "POST" and request.path == WEBHOOK_PATH
        retry_sent = request.path.startswith(IDEMPOTENT_PREFIX)
        headers = {name: value for name, value in request.headers.items()
                   if name.lower() not in HOP_BY_HOP}
        for index in self.candidates(webhook):
            upstream = self.upstreams[index]
            upstream.requests += 1
            try:
                async with self.session.request(
                        request.method, upstream.url + request.path_qs, data=body,
                        headers=headers, allow_redirects=False) as reply:
                    content = await reply.read()
                    if webhook:
                        self.record_route(body, index)
                    answer = {name: value for name, value in reply.headers.items()
                              if name.lower() not in HOP_BY_HOP}
                    return web.Response(status=reply.status, body=content, headers=answer)
            except aiohttp.ClientConnectorError:
                upstream.failures += 1
                upstream.healthy = False
            except (aiohttp.ClientError, asyncio.TimeoutError):
                upstream.failures += 1
                upstream.healthy = False
                if not retry_sent:
                    break
            logger.warning("replica %d failed a request; trying the next", index)
        return web.Response(status=502, text="no replica answered")

    def record_route(self, body: bytes, index: int) -> None:
        sid = dict(parse_qsl(body.decode("utf-8", errors="replace"))).get("MessageSid")
        if sid:
            self.routes[sid] = index

    async def check_health(self) -> None:
        """Readiness probes: a replica takes traffic only while its health URL answers 200."""
        timeout = aiohttp.ClientTimeout(total=max(2.0, self.check_every))
        while True:
            for upstream in self.upstreams:
                try:
                    async with self.session.get(upstream.url + self.health_path, timeout=timeout) as reply:
                        upstream.checked(reply.status == 200)
                except aiohttp.ClientConnectorError:
                    upstream.checked(False)
                    upstream.healthy = False  # nothing listens: no need to wait for more checks
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    upstream.checked(False)
            await asyncio.sleep(self.check_every)

    async def stats(self, _request: web.Request) -> web.Response:
        return web.json_response({
            "upstreams": [{"url": u.url, "healthy": u.healthy, "requests": u.requests,
                           "failures": u.failures} for u in self.upstreams],
            "routes": self.routes})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_get("/balancer/stats", self.stats)
        app.router.add_route("*", "/{tail:.*}", self.forward)
        app.cleanup_ctx.append(self._lifetime)
        return app

    async def _lifetime(self, _app: web.Application):
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout),
                                             auto_decompress=False)
        checker = asyncio.create_task(self.check_health())
        yield
        checker.cancel()
        await self.session.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Round-robin load balancer for the Rasa replicas (benches, tests)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", action="append", required=True, help="a replica's base URL; repeat")
    parser.add_argument("--health", default="/webhooks/hotline_twilio/",
                        help="path that answers 200 when a replica is ready")
    parser.add_argument("--check", type=float, default=1.0, help="seconds between health checks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    balancer = Balancer([Upstream(url.rstrip("/")) for url in args.upstream], args.health, args.check)
    web.run_app(balancer.app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
