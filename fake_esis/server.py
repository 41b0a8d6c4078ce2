"""A fake ESIS UWLR 2.2 service for tests and demos: real HTTPS with client certificates.

    kit = FakeEsis.generate(tmp_path)             # CA, server cert, client cert + PKCS#12
    with kit.serve() as esis:                      # or FakeEsis(ca=..., server_cert=..., ...)
        esis.script("12AB", "00", answer=edex_bytes, fail_times=2)
        fetch(conn=kit.connection(esis), brin="12AB", branch="00")
        esis.requests                               # what the client sent

The server runs in a background thread on 127.0.0.1 and requires a client certificate signed
by `client_ca`. It checks the SOAPAction header and the autorisatie values (wrong: a Fault),
serves what was scripted per (brin, branch) and records every request it could read.
Every socket has a timeout and leaving the `with` block stops the thread.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from cryptography import x509
from lxml import etree

from app.esis.certs import ClientIdentity, load_client_identity
from app.esis.schemas import EsisSnapshot
from app.esis.uwlr_soap import (
    NS_AUTORISATIE,
    NS_LEERLINGGEGEVENS,
    NS_SOAP,
    SOAP_ACTION,
    UwlrConnection,
)
from app.esis.xml import safe_parser
from fake_esis.documents import default_snapshot, edex_from_snapshot, soap_answer, soap_fault
from fake_esis.pki import PemPair, make_ca, make_cert, pkcs12_bytes

__all__ = [
    "DEFAULT_AUTORISATIE",
    "FakeEsis",
    "FakeEsisKit",
    "Mode",
    "RecordedRequest",
    "edex_from_snapshot",
    "soap_answer",
    "soap_fault",
]

Mode = Literal["ok", "fault", "http_error", "stall", "truncate"]
MODES = ("ok", "fault", "http_error", "stall", "truncate")
PATH = "/uwlr2.2.svc"
MAX_REQUEST_BYTES = 1024 * 1024
DEFAULT_AUTORISATIE = {
    "autorisatiesleutel": "fake-autorisatiesleutel",
    "klantcode": "K0001",
    "klantnaam": "Stichting Testbestuur",
}


# --- server --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake could read (the handshake succeeded and the body parsed)."""

    brin: str | None
    branch: str | None
    schooljaar: str | None  # None when the request left it empty (the current year)
    xsdversie: str | None
    client_subject: str | None  # RFC 4514 subject of the client certificate
    soap_action: str | None
    autorisatiesleutel: str | None
    klantcode: str | None
    klantnaam: str | None


@dataclass
class _Script:
    body: bytes  # the full 200 answer
    mode: Mode
    status: int
    delay: float
    fail_times: int
    failed: int = 0
    served: int = 0


