"""Domain exceptions and the one handler that renders every error as RFC 9457 problem+json."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.esis.errors import MAX_ERRORS, FormatError, summarise

log = logging.getLogger("esis_sync.errors")

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "/problems/"


# Every problem type this service answers with; `type` is `/problems/<slug>`, or
# `about:blank` for an unknown path or a wrong method. `tests/test_openapi.py` checks that
# each DomainError and FormatError subclass is listed here and in docs/api.md.
PROBLEM_TYPES: dict[str, str] = {
    "validation": "422: the request (or a snapshot in it) is not valid; `errors` names each field",
    "unauthorized": "401: no key, or an unknown or revoked one",
    "signature": "401: a school with a signing secret got an unsigned, wrongly signed or "
    "stale push",
    "forbidden": "403: the key's role may not do this",
    "not-found": "404: no such record, or another school's (indistinguishable)",
    "conflict": "409: the state does not allow it (e.g. activation before readiness, R1)",
    "precondition-failed": "412: `If-Match` is stale; `current_etag` is the current one",
    "payload-too-large": "413: the body is larger than the configured limit",
    "unsupported-media-type": "415: a body type this operation does not read",
    "too-many-requests": "429: too many snapshots this minute; see `retry_after`",
    "stale-snapshot": "409: the snapshot was generated before the one last applied; it is "
    "not applied, so a school is never rolled back",
    "feed-compacted": "410: the change feed no longer reaches this cursor (events were "
    "compacted); read the roster lists again and resume where the problem says",
    "internal": "500: a server error, logged with the request id; no details here",
    "secret-unreadable": "500: a stored secret does not decrypt with the configured keys",
    "esis-unavailable": "502: ESIS could not be fetched (recorded in a failed pull run)",
    "esis-no-data": "502: ESIS answered a pull with no data for the school (a failed run, "
    "not retried)",
    "secret-key-missing": "503: no secret key is configured, so secrets cannot be stored",
}


class FieldError(BaseModel):
    """One thing wrong in the request, by where it is."""

    field: str = Field(
        max_length=500,
        description="Where: a dotted path (`students[3] (key 00004).birth_date`), a query "
        "parameter, or `body`.",
        examples=["groups[3].key"],
    )
    message: str = Field(max_length=2000, examples=["duplicate key 'G5A'"])
    type: str | None = Field(
        default=None, max_length=100, description="A machine-readable kind, when known."
    )
    line: int | None = Field(
        default=None, ge=1, description="In a file (a contact CSV): the line, from 1."
    )
    column: int | None = Field(
        default=None, ge=1, description="In a file (a contact CSV): the column, from 1."
    )


class ReadinessGap(BaseModel):
    key: str = Field(max_length=64)
    name: str = Field(max_length=500)


class Problem(BaseModel):
    """RFC 9457 problem details. Extra members carry what is wrong; clients must ignore
    members they do not know."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        max_length=100,
        pattern=r"^(about:blank|/problems/[a-z-]+)$",
        description="The problem type: "
        + "; ".join(f"`{PROBLEM_BASE}{slug}` ({text})" for slug, text in PROBLEM_TYPES.items())
        + "; `about:blank` for an unknown path or a method the path does not allow.",
        examples=["/problems/validation"],
    )
    title: str = Field(max_length=200, examples=["Request is not valid"])
    status: int = Field(ge=400, le=599, json_schema_extra={"format": "int32"}, examples=[422])
    detail: str | None = Field(
        default=None, max_length=10000, examples=["groups[3].key: duplicate key 'G5A'"]
    )
    instance: str | None = Field(default=None, max_length=2000)
    errors: list[FieldError] | None = Field(
        default=None, max_length=1000, description="422: each offending field."
    )
    current_etag: str | None = Field(
        default=None, max_length=40, description="412: the record's current `ETag`."
    )
    retry_after: int | None = Field(
        default=None,
        ge=1,
        le=86400,
        json_schema_extra={"format": "int32"},
        description="429: seconds to wait (also the `Retry-After` header).",
    )
    transition_id: str | None = Field(
        default=None,
        max_length=36,
        json_schema_extra={"format": "uuid"},
        description="409: the held year transition to confirm or reject first.",
    )
    students_without_guardian: list[ReadinessGap] | None = Field(
        default=None, max_length=100000, description="409 at activation: the R1 gaps."
    )
    guardians_without_email: list[ReadinessGap] | None = Field(
        default=None, max_length=100000, description="409 at activation: the R1 gaps."
    )
    kind: str | None = Field(
        default=None, max_length=32, description="502: how the fetch from ESIS failed."
    )
    attempts: int | None = Field(
        default=None,
        ge=0,
        le=100,
        json_schema_extra={"format": "int32"},
        description="502: how many times ESIS was tried.",
    )
    transient: bool | None = Field(
        default=None, description="502: whether a later try may succeed."
    )


