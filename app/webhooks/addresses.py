"""Server-side request forgery guard for webhook URLs.

A school admin chooses the URL, the service makes the request: without a guard, a URL could
reach the service's own network (a database, a cloud metadata endpoint). Endpoints must be
https, except on loopback (a receiver on the same machine); a name that resolves to a
private, link-local, multicast or otherwise non-public address is refused. The check runs at
registration and again at every delivery, and the delivery connects to the address that was
checked, so a name that changes its answer in between (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(Exception):
    """The URL may not be called; the message says why (no personal data in it)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    address: str  # the checked IP the request connects to
    path: str  # path and query

    @property
    def pinned_url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


def _unwrap(ip: IP) -> IP:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _refused(ip: IP) -> str | None:
    if ip.is_loopback:
        return None
    if ip.is_unspecified or ip.is_multicast:
        return "not a public address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "not a public address"
    return None


def resolve(url: str) -> Target:
    """Check `url` and resolve its host now; raises UnsafeUrl."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UnsafeUrl("the URL must be https")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("the URL may not carry credentials")
    host = parts.hostname
    if not host:
        raise UnsafeUrl("the URL has no host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise UnsafeUrl("the URL's port is not a number") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeUrl(f"the host {host!r} does not resolve") from None
    addresses = [_unwrap(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])) for info in infos]
    for ip in addresses:
        why = _refused(ip)
        if why is not None:
            raise UnsafeUrl(f"the host {host!r} resolves to {why} ({ip})")
    if scheme == "http" and not all(ip.is_loopback for ip in addresses):
        raise UnsafeUrl("the URL must be https (plain http only on loopback)")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, host, port, str(addresses[0]), path)
