"""UWLR 2.2 client: fetches one school's leerlinggegevens from ESIS (`docs/esis-protocol.md`).

`fetch` POSTs a SOAP 1.1 `leerlinggegevens_verzoek` with a TLS client certificate and the
`autorisatie` SOAP header, and reads the answer's `leerlinggegevens` as an EDEXml document
(`read_edexml`). Every failure is a `UwlrError` with a `kind` and whether it is `transient`;
transient failures (connect errors, timeouts, HTTP 502/503/504, truncated or malformed answers)
are retried with exponential backoff and full jitter. A SOAP Fault, an HTTP 4xx, a TLS or
certificate error is not retried. A failed or partial answer never becomes an empty school.

Error details name kinds, statuses, elements and keys; never names, e-mail addresses or
national ids (a fault string is scrubbed of e-mail addresses and long digit runs).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import random
import re
import secrets
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpcore
import httpx
from cryptography.hazmat.primitives import serialization
from lxml import etree

from app.esis.certs import ClientIdentity
from app.esis.edexml import EdexmlRead, read_edexml
from app.esis.errors import FormatError
from app.esis.uwlr_normalise import (
    normalise_records,
    normalise_school,
    requested_school,
    stored_type,
)
from app.esis.xml import doctype_line, has_doctype, safe_parser, syntax_message

__all__ = [
    "DEFAULT_TIMEOUTS",
    "NS_AUTORISATIE",
    "NS_LEERLINGGEGEVENS",
    "SOAP_ACTION",
    "UwlrConnection",
    "UwlrError",
    "UwlrErrorKind",
    "build_request",
    "client_ssl_context",
    "fetch",
    "parse_answer",
    "requested_school",
    "stored_type",
]

log = logging.getLogger("esis_sync.uwlr")

NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS_SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NS_AUTORISATIE = "http://www.edustandaard.nl/leerresultaten/2/autorisatie"
NS_LEERLINGGEGEVENS = "http://www.edustandaard.nl/leerresultaten/2/leerlinggegevens"
NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSI_TYPE = f"{{{NS_XSI}}}type"
SOAP_ACTION = "HaalLeerlinggegevens"
XSD_VERSION = "2.2"
DEFAULT_TIMEOUTS = httpx.Timeout(connect=10.0, read=120.0, write=30.0, pool=10.0)
MAX_ANSWER_BYTES = 512 * 1024 * 1024
TRANSIENT_STATUS = frozenset({502, 503, 504})
# The EDEXml parts of a leerlinggegevens answer, in the order EDEXml's XSD wants them.
EDEX_PARTS = ("school", "vestigingen", "groepen", "leerlingen", "leerkrachten")

UwlrErrorKind = Literal[
    "request",  # the request cannot be built (bad brin, branch, school year, URL)
    "certificate",  # the client certificate is expired or not yet valid
    "tls",  # TLS handshake or certificate verification failed (either side)
    "connect",  # no connection (refused, DNS, unreachable, no TLS there, no answer in time)
    "address",  # the host is not at a public address, and private ones are not allowed
    "timeout",  # connect/read/write/pool timeout
    "network",  # the connection broke while sending or receiving
    "http",  # an HTTP status other than 200, without a SOAP Fault
    "fault",  # a SOAP Fault
    "truncated",  # the answer stopped before its end
    "malformed",  # the answer is not the expected SOAP/XML (e.g. no leerlinggegevens)
    "too_large",  # the answer is larger than allowed
    "invalid",  # the leerlinggegevens are there but not valid EDEXml data
    "no_changes",  # geenwijzigingen: ESIS says nothing changed (an outcome, not a failure)
    "no_data",  # geengegevens: ESIS has no data for this request (never an empty school)
    "transport",  # any other transport failure
]

_BRIN = re.compile(r"^[0-9]{2}[A-Z]{2}$")
_BRANCH = re.compile(r"^[0-9]{2}$")
_SCHOOL_YEAR = re.compile(r"^[0-9]{4}-[0-9]{4}$")
_EMAIL = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+")
_DIGITS = re.compile(r"\d{6,}")


class UwlrError(Exception):
    """A failed UWLR fetch. `transient` failures may succeed when tried again later."""

    def __init__(
        self,
        kind: UwlrErrorKind,
        *,
        transient: bool,
        detail: str,
        attempts: int = 1,
        status: int | None = None,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind: UwlrErrorKind = kind
        self.transient = transient
        self.detail = detail
        self.attempts = attempts
        self.status = status
        self.errors = errors or []

    def __str__(self) -> str:
        tries = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"UWLR {self.kind}: {self.detail}{tries}"

    def __repr__(self) -> str:
        return (
            f"UwlrError(kind={self.kind!r}, transient={self.transient}, "
            f"attempts={self.attempts}, status={self.status}, detail={self.detail!r})"
        )


@dataclass
class UwlrConnection:
    """Where and how to reach one ESIS customer's UWLR service."""

    url: str  # https://<customer>.rovictonline.nl/uwlr2.2.svc
    identity: ClientIdentity
    ca_pem: bytes | None  # trust store for the server certificate; None = system default
    autorisatiesleutel: str
    klantcode: str
    klantnaam: str
    soap_action: str = SOAP_ACTION
    # The operator's policy: whether the URL may lead to a loopback, private, link-local or
    # other non-public address (tests, a fake ESIS next to the service).
    allow_private: bool = False

    def __repr__(self) -> str:  # the autorisatiesleutel is a secret
        return (
            f"UwlrConnection(url={self.url!r}, subject={self.identity.subject!r}, "
            f"klantcode={self.klantcode!r})"
        )


