"""Sync runs and drift (HTTP only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.errors import Forbidden, NotFound, Unauthorized, Unprocessable, problem_responses
from app.pagination import Cursor, Limit
from app.schools.dependencies import ReadSchool, SessionDep, WriteSchool
from app.sync import drift as drift_service
from app.sync import queries
from app.sync.schemas import (
    DriftAccept,
    DriftAccepted,
    DriftEntity,
    DriftFilter,
    DriftItemPublic,
    DriftList,
    SyncRunList,
    SyncRunPublic,
)

router = APIRouter(prefix="/api/v1/schools/{school}", tags=["sync"])
AUTH = (Unauthorized, Forbidden, NotFound)


@router.get(
    "/sync-runs",
    summary="List sync runs",
    description="Every snapshot received or fetched and what it did (R3), newest first.",
    responses=problem_responses(*AUTH, Unprocessable),
    name="list_sync_runs",
)
def list_runs(
    ctx: ReadSchool, session: SessionDep, limit: Limit = 100, cursor: Cursor = None
) -> SyncRunList:
    rows, next_cursor = queries.list_runs(
        session=session, school_id=ctx.school.id, limit=limit, cursor=cursor
    )
    return SyncRunList(
        items=[SyncRunPublic.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.get(
    "/sync-runs/{run_id}",
    summary="Get a sync run",
    description="One run: status, counts per entity (R4-R6), warnings, error, and for an "
    "activation the matching report (R2).",
    responses=problem_responses(*AUTH),
    name="get_sync_run",
)
def get_run(run_id: uuid.UUID, ctx: ReadSchool, session: SessionDep) -> SyncRunPublic:
    return SyncRunPublic.model_validate(
        queries.get_run(session=session, school_id=ctx.school.id, run_id=run_id)
    )


@router.get(
    "/drift",
    summary="List drift (R5)",
    description="ESIS changes that were not applied, one item per record and field, with our "
    "value, ESIS's value and when it was first and last seen. Drift that ESIS takes back "
    "disappears by itself.",
    responses=problem_responses(*AUTH, Unprocessable),
)
def list_drift(
    ctx: WriteSchool,
    session: SessionDep,
    entity: Annotated[DriftEntity | None, Query(description="Only this kind of record.")] = None,
    field: Annotated[str | None, Query(max_length=64, description="Only this field.")] = None,
    record_id: Annotated[uuid.UUID | None, Query(description="Only this record.")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> DriftList:
    rows, next_cursor = drift_service.list_drift(
        session=session,
        school_id=ctx.school.id,
        where=DriftFilter(entity=entity, field=field, record_id=record_id),
        limit=limit,
        cursor=cursor,
    )
    return DriftList(
        items=[DriftItemPublic.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.post(
    "/drift/accept",
    summary="Accept drift (R5)",
    description="R5: applies ESIS's value for the given drift items (by `ids`, or every item "
    "matching `filter`) and records it as coming from ESIS: the field's local-edit mark is "
    "cleared and an event is written per item.",
    responses=problem_responses(*AUTH, Unprocessable),
)
def accept_drift(data: DriftAccept, ctx: WriteSchool, session: SessionDep) -> DriftAccepted:
    ids = drift_service.accept(
        session=session, school_id=ctx.school.id, request=data, actor=ctx.principal.actor
    )
    return DriftAccepted(accepted=len(ids), ids=ids)
