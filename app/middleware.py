"""ASGI middleware: request ids, and the body size limit enforced before a body is read."""

from __future__ import annotations

import contextvars
import json
import uuid

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.esis.media import is_json

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        token = request_id_var.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class _TooLarge(HTTPException):
    """An HTTPException, so that FastAPI's body parsing re-raises it as it is."""

    slug = "payload-too-large"

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the body exceeds the limit of {max_bytes} bytes")


class BodySizeLimitMiddleware:
    """413 from Content-Length when it is declared, else while the body streams in."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                too_large = False
            if too_large:
                await self._reject(send)
                return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not response_started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        await send_problem(
            send,
            413,
            "payload-too-large",
            "Request body too large",
            f"the body exceeds the limit of {self.max_bytes} bytes",
            close=True,
            max_bytes=self.max_bytes,
        )


_NUL_ESCAPES = (b"\\u0000", b"\\U0000")


class NulGuardMiddleware:
    """422 for a NUL character anywhere in the path, query or a JSON body.

    No field of this domain can hold one, PostgreSQL's text cannot store one, and refusing it
    at the edge covers every route at once.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        target = scope.get("raw_path", b"") + b"?" + scope.get("query_string", b"")
        if b"%00" in target or b"\x00" in target or "\x00" in scope.get("path", ""):
            await _reject_nul(send)
            return
        if not _may_be_json(scope):
            await self.app(scope, receive, send)
            return
        tail = b""
        started = False

        async def scanning_receive() -> Message:
            nonlocal tail
            message = await receive()
            if message["type"] == "http.request":
                chunk = tail + message.get("body", b"")
                if b"\x00" in chunk or any(e in chunk for e in _NUL_ESCAPES):
                    raise _Nul
                tail = chunk[-5:]
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, scanning_receive, tracking_send)
        except _Nul:
            if not started:
                await _reject_nul(send)


def _may_be_json(scope: Scope) -> bool:
    """Whether any part of the app may read the body as JSON: a JSON type in any case and with
    any parameters, or no Content-Type at all (FastAPI then parses JSON). Every Content-Type
    header counts: the guard must not read another one than the app does."""
    types = [value for name, value in scope["headers"] if name == b"content-type"]
    return not types or any(is_json(value) for value in types)


NUL_DETAIL = "text may not contain NUL characters (\\u0000)"


class _Nul(HTTPException):
    """Raised from `receive` while a route reads the body; rendered by `app.errors`."""

    slug = "validation"

    def __init__(self) -> None:
        super().__init__(422, NUL_DETAIL)


async def _reject_nul(send: Send) -> None:
    await send_problem(send, 422, "validation", "Request is not valid", NUL_DETAIL)


async def send_problem(
    send: Send,
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    close: bool = False,
    **extra: object,
) -> None:
    """An RFC 9457 problem from the middleware, before the app (and its handlers) ran."""
    body = json.dumps(
        {"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail, **extra}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                # The unread rest of a refused body must not be taken for the next request.
                *([(b"connection", b"close")] if close else []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