# --- request -------------------------------------------------------------------------------


def _default_ns(namespace: str) -> Any:
    """An nsmap with a default namespace (lxml-stubs do not allow the None key)."""
    return {None: namespace}


def build_request(
    *, conn: UwlrConnection, brin: str, branch: str, school_year: str | None
) -> bytes:
    """The SOAP 1.1 envelope of a `leerlinggegevens_verzoek` (empty schooljaar = current)."""
    brin = brin.strip().upper()
    if not _BRIN.match(brin):
        raise UwlrError("request", transient=False, detail="brin must be 2 digits + 2 letters")
    if not _BRANCH.match(branch):
        raise UwlrError("request", transient=False, detail="dependancecode must be 2 digits")
    if school_year is not None and not _SCHOOL_YEAR.match(school_year):
        raise UwlrError("request", transient=False, detail="schooljaar must be YYYY-YYYY")
    s, a, ll = (f"{{{ns}}}" for ns in (NS_SOAP, NS_AUTORISATIE, NS_LEERLINGGEGEVENS))
    try:
        envelope = etree.Element(s + "Envelope", nsmap={"s": NS_SOAP})
        header = etree.SubElement(envelope, s + "Header")
        autorisatie = etree.SubElement(header, a + "autorisatie", nsmap=_default_ns(NS_AUTORISATIE))
        for name in ("autorisatiesleutel", "klantcode", "klantnaam"):
            etree.SubElement(autorisatie, a + name).text = getattr(conn, name)
        body = etree.SubElement(envelope, s + "Body")
        verzoek = etree.SubElement(
            body, ll + "leerlinggegevens_verzoek", nsmap=_default_ns(NS_LEERLINGGEGEVENS)
        )
        etree.SubElement(verzoek, ll + "schooljaar").text = school_year or ""
        etree.SubElement(verzoek, ll + "brincode").text = brin
        etree.SubElement(verzoek, ll + "dependancecode").text = branch
        etree.SubElement(verzoek, ll + "xsdversie").text = XSD_VERSION
    except ValueError:  # lxml refuses control characters and NUL bytes in text
        raise UwlrError(
            "request", transient=False, detail="autorisatie values contain invalid characters"
        ) from None
    return etree.tostring(envelope, encoding="utf-8", xml_declaration=True)


# --- answer --------------------------------------------------------------------------------


