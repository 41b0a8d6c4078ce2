"""`/docs` (Swagger UI) and `/redoc` with their assets served by the service itself.

FastAPI's defaults load Swagger UI and ReDoc from a public CDN (and ReDoc's fonts from
Google), so without internet access `/docs` stays blank: a school's or an operator's closed
network. The assets come from the `fastapi-offline` package (pinned in `uv.lock`), which
bundles Swagger UI (Apache-2.0) and ReDoc (MIT) with their licences; only its files are used.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
PREFIX = "/docs-assets"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
# ReDoc's sidebar shows Redocly's logo from their CDN; the page shows our favicon instead
# (relative to the /redoc page, so that it also works behind a path prefix).
REDOC_CDN_LOGO = b'"https://cdn.redoc.ly/redoc/logo-mini.svg"'
LOCAL_LOGO = b'"docs-assets/favicon.png"'


@cache
def _redoc_js() -> bytes:
    return (ASSETS / "redoc.standalone.js").read_bytes().replace(REDOC_CDN_LOGO, LOCAL_LOGO)


def install_docs(app: FastAPI) -> None:
    """Mount the assets and add `/docs` and `/redoc`; create the app with `docs_url=None`
    and `redoc_url=None`. The pages are not operations of the API (not in the OpenAPI)."""

    async def redoc_js(_request: Request) -> Response:
        return Response(
            _redoc_js(),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    # Before the mount, which would otherwise answer this path with the unpatched file.
    app.add_route(f"{PREFIX}/redoc.standalone.js", redoc_js, include_in_schema=False)
    app.mount(PREFIX, StaticFiles(directory=ASSETS), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{root}{PREFIX}/favicon.png",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT}",
            # No badge that asks the public validator.swagger.io about the document.
            swagger_ui_parameters={"validatorUrl": None},
        )

    async def swagger_ui_redirect(_request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{PREFIX}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{PREFIX}/favicon.png",
            with_google_fonts=False,
        )

    app.add_route("/docs", swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT, swagger_ui_redirect, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
