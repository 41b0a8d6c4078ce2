"""The class arrangements API (R11; HTTP only): mounted by the roster's router, in place.

No `from __future__ import annotations` here, as in the roster's router.
"""

import uuid

from fastapi import APIRouter, Response, status

from app.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    Unauthorized,
    Unprocessable,
    problem_responses,
)
from app.pagination import Cursor, Limit
from app.roster import arrangements
from app.roster.arrangements_schemas import (
    ClassArrangementCreate,
    ClassArrangementList,
    ClassArrangementPublic,
    ClassArrangementUpdate,
)
from app.roster.etags import IfMatch
from app.roster.schemas import with_etag
from app.schools.dependencies import ReadSchool, SessionDep, WriteSchool

# No prefix: the roster's router includes these routes under its own prefix and tags.
router = APIRouter()
AUTH = (Unauthorized, Forbidden, NotFound)


@router.get(
    "/class-arrangements",
    summary="List class arrangements",
    description="R11: divisions of students into classes made here, never from ESIS.",
    responses=problem_responses(*AUTH, Unprocessable),
    name="list_class_arrangements",
)
def list_arrangements(
    ctx: ReadSchool,
    session: SessionDep,
    deleted: bool = False,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> ClassArrangementList:
    items, next_cursor = arrangements.list_all(
        session=session, school_id=ctx.school.id, deleted=deleted, limit=limit, cursor=cursor
    )
    return ClassArrangementList(items=items, next_cursor=next_cursor)


@router.post(
    "/class-arrangements",
    status_code=status.HTTP_201_CREATED,
    summary="Create a class arrangement",
    description="R11: the school's own division of students into classes, e.g. for next year.",
    responses=problem_responses(*AUTH, Conflict, Unprocessable),
    name="create_class_arrangement",
)
def create_arrangement(
    data: ClassArrangementCreate, ctx: WriteSchool, session: SessionDep
) -> ClassArrangementPublic:
    return arrangements.create(
        session=session, school_id=ctx.school.id, data=data, actor=ctx.principal.actor
    )


@router.get(
    "/class-arrangements/{arrangement_id}",
    summary="Get a class arrangement",
    description="R11: with its placements and, after a year transition, why it needs review.",
    responses={**with_etag(200, "The class arrangement."), **problem_responses(*AUTH)},
    name="get_class_arrangement",
)
def get_arrangement(
    arrangement_id: uuid.UUID, ctx: ReadSchool, session: SessionDep, response: Response
) -> ClassArrangementPublic:
    found = arrangements.get(
        session=session, school_id=ctx.school.id, arrangement_id=arrangement_id
    )
    response.headers["ETag"] = f'"{found.version}"'
    return found


@router.patch(
    "/class-arrangements/{arrangement_id}",
    summary="Change a class arrangement",
    description="R11: name, description, school year, placements (replacing them). A change "
    "clears the review flag: the school has checked it. Honours `If-Match`.",
    responses={
        **with_etag(200, "The class arrangement as changed."),
        **problem_responses(*AUTH, PreconditionFailed, Unprocessable),
    },
    name="update_class_arrangement",
)
def update_arrangement(
    arrangement_id: uuid.UUID,
    data: ClassArrangementUpdate,
    ctx: WriteSchool,
    session: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> ClassArrangementPublic:
    changed = arrangements.patch(
        session=session,
        school_id=ctx.school.id,
        arrangement_id=arrangement_id,
        data=data,
        if_match=if_match,
        actor=ctx.principal.actor,
    )
    response.headers["ETag"] = f'"{changed.version}"'
    return changed


@router.delete(
    "/class-arrangements/{arrangement_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a class arrangement",
    description="A soft delete, restorable within the retention window.",
    responses=problem_responses(*AUTH),
    name="delete_class_arrangement",
)
def delete_arrangement(
    arrangement_id: uuid.UUID, ctx: WriteSchool, session: SessionDep
) -> Response:
    arrangements.set_deleted(
        session=session,
        school_id=ctx.school.id,
        arrangement_id=arrangement_id,
        deleted=True,
        actor=ctx.principal.actor,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/class-arrangements/{arrangement_id}/restore",
    summary="Restore a deleted class arrangement",
    description="Undoes a deletion of a class arrangement (R11); 409 when it is not deleted.",
    responses=problem_responses(*AUTH, Conflict),
    name="restore_class_arrangement",
)
def restore_arrangement(
    arrangement_id: uuid.UUID, ctx: WriteSchool, session: SessionDep
) -> ClassArrangementPublic:
    arrangements.set_deleted(
        session=session,
        school_id=ctx.school.id,
        arrangement_id=arrangement_id,
        deleted=False,
        actor=ctx.principal.actor,
    )
    return arrangements.get(session=session, school_id=ctx.school.id, arrangement_id=arrangement_id)