def _malformed(detail: str, *, transient: bool = True) -> UwlrError:
    return UwlrError("malformed", transient=transient, detail=detail)


def parse_xml(body: bytes) -> etree._Element:
    """Parses a SOAP message safely: no DOCTYPE, no entities, no network, no huge trees.

    A body that ends early is `truncated`, other syntax errors `malformed`; both transient.
    """
    if doctype_line(body) is not None:
        raise _malformed("the answer has a DOCTYPE, which is not allowed", transient=False)
    try:
        root = etree.fromstring(body, safe_parser())
    except etree.XMLSyntaxError as exc:
        message = syntax_message(exc)[:160]
        if _ends_early(body, exc):
            raise UwlrError(
                "truncated", transient=True, detail=f"the answer ends early: {message}"
            ) from None
        raise _malformed(f"the answer is not well-formed XML: {message}") from None
    if has_doctype(root):
        raise _malformed("the answer has a DOCTYPE, which is not allowed", transient=False)
    return root


def _ends_early(body: bytes, exc: etree.XMLSyntaxError) -> bool:
    if not body.strip() or getattr(exc, "code", None) == 77:  # empty; XML_ERR_TAG_NOT_FINISHED
        return True
    line, column = exc.position
    lines = body.split(b"\n")
    return line >= len(lines) and column >= len(lines[-1])


def _local(el: etree._Element) -> str:
    tag = el.tag
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _strings(items: Iterable[str | bytes]) -> Iterator[str]:
    return (item for item in items if isinstance(item, str))


def _child(el: etree._Element, name: str) -> etree._Element | None:
    return next((c for c in el if _local(c) == name), None)


def _scrub(text: str, limit: int = 200) -> str:
    """A fault text with e-mail addresses and long numbers (BSN, phone) removed."""
    text = _DIGITS.sub("[number]", _EMAIL.sub("[e-mail]", " ".join(text.split())))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fault(body: etree._Element) -> str | None:
    """`faultcode: faultstring` of a SOAP 1.1 or 1.2 Fault in `body`, scrubbed; else None."""
    fault = _child(body, "Fault")
    if fault is None:
        return None
    code = _child(fault, "faultcode")
    text = _child(fault, "faultstring")
    if code is None and text is None:  # SOAP 1.2: Code/Value, Reason/Text
        code_el = _child(fault, "Code")
        reason = _child(fault, "Reason")
        code = _child(code_el, "Value") if code_el is not None else None
        text = _child(reason, "Text") if reason is not None else None
    code_text = " ".join((code.text or "").split()) if code is not None else ""
    fault_text = "".join(_strings(text.itertext())) if text is not None else ""
    detail = _scrub(fault_text) or "no faultstring"
    return f"{_scrub(code_text, 64)}: {detail}" if code_text else detail


def _soap_body(root: etree._Element) -> etree._Element:
    if _local(root) != "Envelope" or etree.QName(root).namespace not in (NS_SOAP, NS_SOAP12):
        raise _malformed("the answer is not a SOAP envelope")
    body = _child(root, "Body")
    if body is None:
        raise _malformed("the SOAP envelope has no Body")
    return body


def fault_of(body: bytes) -> str | None:
    """The scrubbed fault text when `body` is a SOAP Fault; None for anything else."""
    try:
        return _fault(_soap_body(parse_xml(body)))
    except UwlrError:
        return None


def _resolve_type(el: etree._Element, extra_ns: dict[str, str]) -> None:
    """Keeps `xsi:type` meaningful once element namespaces are stripped.

    A type in the leerlinggegevens namespace (or none) becomes unprefixed, as in EDEXml; a
    type in another namespace keeps its prefix, declared again on the EDEX root.
    """
    value = el.get(XSI_TYPE)
    if value is None:
        return
    prefix, _, name = value.strip().rpartition(":")
    namespace = el.nsmap.get(prefix or None)
    if not prefix or namespace in (None, NS_LEERLINGGEGEVENS):
        el.set(XSI_TYPE, name)
        return
    assert namespace is not None
    while extra_ns.get(prefix, namespace) != namespace or prefix == "xsi":
        prefix += "x"
    extra_ns[prefix] = namespace
    el.set(XSI_TYPE, f"{prefix}:{name}")


