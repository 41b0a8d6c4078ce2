"""The app factory: routers, error handlers, middleware; nothing else."""

from __future__ import annotations

import gc
import threading
from typing import Any

from fastapi import FastAPI
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

import app.models  # noqa: F401  (every table registered before any query)
from app import health, metrics
from app import openapi as openapi_document
from app.apidocs import install_docs
from app.config import Settings, get_settings
from app.coupling.health_router import router as esis_health_router
from app.coupling.held_router import router as held_runs_router
from app.coupling.router import edexml_router
from app.coupling.router import router as esis_router
from app.db import make_engine, make_sessionmaker
from app.errors import install_error_handlers
from app.feed.router import router as events_router
from app.logging import configure_logging
from app.middleware import BodySizeLimitMiddleware, NulGuardMiddleware, RequestIdMiddleware
from app.migrations import head_revision
from app.roster.corrections_router import router as corrections_router
from app.roster.router import router as roster_router
from app.schools.router import router as schools_router
from app.sync.key_changes_router import router as key_changes_router
from app.sync.router import router as sync_router
from app.webhooks.router import router as webhooks_router
from app.year_transition.router import router as year_transition_router

DESCRIPTION = """
One-way sync of a Dutch primary school's groups, students, guardians and staff from ESIS
into Mijnschoolinfo, by the coupling's rules (R1-R11), keeping provenance of every record
and field.

Authenticate with `Authorization: Bearer <api key>`. Errors are RFC 9457 problem details
(`application/problem+json`). Lists take `limit` (at most 1000) and an opaque `cursor`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level.value)
    app = FastAPI(
        title="esis-sync",
        version="0.1.0",
        description=DESCRIPTION,
        generate_unique_id_function=openapi_document.operation_id,
        # Served by install_docs with local assets (no CDN).
        docs_url=None,
        redoc_url=None,
        openapi_tags=[
            {"name": "schools", "description": "Schools, their policy and API keys."},
            {"name": "esis", "description": "Snapshot push, readiness (R1), activation (R2)."},
            {"name": "sync", "description": "Sync runs (R3) and drift (R5)."},
            {"name": "edexml", "description": "EDEXml files: import before activation, export."},
            {
                "name": "roster",
                "description": "Groups, students, guardians, staff, class "
                "arrangements and reports, with provenance.",
            },
            {"name": "events", "description": "The audit trail and change feed."},
            {"name": "year transition", "description": "R7-R11: preview, guard, apply."},
            {"name": "health", "description": "Liveness and readiness."},
            {"name": "webhooks", "description": "Signed notifications of the change feed."},
        ],
    )
    engine = make_engine(settings.database_url)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.schema_head = head_revision()

    install_error_handlers(app)
    app.add_middleware(NulGuardMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(metrics.MetricsMiddleware)

    install_docs(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(schools_router)
    app.include_router(esis_router)
    app.include_router(edexml_router)
    app.include_router(sync_router)
    app.include_router(roster_router)
    app.include_router(events_router)
    app.include_router(year_transition_router)
    app.include_router(corrections_router)
    app.include_router(webhooks_router)
    app.include_router(esis_health_router)
    app.include_router(held_runs_router)
    app.include_router(key_changes_router)
    app.mount("/console", LazyConsole(app))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document.build(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    _tune_gc()
    return app


class LazyConsole:
    """The console (`app.console.site.create_console`), made at its first request: its pages,
    jinja2 and babel (about 5 MB) stay out of a process nobody signs in to, such as an API
    replica behind a load balancer. Starlette reaches its routes (`url_for`) through `routes`."""

    def __init__(self, parent: FastAPI) -> None:
        self.parent = parent
        self._console: FastAPI | None = None
        self._lock = threading.Lock()

    @property
    def console(self) -> FastAPI:
        if self._console is None:
            with self._lock:
                if self._console is None:
                    from app.console.site import create_console

                    self._console = create_console(self.parent)
        return self._console

    @property
    def routes(self) -> list[BaseRoute]:
        return self.console.routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.console(scope, receive, send)


def _tune_gc() -> None:
    """A merge allocates tens of thousands of short-lived rows at once; the default young
    generation threshold (700) makes the collector run hundreds of times per merge (measured:
    a third of a no-change re-sync). Objects alive at start-up are frozen out of its way."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
