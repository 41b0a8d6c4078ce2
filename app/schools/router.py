"""Schools and their API keys (HTTP only; the rules are in service.py)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status

from app.auth import service as auth_service
from app.auth.dependencies import Operator
from app.errors import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable, problem_responses
from app.pagination import Cursor, Limit
from app.schools import service
from app.schools.dependencies import ReadSchool, SessionDep, WriteSchool
from app.schools.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyPublic,
    SchoolCreate,
    SchoolList,
    SchoolPublic,
    SchoolUpdate,
)

router = APIRouter(prefix="/api/v1/schools", tags=["schools"])
AUTH = (Unauthorized, Forbidden)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a school",
    description="Operator only. The school starts with the coupling inactive (R2) and the "
    "default policy: update policy `ignore` (R5), daily sync at the service's daily cut-off "
    "(`ESIS_SYNC_DAILY_CUTOFF`, 17:00 unless set; R3), removal guard 30 %.",
    responses=problem_responses(*AUTH, Conflict, Unprocessable),
)
def create_school(
    data: SchoolCreate, principal: Operator, session: SessionDep, request: Request
) -> SchoolPublic:
    school = service.create_school(
        session=session,
        data=data,
        daily_cutoff=request.app.state.settings.daily_cutoff,
        actor=principal.actor,
    )
    return SchoolPublic.of(school)


@router.get(
    "",
    summary="List schools",
    description="Operator only: every school on this service, ordered by key.",
    responses=problem_responses(*AUTH, Unprocessable),
)
def list_schools(
    _principal: Operator, session: SessionDep, limit: Limit = 100, cursor: Cursor = None
) -> SchoolList:
    rows, next_cursor = service.list_schools(session=session, limit=limit, cursor=cursor)
    return SchoolList(items=[SchoolPublic.of(s) for s in rows], next_cursor=next_cursor)


@router.get(
    "/{school}",
    summary="Get a school",
    description="The school, its coupling state (R2) and its policy (R3, R5, guard).",
    responses=problem_responses(*AUTH, NotFound),
)
def get_school(ctx: ReadSchool) -> SchoolPublic:
    return SchoolPublic.of(ctx.school)


@router.patch(
    "/{school}",
    summary="Change a school's policy",
    description="Update policy (R5), daily sync time (R3), removal guard share and name. "
    "Fields absent from the request stay as they are.",
    responses=problem_responses(*AUTH, NotFound, Unprocessable),
)
def update_school(data: SchoolUpdate, ctx: WriteSchool, session: SessionDep) -> SchoolPublic:
    school = service.update_school(
        session=session, school_id=ctx.school.id, data=data, actor=ctx.principal.actor
    )
    return SchoolPublic.of(school)


@router.get(
    "/{school}/api-keys",
    summary="List a school's API keys",
    description="Keys of this school, revoked ones included. Secrets are never shown again.",
    responses=problem_responses(*AUTH, NotFound),
    name="list_api_keys",
)
def list_keys(ctx: WriteSchool, session: SessionDep) -> ApiKeyList:
    keys = auth_service.list_keys(session=session, school_id=ctx.school.id)
    return ApiKeyList(items=[ApiKeyPublic.model_validate(k, from_attributes=True) for k in keys])


@router.post(
    "/{school}/api-keys",
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key for a school",
    description="Roles `esis` (push snapshots only), `reader` or `admin`. The secret is in "
    "this response only; the service keeps just its hash.",
    responses=problem_responses(*AUTH, NotFound, Unprocessable),
    name="create_api_key",
)
def create_key(data: ApiKeyCreate, ctx: WriteSchool, session: SessionDep) -> ApiKeyCreated:
    key, secret = service.create_school_key(
        session=session, school=ctx.school, data=data, principal=ctx.principal
    )
    return ApiKeyCreated(
        **ApiKeyPublic.model_validate(key, from_attributes=True).model_dump(), secret=secret
    )


@router.delete(
    "/{school}/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke an API key",
    description="The key stops working at once. Revoking is final.",
    responses=problem_responses(*AUTH, NotFound),
    name="revoke_api_key",
)
def revoke_key(key_id: uuid.UUID, ctx: WriteSchool, session: SessionDep) -> Response:
    service.revoke_school_key(
        session=session, school=ctx.school, key_id=key_id, principal=ctx.principal
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
