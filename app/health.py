"""Liveness and readiness for orchestrators; no auth, no personal data."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from app.migrations import current_revision

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    detail: str | None = Field(default=None, max_length=500)


@router.get(
    "/healthz",
    summary="Liveness",
    description="The process is up (no database check; see `/readyz`).",
    name="get_liveness",
)
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness",
    description="The database is reachable and its schema is at the migration head.",
    response_model=Health,
    responses={503: {"model": Health, "description": "Not ready"}},
    name="get_service_readiness",
)
def readyz(request: Request) -> JSONResponse:
    head: str | None = request.app.state.schema_head
    try:
        current = current_revision(request.app.state.engine)
    except SQLAlchemyError:
        body = Health(status="unavailable", detail="database unreachable")
        return JSONResponse(body.model_dump(), status_code=503)
    if current != head:
        body = Health(
            status="unavailable",
            detail=f"schema at {current or 'nothing'}, expected {head}: run `esis-sync migrate`",
        )
        return JSONResponse(body.model_dump(), status_code=503)
    return JSONResponse(Health(status="ok").model_dump())
