"""The console as an application of its own, mounted by `app.main` under `/console`.

A sub-application keeps its HTML error pages apart from the API's problem+json handler and
its routes out of the OpenAPI; it shares the parent's settings and database.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.console import login, operator, review, school
from app.console.web import CsrfRefused, SignInRequired, render, sign_in_redirect
from app.errors import DomainError


def create_console(parent: FastAPI) -> FastAPI:
    console = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    console.state.settings = parent.state.settings
    console.state.sessionmaker = parent.state.sessionmaker
    for router in (login.router, operator.router, school.router, review.router):
        console.include_router(router)
    console.mount("/static", StaticFiles(packages=[("app.console", "static")]), name="static")

    def page(request: Request, status: int, msgid: str, detail: str | None = None) -> Response:
        return render(
            request,
            "error.html",
            {"status": status, "msgid": msgid, "detail": detail},
            status=status,
        )

    async def on_sign_in(request: Request, _exc: Exception) -> Response:
        return sign_in_redirect(request)

    async def on_csrf(request: Request, _exc: Exception) -> Response:
        return page(request, 403, "error.csrf")

    async def on_domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        msgid = {403: "error.forbidden", 404: "error.not_found"}.get(exc.status, "error.service")
        return page(request, exc.status, msgid, None if exc.status == 404 else exc.detail)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        msgid = "error.not_found" if exc.status_code == 404 else "error.service"
        return page(request, exc.status_code, msgid)

    async def on_invalid(request: Request, _exc: Exception) -> Response:
        return page(request, 422, "error.invalid")

    console.add_exception_handler(SignInRequired, on_sign_in)
    console.add_exception_handler(CsrfRefused, on_csrf)
    console.add_exception_handler(DomainError, on_domain)
    console.add_exception_handler(StarletteHTTPException, on_http)
    console.add_exception_handler(RequestValidationError, on_invalid)
    return console