def _to_edex(data: etree._Element) -> bytes:
    """The EDEXml document (root `EDEX`, no namespace) inside a `leerlinggegevens` element."""
    parts = {name: [c for c in data if _local(c) == name] for name in EDEX_PARTS}
    extra_ns: dict[str, str] = {}
    for name in EDEX_PARTS:
        for part in parts[name]:
            for el in part.iter():
                if isinstance(el.tag, str):
                    _resolve_type(el, extra_ns)
    edex = etree.Element("EDEX", nsmap={"xsi": NS_XSI, **extra_ns})
    for name in EDEX_PARTS:
        for part in parts[name]:
            edex.append(part)  # moves the element; no copy of a large answer
    for el in edex.iter():
        if isinstance(el.tag, str):
            el.tag = _local(el)
    etree.cleanup_namespaces(
        edex, top_nsmap={"xsi": NS_XSI, **extra_ns}, keep_ns_prefixes=["xsi", *extra_ns]
    )
    return etree.tostring(edex, encoding="utf-8", xml_declaration=True)


def parse_answer(
    body: bytes, *, today: dt.date | None = None, requested: tuple[str, str] | None = None
) -> EdexmlRead:
    """Reads a UWLR `leerlinggegevens_antwoord`; a Fault or incomplete answer is a UwlrError.

    `today` is handed to `read_edexml` (it decides whether an uitstroomdatum has passed);
    `requested` is the (brin, branch) the answer was asked for. `geenwijzigingen` and
    `geengegevens` are UwlrErrors of their own kinds (`no_changes`, `no_data`), not retried.
    """
    soap_body = _soap_body(parse_xml(body))
    fault = _fault(soap_body)
    if fault is not None:
        raise UwlrError("fault", transient=False, detail=f"SOAP Fault {fault}")
    antwoord = _child(soap_body, "leerlinggegevens_antwoord")
    if antwoord is None:
        raise _malformed("the SOAP Body has no leerlinggegevens_antwoord")
    data = _child(antwoord, "leerlinggegevens")
    if data is None:
        if _child(antwoord, "geenwijzigingen") is not None:
            raise UwlrError(
                "no_changes", transient=False, detail="ESIS answered geenwijzigingen: no changes"
            )
        if _child(antwoord, "geengegevens") is not None:
            raise UwlrError(
                "no_data",
                transient=False,
                detail="ESIS answered geengegevens: it has no data for this school (check the "
                "BRIN and dependance code, and that the school's groups are available for "
                "couplings in ESIS)",
            )
        raise _malformed("the leerlinggegevens_antwoord has no leerlinggegevens")
    school = _child(data, "school")
    if school is None:
        raise _malformed("the leerlinggegevens have no school")
    normalise_school(school, requested)
    notes = normalise_records(data)
    try:
        read = read_edexml(_to_edex(data), today=today)
    except FormatError as exc:
        errors = exc.extra.get("errors")
        raise UwlrError(
            "invalid",
            transient=False,
            detail=f"the leerlinggegevens are not valid EDEXml: {exc.detail}",
            errors=errors if isinstance(errors, list) else None,
        ) from None
    return EdexmlRead(snapshot=read.snapshot, warnings=[*notes, *read.warnings], kept=read.kept)


# --- transport -----------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def client_ssl_context(conn: UwlrConnection) -> ssl.SSLContext:
    """A TLS context presenting the connection's client certificate.

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
    """Raised at connect time; `_transport_error` finds it behind httpx's ConnectError."""


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


def _transport(context: ssl.SSLContext, *, allow_private: bool) -> httpx.HTTPTransport:
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


def _check_address(conn: UwlrConnection) -> None:
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


def _transport_error(exc: httpx.HTTPError) -> UwlrError:
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


