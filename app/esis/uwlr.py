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
import logging
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import httpx

from app.esis.edexml import EdexmlRead
from app.esis.uwlr_normalise import requested_school, stored_type
from app.esis.uwlr_soap import (
    NS_AUTORISATIE,
    NS_LEERLINGGEGEVENS,
    SOAP_ACTION,
    UwlrConnection,
    UwlrError,
    UwlrErrorKind,
    build_request,
    fault_of,
    parse_answer,
)
from app.esis.uwlr_transport import (
    check_address,
    client_ssl_context,
    is_public,
    transport,
    transport_error,
)

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
    "fetch_answer",
    "is_public",
    "parse_answer",
    "requested_school",
    "stored_type",
]

log = logging.getLogger("esis_sync.uwlr")

DEFAULT_TIMEOUTS = httpx.Timeout(connect=10.0, read=120.0, write=30.0, pool=10.0)
MAX_ANSWER_BYTES = 512 * 1024 * 1024
TRANSIENT_STATUS = frozenset({502, 503, 504})


def _attempt(
    client: httpx.Client,
    conn: UwlrConnection,
    request: bytes,
    *,
    max_bytes: int,
    today: dt.date | None,
    requested: tuple[str, str] | None = None,
    gate: AbstractContextManager[Any] = nullcontext(),
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
        raise transport_error(exc) from None
    body = b"".join(chunks)
    if status == 200:
        with gate:
            read = parse_answer(body, today=today, requested=requested)
        return Answer(body=body, read=read)
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
    gate: AbstractContextManager[Any] = nullcontext(),
) -> Answer:
    """Fetches one school (brin + branch) from ESIS; raises UwlrError when it cannot.

    Transient failures are tried again up to `attempts` times in all, sleeping
    `uniform(0, backoff * 2**n)` before retry n (n = 0, 1, ...). The final UwlrError carries
    the number of attempts made. The answer is read inside `gate` (a worker's lock: its pulls
    take turns for the CPU, while their waits for ESIS overlap).
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
    check_address(conn)
    context = client_ssl_context(conn)
    error: UwlrError | None = None
    attempt = 0
    # No proxy from the environment: the address policy applies to the host itself.
    with httpx.Client(
        transport=transport(context, allow_private=conn.allow_private),
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
                    gate=gate,
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
