"""The year transition (HTTP only): preview, start, confirm or reject, read."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from app.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unprocessable,
    problem_responses,
)
from app.pagination import Cursor, Limit
from app.schools.dependencies import SessionDep, WriteSchool
from app.year_transition import flow
from app.year_transition.schemas import (
    YearTransitionList,
    YearTransitionPreview,
    YearTransitionPublic,
    YearTransitionStart,
)

router = APIRouter(prefix="/api/v1/schools/{school}/year-transitions", tags=["year transition"])
AUTH = (Unauthorized, Forbidden, NotFound)


@router.post(
    "/preview",
    summary="Preview the year transition (R7-R11)",
    description="A dry run against the latest snapshot of a new school year: students to "
    "remove (R7), guardians whose children all leave (R8), staff no longer active (R9), ESIS "
    "groups that end, new groups and memberships, local groups (R10) and class arrangements "
    "(R11) to flag, and the personal changes that stay drift (R5). Nothing changes. Lists are "
    "paged together with `limit` and `cursor`.",
    responses=problem_responses(*AUTH, Conflict, Unprocessable),
    name="preview_year_transition",
)
def preview(
    ctx: WriteSchool, session: SessionDep, limit: Limit = 100, cursor: Cursor = None
) -> YearTransitionPreview:
    report, next_cursor = flow.preview(
        session=session, school_id=ctx.school.id, limit=limit, cursor=cursor
    )
    return YearTransitionPreview(report=report, next_cursor=next_cursor)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Start, confirm or reject a year transition",
    description="Without a body's `transition_id`: start the transition against the latest "
    "snapshot of a new school year (the first such snapshot ESIS sends starts one by itself). "
    "Applied in one transaction (R7-R11: removals are soft deletes restorable within the "
    "retention window; local groups are never removed, R10), unless it would remove more than "
    "the school's removal-guard share of its students or the snapshot has no students: then "
    "it is held, nothing changes, and an event announces it. With `transition_id` and "
    "`confirm`: apply (true) or reject (false) a held transition.",
    responses={
        200: {"model": YearTransitionPublic, "description": "A held transition decided."},
        **problem_responses(*AUTH, Conflict, Unprocessable),
    },
    name="start_year_transition",
)
async def start(
    data: YearTransitionStart, request: Request, response: Response, ctx: WriteSchool
) -> YearTransitionPublic:
    sessions = request.app.state.sessionmaker
    if data.transition_id is None:
        if data.confirm is not None:
            raise Unprocessable("confirm: only with a transition_id")
        transition = await run_in_threadpool(
            flow.start_by_admin,
            sessions=sessions,
            school_id=ctx.school.id,
            actor=ctx.principal.actor,
        )
    else:
        if data.confirm is None:
            raise Unprocessable("confirm: say true (apply) or false (reject)")
        transition = await run_in_threadpool(
            flow.decide_held,
            sessions=sessions,
            school_id=ctx.school.id,
            transition_id=data.transition_id,
            confirm=data.confirm,
            actor=ctx.principal.actor,
        )
        response.status_code = status.HTTP_200_OK
    return YearTransitionPublic.model_validate(transition)


@router.get(
    "",
    summary="List year transitions",
    description="Every transition of the school, newest first, held ones included (R7-R11).",
    responses=problem_responses(*AUTH),
    name="list_year_transitions",
)
def list_transitions(ctx: WriteSchool, session: SessionDep) -> YearTransitionList:
    rows = flow.list_all(session=session, school_id=ctx.school.id)
    return YearTransitionList(items=[YearTransitionPublic.model_validate(r) for r in rows])


@router.get(
    "/{transition_id}",
    summary="Get a year transition",
    description="Its status, why it was held, and its report (R7-R11), as stored when it was "
    "decided.",
    responses=problem_responses(*AUTH),
    name="get_year_transition",
)
def get_transition(
    transition_id: uuid.UUID, ctx: WriteSchool, session: SessionDep
) -> YearTransitionPublic:
    return YearTransitionPublic.model_validate(
        flow.get(session=session, school_id=ctx.school.id, transition_id=transition_id)
    )