def _text(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    return "".join(t for t in el.itertext() if isinstance(t, str)).strip() or None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test output is not the place for access logs."""

    def _send(
        self, status: int, body: bytes, *, content_type: str = "text/xml; charset=utf-8"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _fault(self, text: str, code: str = "s:Client") -> None:
        self._send(500, soap_fault(text, code))

    def do_GET(self) -> None:
        self._send(405, b"POST only", content_type="text/plain")

    def do_POST(self) -> None:
        fake = self.server.fake
        if self.path.split("?")[0] != PATH:
            self._send(404, b"not found", content_type="text/plain")
            return
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            self.close_connection = True
            self._send(411, b"Content-Length required", content_type="text/plain")
            return
        if int(length) > MAX_REQUEST_BYTES:
            self.close_connection = True
            self._send(413, b"too large", content_type="text/plain")
            return
        raw = self.rfile.read(int(length))
        try:
            envelope = etree.fromstring(raw, safe_parser())
        except etree.XMLSyntaxError:
            self._fault("Het verzoek is geen geldige XML")
            return
        a, ll = f"{{{NS_AUTORISATIE}}}", f"{{{NS_LEERLINGGEGEVENS}}}"
        autorisatie = envelope.find(f"{{{NS_SOAP}}}Header/{a}autorisatie")
        verzoek = envelope.find(f"{{{NS_SOAP}}}Body/{ll}leerlinggegevens_verzoek")
        auth = {
            name: _text(autorisatie.find(a + name)) if autorisatie is not None else None
            for name in DEFAULT_AUTORISATIE
        }
        fields = {
            name: _text(verzoek.find(ll + name)) if verzoek is not None else None
            for name in ("schooljaar", "brincode", "dependancecode", "xsdversie")
        }
        action = self.headers.get("SOAPAction")
        fake._record(
            RecordedRequest(
                brin=fields["brincode"],
                branch=fields["dependancecode"],
                schooljaar=fields["schooljaar"],
                xsdversie=fields["xsdversie"],
                client_subject=self._client_subject(),
                soap_action=action,
                **auth,
            )
        )
        if (action or "").strip().strip('"') != SOAP_ACTION:
            self._fault(f"Onbekende SOAPAction '{(action or '')[:64]}'")
            return
        if verzoek is None:
            self._fault("Geen leerlinggegevens_verzoek in het verzoek")
            return
        if auth != fake.autorisatie:
            self._fault("Autorisatie mislukt: autorisatiesleutel, klantcode of klantnaam onjuist")
            return
        outcome = fake._take(fields["brincode"] or "", fields["dependancecode"] or "")
        if outcome is None:
            self._fault("Onbekende school (brincode/dependancecode)")
            return
        mode, script = outcome
        if mode == "unavailable":
            self._send(
                503, b"<html><body>Service Unavailable</body></html>", content_type="text/html"
            )
        elif mode == "fault":
            self._fault("Interne fout bij het ophalen van de leerlinggegevens", "s:Server")
        elif mode == "http_error":
            self._send(script.status, b"error", content_type="text/plain")
        elif mode == "truncate":
            self._truncated(script.body)
        else:
            if mode == "stall" and fake._stopping.wait(script.delay):
                self.close_connection = True
                return
            self._send(200, script.body)

    def _truncated(self, body: bytes) -> None:
        """Promises the whole answer, sends half of it, then drops the connection."""
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)  # no TLS close_notify: a cut line

    def _client_subject(self) -> str | None:
        conn = self.connection
        der = conn.getpeercert(binary_form=True) if isinstance(conn, ssl.SSLSocket) else None
        if not der:
            return None
        return x509.load_der_x509_certificate(der).subject.rfc4514_string()


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so that server_close() joins the handler threads
    block_on_close = True

    def __init__(self, fake: FakeEsis) -> None:
        self.fake = fake
        super().__init__((fake.host, fake.bind_port), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Runs in the connection's thread: the TLS handshake happens here, not in accept()."""
        fake = self.fake
        request.settimeout(fake.socket_timeout)
        tls = fake._context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        with fake._track(tls):
            try:
                tls.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                fake._handshake_failed(exc)
                _drain(tls)
                return
            _Handler(tls, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is normal here; nothing to print."""


def _drain(tls: ssl.SSLSocket) -> None:
    """After a refused handshake: half-close, then read the client's bytes until it closes.

    Closing at once, with the client's request unread, would make the kernel send a reset
    that can overtake the TLS alert; the client would see "connection reset" instead of the
    certificate error.
    """
    with contextlib.suppress(OSError):
        tls.shutdown(socket.SHUT_WR)  # drops the TLS layer: recv() below is the raw socket
        tls.settimeout(1.0)
        while tls.recv(65536):
            pass


class FakeEsis:
    """A fake ESIS UWLR endpoint; use as a context manager (`with FakeEsis(...) as esis`)."""

    def __init__(
        self,
        *,
        server_cert: PemPair | tuple[bytes, bytes],
        client_ca: bytes,
        ca: bytes | None = None,
        autorisatie: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        socket_timeout: float = 5.0,
        port: int = 0,
    ) -> None:
        """`server_cert`: (cert PEM, key PEM) of the server; `client_ca`: the CA (PEM) client
        certificates must chain to; `ca`: the CA that signed `server_cert`, offered to clients
        as `esis.ca_pem`; `autorisatie`: the expected autorisatiesleutel, klantcode and
        klantnaam (default DEFAULT_AUTORISATIE)."""
        self.host = host
        self.bind_port = port  # 0: any free port
        self.socket_timeout = socket_timeout
        self.ca_pem = ca
        self.autorisatie = dict(autorisatie or DEFAULT_AUTORISATIE)
        if set(self.autorisatie) != set(DEFAULT_AUTORISATIE):
            raise ValueError(f"autorisatie needs exactly {sorted(DEFAULT_AUTORISATIE)}")
        self.requests: list[RecordedRequest] = []
        self.handshake_failures: list[str] = []
        self._handshake_failure = threading.Event()
        self._scripts: dict[tuple[str, str], _Script] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._open: set[ssl.SSLSocket] = set()
        self._context = _server_context(server_cert, client_ca)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FakeEsis:
        if self._server is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-esis",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()  # ends stalls
        server.shutdown()
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:  # unblocks handler threads waiting on a keep-alive connection
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        server.server_close()  # joins the handler threads
        thread.join(timeout=self.socket_timeout)
        self._server = self._thread = None

    def __enter__(self) -> FakeEsis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}{PATH}"

    # -- scripting

    def script(
        self,
        brin: str,
        branch: str = "00",
        *,
        answer: bytes | EsisSnapshot | Mapping[str, Any] | None = None,
        mode: Mode = "ok",
        status: int = 500,
        delay: float = 0.0,
        fail_times: int = 0,
    ) -> None:
        """What to answer for (brin, branch); replaces an earlier script and its counters.

        `answer`: an EDEXml document (root EDEX; wrapped with `soap_answer`), any other bytes
        (served as they are, e.g. a hand-made SOAP envelope), a snapshot or snapshot-like dict,
        or None (a small school with one group and one student).
        `mode`: ok; fault (HTTP 500 SOAP Fault); http_error (HTTP `status`); stall (wait
        `delay` seconds, then answer); truncate (send half the answer, then drop the line).
        `fail_times`: the first N requests get HTTP 503 before the mode applies.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if isinstance(answer, bytes):
            try:
                is_edex = etree.fromstring(answer, safe_parser()).tag == "EDEX"
            except etree.XMLSyntaxError:  # served as it is: a test of a broken answer
                is_edex = False
            body = soap_answer(answer) if is_edex else answer
        else:
            snapshot = answer if answer is not None else default_snapshot(brin, branch)
            body = soap_answer(edex_from_snapshot(snapshot))
        with self._lock:
            self._scripts[(brin.upper(), branch)] = _Script(
                body=body, mode=mode, status=status, delay=delay, fail_times=fail_times
            )

    def served(self, brin: str, branch: str = "00") -> int:
        """How many requests reached the script of (brin, branch), failures included."""
        with self._lock:
            script = self._scripts.get((brin.upper(), branch))
            return script.served if script else 0

    # -- used by the handler

    def _take(self, brin: str, branch: str) -> tuple[str, _Script] | None:
        with self._lock:
            script = self._scripts.get((brin.upper(), branch))
            if script is None:
                return None
            script.served += 1
            if script.failed < script.fail_times:
                script.failed += 1
                return "unavailable", script
            return script.mode, script

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _handshake_failed(self, exc: BaseException) -> None:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        with self._lock:
            self.handshake_failures.append(str(reason))
        self._handshake_failure.set()

    def wait_for_handshake_failure(self, timeout: float = 5.0) -> list[str]:
        """The refused handshakes, once there is one (or none after `timeout` seconds).

        The client can see the refusal before this side's thread has noted it: the
        server sends its alert from inside `do_handshake`, then records the failure.
        """
        self._handshake_failure.wait(timeout)
        with self._lock:
            return list(self.handshake_failures)

    @contextlib.contextmanager
    def _track(self, sock: ssl.SSLSocket) -> Iterator[None]:
        with self._lock:
            self._open.add(sock)
        try:
            yield
        finally:
            with self._lock:
                self._open.discard(sock)
            with contextlib.suppress(OSError):
                sock.close()

    # -- certificates

    @classmethod
    def generate(
        cls,
        tmpdir: Path | str | None = None,
        *,
        password: str = "fake-esis-wachtwoord",  # noqa: S107 - a test PKI
        names: Sequence[str] = (),
    ) -> FakeEsisKit:
        """A CA, a server certificate for 127.0.0.1/localhost (and `names`, such as the
        service name on a compose network) and a client certificate (PEM and
        password-protected PKCS#12), all from one CA; written to `tmpdir` when given."""
        ca = make_ca("Fake ESIS test CA")
        server = make_cert(
            ca,
            "localhost",
            server=True,
            san_ips=["127.0.0.1"],
            san_dns=["localhost", *(n for n in names if n != "localhost")],
        )
        client = make_cert(ca, "esis-sync test client", server=False, organization="esis-sync")
        p12 = pkcs12_bytes(client.cert, client.key, password)
        files: dict[str, Path] = {}
        if tmpdir is not None:
            folder = Path(tmpdir)
            folder.mkdir(parents=True, exist_ok=True)
            contents = {
                "ca.pem": ca.cert,
                "server.pem": server.cert,
                "server.key": server.key,
                "client.pem": client.cert,
                "client.key": client.key,
                "client.p12": p12,
            }
            for name, data in contents.items():
                path = folder / name
                path.write_bytes(data)
                path.chmod(0o600)
                files[name] = path
        return FakeEsisKit(
            ca=ca, server=server, client=client, client_p12=p12, password=password, files=files
        )


def _server_context(server_cert: PemPair | tuple[bytes, bytes], client_ca: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=client_ca.decode("ascii"))
    with tempfile.TemporaryDirectory(prefix="fake-esis-") as tmp:
        cert_file, key_file = os.path.join(tmp, "server.pem"), os.path.join(tmp, "server.key")
        for path, data in ((cert_file, server_cert[0]), (key_file, server_cert[1])):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        context.load_cert_chain(cert_file, key_file)
    return context


@dataclass
class FakeEsisKit:
    """Everything a test needs: the PKI, and helpers for a server and a matching client."""

    ca: PemPair
    server: PemPair
    client: PemPair
    client_p12: bytes
    password: str
    files: dict[str, Path] = field(default_factory=dict)

    def serve(self, **kwargs: Any) -> FakeEsis:
        """A FakeEsis (not started) with this kit's certificates; use it with `with`."""
        return FakeEsis(server_cert=self.server, client_ca=self.ca.cert, ca=self.ca.cert, **kwargs)

    def identity(self) -> ClientIdentity:
        return load_client_identity(pkcs12=self.client_p12, password=self.password)

    def connection(
        self,
        esis: FakeEsis,
        *,
        identity: ClientIdentity | None = None,
        ca_pem: bytes | None = None,
        **autorisatie: str,
    ) -> UwlrConnection:
        """A UwlrConnection to `esis` with this kit's client certificate and the expected
        autorisatie values (override any of them through keyword arguments)."""
        values = {**esis.autorisatie, **autorisatie}
        return UwlrConnection(
            url=esis.url,
            identity=identity or self.identity(),
            ca_pem=ca_pem or self.ca.cert,
            autorisatiesleutel=values["autorisatiesleutel"],
            klantcode=values["klantcode"],
            klantnaam=values["klantnaam"],
            allow_private=True,  # the fake listens on loopback
        )