class DomainError(Exception):
    """Raised by services; carries its HTTP status and problem type."""

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        self.headers = headers or {}


class NotFound(DomainError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(DomainError):
    status, slug, title = 409, "conflict", "Conflict"


class Unprocessable(DomainError):
    status, slug, title = 422, "validation", "Request is not valid"


class PreconditionFailed(DomainError):
    status, slug, title = 412, "precondition-failed", "Precondition failed"


class Unauthorized(DomainError):
    status, slug, title = 401, "unauthorized", "Missing or invalid API key"


class Forbidden(DomainError):
    status, slug, title = 403, "forbidden", "Not allowed for this key"


class PayloadTooLarge(DomainError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class TooManyRequests(DomainError):
    status, slug, title = 429, "too-many-requests", "Too many requests"


class UnsupportedMediaType(DomainError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


def problem_response(
    *,
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug if slug != "about:blank" else slug,
        "title": title,
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    body.update(extra)
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


# Headers a problem response carries, by status (see `problem_response` and receive.py).
PROBLEM_HEADERS: dict[int, dict[str, dict[str, Any]]] = {
    401: {
        "WWW-Authenticate": {
            "description": "`Bearer`: the scheme the API expects (RFC 6750).",
            "schema": {"type": "string", "enum": ["Bearer"]},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait before the next snapshot is accepted.",
            "schema": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 86400},
        }
    },
}


def problem_responses(
    *errors: type[DomainError] | type[FormatError],
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: documents each problem it can answer with (errors of the
    same status share one response, their titles joined)."""
    out: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        if error.status in out:
            known = out[error.status]
            if error.title not in known["description"]:
                known["description"] += f"; {error.title}"
            continue
        out[error.status] = {
            "description": error.title,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        if error.status in PROBLEM_HEADERS:
            out[error.status]["headers"] = dict(PROBLEM_HEADERS[error.status])
    return out


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


# What a client sent wrong, raised by a service or by the ESIS edge: rendered alike.
ClientError = (DomainError, FormatError)


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ClientError)
    return problem_response(
        status=exc.status,
        slug=exc.slug,
        title=exc.title,
        detail=exc.detail,
        headers=exc.headers,
        **exc.extra,
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    found = exc.errors()
    errors = [
        {"field": _location(err["loc"]), "message": err["msg"], "type": err["type"]}
        for err in found[:MAX_ERRORS]
    ]
    extra: dict[str, Any] = {}
    if len(found) > MAX_ERRORS:
        extra["errors_total"] = len(found)
    return problem_response(
        status=422,
        slug="validation",
        title="Request is not valid",
        detail=summarise(errors),
        errors=errors,
        **extra,
    )


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    if exc.status_code == 413:
        return problem_response(
            status=413, slug=PayloadTooLarge.slug, title=PayloadTooLarge.title, detail=detail
        )
    # The middleware's refusals raised while a route reads the body (NUL) carry our type.
    slug = getattr(exc, "slug", None)
    if isinstance(slug, str) and exc.status_code == 422:
        return problem_response(status=422, slug=slug, title=Unprocessable.title, detail=detail)
    return problem_response(status=exc.status_code, slug="about:blank", title=title, detail=detail)


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    # Only the exception's type (and, from the formatter, the request id) is logged: its
    # message, its arguments and the locals of a database error may quote personal data.
    log.error("unhandled error", extra={"error_type": type(exc).__name__})
    return problem_response(
        status=500,
        slug="internal",
        title="Internal server error",
        detail="The error was logged; nothing about it is shown here.",
        # The request may have been left half-read: the connection is not used again.
        headers={"Connection": "close"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(FormatError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
