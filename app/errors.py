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


class Problem(BaseModel):
    """RFC 9457 problem details. Extra members (e.g. `errors`) carry what is wrong."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["/problems/validation"])
    title: str = Field(examples=["Request is not valid"])
    status: int = Field(examples=[422])
    detail: str | None = Field(default=None, examples=["groups[3].key: duplicate key 'G5A'"])
    instance: str | None = None


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


def problem_responses(
    *errors: type[DomainError] | type[FormatError],
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: documents each problem it can answer with."""
    out: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        out[error.status] = {
            "description": error.title,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
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
    errors = [
        {"field": _location(err["loc"]), "message": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]
    return problem_response(
        status=422,
        slug="validation",
        title="Request is not valid",
        detail=summarise(errors),
        errors=errors[:MAX_ERRORS],
    )


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    if exc.status_code == 413:
        return problem_response(
            status=413, slug=PayloadTooLarge.slug, title=PayloadTooLarge.title, detail=detail
        )
    return problem_response(status=exc.status_code, slug="about:blank", title=title, detail=detail)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Only the exception's type is logged: its message may quote personal data.
    log.error(
        "unhandled error",
        extra={"error_type": type(exc).__name__, "path": request.url.path},
    )
    return problem_response(
        status=500,
        slug="internal",
        title="Internal server error",
        detail="The error was logged; nothing about it is shown here.",
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(FormatError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