def _attempt(
    client: httpx.Client,
    conn: UwlrConnection,
    request: bytes,
    *,
    max_bytes: int,
    today: dt.date | None,
    requested: tuple[str, str] | None = None,
) -> Answer:
    headers = {
        "Content-Type": "text/xml; charset=utf-8",
        "SOAPAction": conn.soap_action,
        "Accept": "text/xml",
    }
    try:
        with client.stream("POST", conn.url, content=request, headers=headers) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise UwlrError("too_large", transient=False, detail="the answer is too large")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise UwlrError("too_large", transient=False, detail="the answer is too large")
                chunks.append(chunk)
            status = response.status_code
    except httpx.HTTPError as exc:
        raise _transport_error(exc) from None
    body = b"".join(chunks)
    if status == 200:
        return Answer(body=body, read=parse_answer(body, today=today, requested=requested))
    if status in TRANSIENT_STATUS:
        raise UwlrError("http", transient=True, detail=f"HTTP {status}", status=status)
    fault = fault_of(body)
    if fault is not None:  # e.g. HTTP 500 with a SOAP Fault: the service said no
        raise UwlrError("fault", transient=False, detail=f"SOAP Fault {fault}", status=status)
    raise UwlrError("http", transient=False, detail=f"HTTP {status}", status=status)


@dataclass(frozen=True)
class Answer:
    """The SOAP answer as received (the service stores it) and what it says."""

    body: bytes
    read: EdexmlRead


def fetch(*args: Any, **kwargs: Any) -> EdexmlRead:
    """`fetch_answer`, for callers that need only the data."""
    return fetch_answer(*args, **kwargs).read


def fetch_answer(
    *,
    conn: UwlrConnection,
    brin: str,
    branch: str,
    school_year: str | None = None,
    timeouts: httpx.Timeout = DEFAULT_TIMEOUTS,
    attempts: int = 4,
    backoff: float = 1.0,
    sleep: Callable[[float], Any] = time.sleep,
    max_bytes: int = MAX_ANSWER_BYTES,
    today: dt.date | None = None,
) -> Answer:
    """Fetches one school (brin + branch) from ESIS; raises UwlrError when it cannot.

    Transient failures are tried again up to `attempts` times in all, sleeping
    `uniform(0, backoff * 2**n)` before retry n (n = 0, 1, ...). The final UwlrError carries
    the number of attempts made.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    if not conn.url.lower().startswith("https://"):
        raise UwlrError("request", transient=False, detail="the UWLR URL must be https")
    request = build_request(conn=conn, brin=brin, branch=branch, school_year=school_year)
    now = dt.datetime.now(dt.UTC)
    if conn.identity.not_after <= now:
        raise UwlrError(
            "certificate",
            transient=False,
            detail=f"the client certificate expired on {conn.identity.not_after.date()}",
        )
    if conn.identity.not_before is not None and conn.identity.not_before > now:
        raise UwlrError(
            "certificate", transient=False, detail="the client certificate is not valid yet"
        )
    _check_address(conn)
    context = client_ssl_context(conn)
    error: UwlrError | None = None
    attempt = 0
    # No proxy from the environment: the address policy applies to the host itself.
    with httpx.Client(
        transport=_transport(context, allow_private=conn.allow_private),
        timeout=timeouts,
        follow_redirects=False,
        trust_env=False,
    ) as client:
        for attempt in range(1, attempts + 1):
            try:
                return _attempt(
                    client,
                    conn,
                    request,
                    max_bytes=max_bytes,
                    today=today,
                    requested=(brin.upper(), branch),
                )
            except UwlrError as exc:
                error = exc
            log.warning(
                "UWLR attempt failed",
                extra={
                    "brin": brin,
                    "branch": branch,
                    "attempt": attempt,
                    "kind": error.kind,
                    "status": error.status,
                    "transient": error.transient,
                },
            )
            if not error.transient or attempt == attempts:
                break
            sleep(random.uniform(0, backoff * 2 ** (attempt - 1)))  # noqa: S311 - jitter only
    assert error is not None
    error.attempts = attempt
    raise error
