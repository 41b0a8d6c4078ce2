"""Sync runs held by the change guard: confirm or reject (HTTP only)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from app.coupling import held
from app.errors import Conflict, Forbidden, NotFound, Unauthorized, problem_responses
from app.schools.dependencies import WriteSchool
from app.sync.schemas import SyncRunPublic

router = APIRouter(prefix="/api/v1/schools/{school}/sync-runs", tags=["sync"])
AUTH = (Unauthorized, Forbidden, NotFound)


async def _decide(
    request: Request, ctx: WriteSchool, run_id: uuid.UUID, confirm: bool
) -> SyncRunPublic:
    run = await run_in_threadpool(
        held.decide,
        sessions=request.app.state.sessionmaker,
        school_id=ctx.school.id,
        run_id=run_id,
        confirm=confirm,
        actor=ctx.principal.actor,
    )
    return SyncRunPublic.model_validate(run)


@router.post(
    "/{run_id}/confirm",
    name="confirm_sync_run",
    summary="Confirm a snapshot the change guard held",
    description="Applies the held snapshot, planned again against the school as it is now "
    "(edits and deletions made since count; the plan made when it was held does not), in one "
    "transaction; the run becomes `applied` and an event `sync-confirmed` is written. 409 when "
    "the run is not held by the change guard, the school moved to another school year, or a "
    "newer snapshot was applied since (reject it then).",
    responses=problem_responses(*AUTH, Conflict),
)
async def confirm(run_id: uuid.UUID, request: Request, ctx: WriteSchool) -> SyncRunPublic:
    return await _decide(request, ctx, run_id, True)


@router.post(
    "/{run_id}/reject",
    name="reject_sync_run",
    summary="Reject a snapshot the change guard held",
    description="Nothing of the snapshot is applied; the run becomes `rejected` and an event "
    "`sync-rejected` is written. The same body sent again is judged afresh.",
    responses=problem_responses(*AUTH, Conflict),
)
async def reject(run_id: uuid.UUID, request: Request, ctx: WriteSchool) -> SyncRunPublic:
    return await _decide(request, ctx, run_id, False)
