"""The UWLR client's transport: TLS with the client certificate, and the address policy.

`client_ssl_context` presents the connection's client certificate (one context per identity
and trust store, kept for the next pull); the transport connects
only to public addresses unless the operator allows private ones (checked again at connect
time, for every address the host resolves to); `transport_error` turns httpx's failures into
a `UwlrError` of the right kind, without quoting more than the exception's name.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import socket
import ssl
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
from cryptography.hazmat.primitives import serialization

from app.esis.uwlr_soap import UwlrConnection, UwlrError


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


# Contexts made, by a digest of the identity and the trust store: one supplier certificate
# usually serves every school, and making a context (the key encrypted, written, read back
# and decrypted) cost about 3.5 ms of each pull. Keyed by digests, so the cache holds no PEM;
# a new certificate or CA is a new key. A context keeps its key, as any context does.
CONTEXTS_KEPT = 32
_contexts: OrderedDict[bytes, ssl.SSLContext] = OrderedDict()
_contexts_lock = threading.Lock()


def _context_key(conn: UwlrConnection) -> bytes:
    parts = (conn.identity.cert_pem, conn.identity.key_pem, conn.ca_pem)
    return b"".join(b"-" if p is None else hashlib.sha256(p).digest() for p in parts)


def clear_client_contexts() -> None:
    """Forget the contexts made so far (the next pull of each identity makes its own)."""
    with _contexts_lock:
        _contexts.clear()


def client_ssl_context(conn: UwlrConnection) -> ssl.SSLContext:
    """A TLS context presenting the connection's client certificate: the one made before
    for the same certificate, key and trust store, else a new one (`load_client_context`);
    the last CONTEXTS_KEPT are kept. A context that cannot be made is not kept."""
    key = _context_key(conn)
    with _contexts_lock:
        found = _contexts.get(key)
        if found is not None:
            _contexts.move_to_end(key)
            return found
    context = load_client_context(conn)
    with _contexts_lock:
        _contexts[key] = context
        while len(_contexts) > CONTEXTS_KEPT:
            _contexts.popitem(last=False)
    return context


def load_client_context(conn: UwlrConnection) -> ssl.SSLContext:
    """A new TLS context presenting the connection's client certificate.

    `load_cert_chain` reads only files: the certificate and the key (encrypted with a one-time
    passphrase, so no plaintext key ever reaches the disk) go to a private temporary directory
    (0700, files 0600) that is removed as soon as the context has loaded them.
    """
    try:
        if conn.ca_pem is not None:
            context = ssl.create_default_context(cadata=conn.ca_pem.decode("ascii"))
        else:
            context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        passphrase = secrets.token_urlsafe(32)
        key = serialization.load_pem_private_key(conn.identity.key_pem, password=None)
        encrypted = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase.encode()),
        )
        with tempfile.TemporaryDirectory(prefix="esis-sync-tls-") as tmp:
            cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            try:
                _write_private(cert_file, conn.identity.cert_pem)
                _write_private(key_file, encrypted)
                context.load_cert_chain(cert_file, key_file, password=passphrase)
            finally:
                cert_file.unlink(missing_ok=True)
                key_file.unlink(missing_ok=True)
    except (ssl.SSLError, ValueError, UnicodeDecodeError) as exc:
        raise UwlrError(
            "tls",
            transient=False,
            detail=f"the client certificate or CA could not be loaded ({type(exc).__name__})",
        ) from None
    return context


def is_public(address: str) -> bool:
    """Whether an IP address is one on the internet: not loopback, private, link-local,
    shared (CGNAT), multicast, reserved or unspecified; IPv4 inside IPv6 counts as IPv4."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


class _NotPublic(httpcore.ConnectError):
    """Raised at connect time; `transport_error` finds it behind httpx's ConnectError."""


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise httpcore.ConnectError("the host cannot be resolved") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _PublicOnlyBackend(httpcore.SyncBackend):
    """Connects only to public addresses, checked after DNS resolution and at connect time
    (a second lookup cannot swap in another address: the checked one is the one dialled).
    Any non-public address among the answers refuses the host."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = _resolve(host, port)
        if not addresses or not all(is_public(a) for a in addresses):
            raise _NotPublic("the host is not at a public address")
        return super().connect_tcp(
            addresses[0], port, timeout, local_address, socket_options=socket_options
        )


def transport(context: ssl.SSLContext, *, allow_private: bool) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(verify=context)
    if not allow_private:
        # httpx takes no network backend; its pool is made again with ours, as httpx makes it.
        transport._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_PublicOnlyBackend(),
        )
    return transport


def check_address(conn: UwlrConnection) -> None:
    """Before any request: a URL that leads to a non-public address is refused with a clear
    reason (the connect-time check stays, for answers that change between lookups)."""
    if conn.allow_private:
        return
    url = httpx.URL(conn.url)
    try:
        addresses = _resolve(url.host, url.port or 443)
    except httpcore.ConnectError:
        return  # reported as a connection failure by the attempt
    if not all(is_public(a) for a in addresses):
        raise _not_public()


def _not_public() -> UwlrError:
    return UwlrError(
        "address",
        transient=False,
        detail="the ESIS host is not at a public internet address; pulls reach only public "
        "addresses unless the operator allows private ones",
    )


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a transport error, if any (an unclean EOF does not count)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError) and not isinstance(
            current, ssl.SSLEOFError | ssl.SSLZeroReturnError
        ):
            return current
        current = current.__cause__ or current.__context__
    return None


# What a failure to connect says, whatever the cause (refused, filtered, not TLS): the run of a
# pull must not tell a school admin which ports of a host are open.
_NO_CONNECTION = "could not connect to the ESIS host over TLS"
# TLS errors that only say something other than a TLS server answered.
_NOT_TLS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "RECORD_LAYER_FAILURE",
        "UNKNOWN_PROTOCOL",
        "HTTP_REQUEST",
        "PACKET_LENGTH_TOO_LONG",
        "UNEXPECTED_EOF_WHILE_READING",
    }
)


def transport_error(exc: httpx.HTTPError) -> UwlrError:
    name = type(exc).__name__
    if any(isinstance(cause, _NotPublic) for cause in _causes(exc)):
        return _not_public()
    tls = _ssl_cause(exc)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) and (
        tls is None or (tls.reason or "").upper() in _NOT_TLS
    ):
        return UwlrError("connect", transient=True, detail=_NO_CONNECTION)
    if tls is not None:
        reason = (tls.reason or type(tls).__name__).replace("_", " ").lower()
        verify = getattr(tls, "verify_message", None)
        detail = f"TLS failed: {reason}" + (f" ({verify})" if verify else "")
        return UwlrError("tls", transient=False, detail=detail[:200])
    if isinstance(exc, httpx.TimeoutException):
        return UwlrError("timeout", transient=True, detail=f"{name}: no answer in time")
    if isinstance(exc, httpx.ConnectError):
        return UwlrError("connect", transient=True, detail=f"{name}: could not connect")
    if isinstance(exc, httpx.RemoteProtocolError):
        return UwlrError(
            "truncated", transient=True, detail=f"{name}: the connection closed mid-answer"
        )
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return UwlrError("network", transient=True, detail=f"{name}: the connection broke")
    return UwlrError("transport", transient=False, detail=f"{name}")
