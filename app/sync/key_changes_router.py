"""Key-change proposals (HTTP only): list, accept, reject."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.errors import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable, problem_responses
from app.pagination import Cursor, Limit
from app.schools.dependencies import SessionDep, WriteSchool
from app.sync import key_changes
from app.sync.models import KeyChangeStatus
from app.sync.schemas import KeyChangeList, KeyChangePublic

router = APIRouter(prefix="/api/v1/schools/{school}/key-changes", tags=["sync"])
AUTH = (Unauthorized, Forbidden, NotFound)


@router.get(
    "",
    name="list_key_changes",
    summary="List key-change proposals",
    description="Records ESIS stopped sending while, in the same snapshot, a new key arrived "
    "for the same person (a student by name and birth date, a guardian or staff member by "
    "e-mail). Until an admin decides, the new key is not added and the old record is not "
    "marked missing. Oldest first; `status` filters.",
    responses=problem_responses(*AUTH, Unprocessable),
)
def list_key_changes(
    ctx: WriteSchool,
    session: SessionDep,
    status: Annotated[KeyChangeStatus | None, Query(description="Only these.")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> KeyChangeList:
    rows, next_cursor = key_changes.list_proposals(
        session=session, school_id=ctx.school.id, status=status, limit=limit, cursor=cursor
    )
    return KeyChangeList(
        items=[KeyChangePublic.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.post(
    "/{key_change_id}/accept",
    name="accept_key_change",
    summary="Accept a key change",
    description="The record takes ESIS's new key and keeps everything else: local edits, "
    "links, drift and history. The next snapshot applies ESIS's values to it as to any known "
    "record (R5). An event `key-changed` is written. 409 when the proposal was decided, the "
    "record no longer has the old key, or another record has the new key.",
    responses=problem_responses(*AUTH, Conflict),
)
def accept(key_change_id: uuid.UUID, ctx: WriteSchool, session: SessionDep) -> KeyChangePublic:
    return KeyChangePublic.model_validate(
        key_changes.accept(
            session=session,
            school_id=ctx.school.id,
            key_change_id=key_change_id,
            actor=ctx.principal.actor,
        )
    )


@router.post(
    "/{key_change_id}/reject",
    name="reject_key_change",
    summary="Reject a key change",
    description="From the next snapshot on the two are what they seem: the old record is "
    "marked missing in ESIS (R6) and the new key is added (R4). The pair is not proposed "
    "again. An event `key-change-rejected` is written.",
    responses=problem_responses(*AUTH, Conflict),
)
def reject(key_change_id: uuid.UUID, ctx: WriteSchool, session: SessionDep) -> KeyChangePublic:
    return KeyChangePublic.model_validate(
        key_changes.reject(
            session=session,
            school_id=ctx.school.id,
            key_change_id=key_change_id,
            actor=ctx.principal.actor,
        )
    )
