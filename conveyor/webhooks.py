"""Webhooks' pure parts: signatures, and which targets outgoing requests may reach.

Signatures follow Stripe's scheme. Each attempt is sent with

    X-Conveyor-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

A receiver recomputes the HMAC over the timestamp and the raw body it received, compares in
constant time, and rejects a timestamp further than its tolerance from its clock (default
5 minutes): a captured request replayed later fails, and changing `t` breaks the HMAC.
`verify_signature` is that check, for receivers written in Python.

Targets: a URL's host is resolved and every address it resolves to must be public
(`ipaddress`'s is_global: no private, loopback, link-local, shared, reserved, multicast or
unspecified address, IPv4-mapped IPv6 unwrapped) unless the host or the address is
allow-listed (CONVEYOR_WEBHOOK_ALLOW_HOSTS: host names and CIDR blocks). It is checked when a
subscription is saved and again at each delivery, whose connection then goes to the address
that was checked (no second lookup an attacker's DNS could answer differently: rebinding).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from conveyor.errors import PermanentError

SIGNATURE_HEADER = "X-Conveyor-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
RESOLVE_TIMEOUT_SECONDS = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The X-Conveyor-Signature header's value for `body` sent at `timestamp` (default now)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(
    secret: str, body: bytes, header: str, *, tolerance: float = DEFAULT_TOLERANCE_SECONDS, now: float | None = None
) -> bool:
    """A receiver's check: the header's v1 is the HMAC of this body at its t, and t is within
    `tolerance` seconds of `now` (a replay later than that is refused)."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", []))


class TargetRefused(PermanentError):
    """The URL may not be called: a scheme other than http(s), or an address not public and
    not allow-listed."""


@dataclass(frozen=True)
class AllowList:
    """Hosts and networks outgoing requests may reach although they are not public."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


def _unwrapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_public(address: IPAddress) -> bool:
    address = _unwrapped(address)
    return address.is_global and not address.is_multicast


@dataclass(frozen=True, slots=True)
class Target:
    """A URL checked: where to connect (the address checked) and what to say the host is."""

    url: str
    scheme: str
    host: str
    port: int
    address: str

    @property
    def connect_url(self) -> str:
        """The URL with the checked address in place of the host name (IPv6 in brackets)."""
        parts = urlsplit(self.url)
        host = f"[{self.address}]" if ":" in self.address else self.address
        netloc = f"{host}:{self.port}"
        path = parts.path or "/"
        return f"{self.scheme}://{netloc}{path}" + (f"?{parts.query}" if parts.query else "")

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def url_problem(url: str) -> str | None:
    """What is wrong with a URL's form (None: nothing); no lookup."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "the URL must start with http:// or https://"
    if not parts.hostname:
        return "the URL names no host"
    if parts.username or parts.password:
        return "credentials in the URL are not accepted: use the signing secret"
    if port == 0:
        return "port 0 is not a port"
    if parts.fragment:
        return "the URL may not have a fragment"
    return None


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (a literal address: itself)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


async def check_target(url: str, allow: AllowList) -> Target:
    """Resolve the URL's host and check every address; the target to connect to, or
    TargetRefused naming why not."""
    if problem := url_problem(url):
        raise TargetRefused(problem)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = await resolve(host, port)
    except (OSError, UnicodeError, TimeoutError) as exc:
        raise TargetRefused(f"the host {host!r} does not resolve ({exc})") from None
    if not addresses:
        raise TargetRefused(f"the host {host!r} does not resolve")
    refused = refused_addresses(host, addresses, allow)
    if refused:
        raise TargetRefused(
            f"the host {host!r} resolves to an address that is not public ({', '.join(refused)}); "
            "allow-list it with CONVEYOR_WEBHOOK_ALLOW_HOSTS if it is meant"
        )
    return Target(url, parts.scheme, host, port, addresses[0])


def refused_addresses(host: str, addresses: Sequence[str], allow: AllowList) -> list[str]:
    """The addresses of `host` a request may not go to."""
    if allow.allows_host(host):
        return []
    refused = []
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # a zone index (fe80::1%eth0) is not an address
        if not is_public(address) and not allow.allows_address(_unwrapped(address)):
            refused.append(text)
    return refused
