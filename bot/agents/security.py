"""The hub's web protections that do not depend on who is logged in: which address a request really
comes from, whether a browser request was sent by the console's own page, and the headers every
response carries.

Behind a reverse proxy every request comes from the proxy's address, so the login throttle would
lock the whole hotline at once: ``X-Forwarded-For`` is believed only when the request comes from
an address listed in ``HOTLINE_TRUSTED_PROXIES`` (anyone else could write any address into it).
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: On every response: the console's content policy, no framing, no sniffing, no referrer, no
#: powerful browser features, no sharing of the window or its resources with other sites.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
#: Over HTTPS only (a browser ignores it over HTTP): the hub's name is never visited in clear again.
HSTS = "max-age=31536000"


def _networks(raw: str) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in raw.split(",") if item.strip())
    except ValueError as error:
        raise ValueError(f"HOTLINE_TRUSTED_PROXIES lists addresses or networks like 10.0.0.5 or "
                         f"10.0.0.0/8, separated by commas: {error}") from None


def _hosts(raw: str) -> frozenset[str]:
    hosts = set()
    for item in filter(None, (part.strip() for part in raw.split(","))):
        netloc = urlsplit(item).netloc
        if not netloc:
            raise ValueError(f"HOTLINE_HUB_ORIGINS lists origins like https://hub.example.org: not {item!r}")
        hosts.add(netloc.lower())
    return frozenset(hosts)


def is_https(request: web.Request) -> bool:
    """Served over TLS, directly or by a proxy saying so (only used to ask for more protection:
    the cookie's Secure flag and HSTS, so a false claim harms only the one who makes it)."""
    return request.secure or request.headers.get("X-Forwarded-Proto") == "https"


@dataclass(frozen=True)
class WebSecurity:
    trusted_proxies: tuple[Network, ...] = ()
    #: Hosts (``host[:port]``) a console page may be served from besides the request's own Host.
    origins: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "WebSecurity":
        env = dict(os.environ if env is None else env)
        return cls(_networks(env.get("HOTLINE_TRUSTED_PROXIES", "")), _hosts(env.get("HOTLINE_HUB_ORIGINS", "")))

    def _trusted(self, address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)

    def client_address(self, request: web.Request) -> str:
        """The address that sent the request: the peer, or through trusted proxies the nearest
        address in ``X-Forwarded-For`` that is not one of them."""
        peer = request.remote or "unknown"
        if not self._trusted(peer):
            return peer
        chain = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
        for address in reversed(chain):
            if not self._trusted(address):
                return address[:64]
        return chain[0][:64] if chain else peer

    def same_origin(self, request: web.Request) -> bool:
        """A browser names the page that sent a request in Origin (or Referer): it must be this hub.
        Requests naming neither come from programs, not from a page another site could make a
        browser send; they still need the console's CSRF header."""
        source = request.headers.get("Origin") or request.headers.get("Referer")
        if source is None:
            return True
        netloc = urlsplit(source).netloc.lower()
        return bool(netloc) and netloc in self._own_hosts(request)

    def _own_hosts(self, request: web.Request) -> set[str]:
        hosts = {request.host.lower()} | self.origins
        forwarded = request.headers.get("X-Forwarded-Host")
        if forwarded and self._trusted(request.remote):
            hosts.add(forwarded.split(",")[0].strip().lower())
        return hosts


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every response gets the headers, errors and files included."""
    response.headers.update(SECURITY_HEADERS)
    if is_https(request):
        response.headers["Strict-Transport-Security"] = HSTS
    if request.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"
