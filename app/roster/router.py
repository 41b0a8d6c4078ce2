"""The roster API (HTTP only): the same routes for students, guardians, staff and groups.

No `from __future__ import annotations` here: the route factory hands FastAPI real types.
"""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel

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
from app.provenance import Source
from app.roster import arrangements_router, reports, service, views
from app.roster.etags import IfMatch
from app.roster.reports_schemas import MissingReport, ReviewReport
from app.roster.repository import GROUPS, GUARDIANS, STAFF, STUDENTS, Filters, Kind, list_rows
from app.roster.schemas import (
    GroupCreate,
    GroupList,
    GroupPublic,
    GroupUpdate,
    GuardianCreate,
    GuardianList,
    GuardianPublic,
    GuardianUpdate,
    StaffCreate,
    StaffList,
    StaffPublic,
    StaffUpdate,
    StudentCreate,
    StudentList,
    StudentPublic,
    StudentUpdate,
    with_etag,
)
from app.schools.dependencies import ReadSchool, SessionDep, WriteSchool

router = APIRouter(prefix="/api/v1/schools/{school}", tags=["roster"])
AUTH = (Unauthorized, Forbidden, NotFound)


def _routes(
    kind: Kind,
    public: type[BaseModel],
    listing: type[BaseModel],
    update_model: type[BaseModel],
    create_model: type[BaseModel],
    rules: str,
) -> None:
    noun = kind.name
    path = f"/{kind.collection}"

    @router.get(
        path,
        summary=f"List {kind.collection}",
        description=f"The school's {kind.collection}, oldest first, with provenance (source, "
        "local edits, open drift (R5), missing in ESIS since (R6), deletion). Filters: "
        "`source`, `missing_in_esis`, `has_drift`, `deleted`, `q` (name or e-mail), `group_id`"
        + (", `year_level`" if kind in (STUDENTS, GROUPS) else "")
        + ".",
        response_model=listing,
        responses=problem_responses(*AUTH, Unprocessable),
        name=f"list_{kind.collection}",
    )
    def list_(
        ctx: ReadSchool,
        session: SessionDep,
        source: Annotated[Source | None, Query(description="Only this source.")] = None,
        missing_in_esis: Annotated[bool | None, Query(description="R6: missing in ESIS.")] = None,
        has_drift: Annotated[bool | None, Query(description="R5: with open drift.")] = None,
        deleted: Annotated[
            bool, Query(description="Deleted records instead of live ones.")
        ] = False,
        q: Annotated[
            str | None, Query(max_length=100, description="Name or e-mail contains.")
        ] = None,
        group_id: Annotated[uuid.UUID | None, Query(description="In this group.")] = None,
        year_level: Annotated[int | None, Query(ge=0, le=99)] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> Any:
        filters = Filters(
            source=source.value if source else None,
            missing_in_esis=missing_in_esis,
            has_drift=has_drift,
            deleted=deleted,
            q=q,
            group_id=group_id,
            year_level=year_level,
        )
        rows, next_cursor = list_rows(
            session=session,
            kind=kind,
            school_id=ctx.school.id,
            filters=filters,
            limit=limit,
            cursor=cursor,
        )
        return listing(
            items=views.build(session, kind, ctx.school.id, rows), next_cursor=next_cursor
        )

    @router.get(
        path + "/{record_id}",
        summary=f"Get a {noun}",
        description=f"One {noun} with its relations and provenance; the `ETag` header is its "
        "version, for `If-Match` on a later PATCH or DELETE. Deleted records are shown with "
        "their deletion state (restorable within the retention window).",
        response_model=public,
        responses={**with_etag(200, f"The {noun}."), **problem_responses(*AUTH)},
        name=f"get_{noun}",
    )
    def get_(record_id: uuid.UUID, ctx: ReadSchool, session: SessionDep, response: Response) -> Any:
        row = service.get(session=session, kind=kind, school_id=ctx.school.id, record_id=record_id)
        response.headers["ETag"] = service.etag(row)
        return views.build(session, kind, ctx.school.id, [row])[0]

    @router.patch(
        path + "/{record_id}",
        summary=f"Edit a {noun}",
        description=f"Changes the given fields and marks each changed one as edited locally (by "
        f"your key, now). {rules} Send `If-Match` with the ETag you read: a stale one gets 412. "
        "After activation the ESIS key is ESIS's (409).",
        response_model=public,
        responses={
            **with_etag(200, f"The {noun} as changed."),
            **problem_responses(*AUTH, Conflict, PreconditionFailed, Unprocessable),
        },
        name=f"update_{noun}",
    )
    def patch_(
        record_id: uuid.UUID,
        data: update_model,  # type: ignore[valid-type]
        ctx: WriteSchool,
        session: SessionDep,
        response: Response,
        if_match: IfMatch = None,
    ) -> Any:
        row = service.patch(
            session=session,
            kind=kind,
            school_id=ctx.school.id,
            record_id=record_id,
            data=data,
            if_match=if_match,
            actor=ctx.principal.actor,
        )
        response.headers["ETag"] = service.etag(row)
        return views.build(session, kind, ctx.school.id, [row])[0]

    @router.delete(
        path + "/{record_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        summary=f"Delete a {noun}",
        description="A soft delete (R6): the record disappears from lists, is restorable within "
        "the retention window, and the next ESIS snapshot does not bring it back. After the "
        "window its personal data is purged.",
        responses=problem_responses(*AUTH, PreconditionFailed),
        name=f"delete_{noun}",
    )
    def delete_(
        record_id: uuid.UUID, ctx: WriteSchool, session: SessionDep, if_match: IfMatch = None
    ) -> Response:
        service.soft_delete(
            session=session,
            kind=kind,
            school_id=ctx.school.id,
            record_id=record_id,
            if_match=if_match,
            actor=ctx.principal.actor,
        )
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.post(
        path + "/{record_id}/restore",
        summary=f"Restore a deleted {noun}",
        description="Undoes a deletion while the retention window lasts (409 after it, or when "
        "the record is not deleted).",
        response_model=public,
        responses={
            **with_etag(200, f"The {noun}, restored."),
            **problem_responses(*AUTH, Conflict),
        },
        name=f"restore_{noun}",
    )
    def restore_(
        record_id: uuid.UUID,
        request: Request,
        ctx: WriteSchool,
        session: SessionDep,
        response: Response,
    ) -> Any:
        row = service.restore(
            session=session,
            kind=kind,
            school_id=ctx.school.id,
            record_id=record_id,
            retention_days=request.app.state.settings.retention_days,
            actor=ctx.principal.actor,
        )
        response.headers["ETag"] = service.etag(row)
        return views.build(session, kind, ctx.school.id, [row])[0]

    create_rule = (
        "A local group (mid-year entrants, after-school care): never removed automatically, "
        "flagged for review at the year transition (R10)."
        if kind is GROUPS
        else f"A local {noun}, only while the coupling is inactive: after activation ESIS "
        "leads for additions (R4) and this answers 409."
    )

    @router.post(
        path,
        status_code=status.HTTP_201_CREATED,
        summary=f"Create a local {noun}",
        description=create_rule,
        response_model=public,
        responses={
            **with_etag(201, f"The new {noun}."),
            **problem_responses(*AUTH, Conflict, Unprocessable),
        },
        name=f"create_{noun}",
    )
    def create_(
        data: create_model,  # type: ignore[valid-type]
        ctx: WriteSchool,
        session: SessionDep,
        response: Response,
    ) -> Any:
        row = service.create(
            session=session,
            kind=kind,
            school_id=ctx.school.id,
            data=data,
            actor=ctx.principal.actor,
        )
        response.headers["ETag"] = service.etag(row)
        return views.build(session, kind, ctx.school.id, [row])[0]


PERSON_RULES = "R5: ESIS never overwrites an edited field; its differing value shows as drift."
_routes(STUDENTS, StudentPublic, StudentList, StudentUpdate, StudentCreate, PERSON_RULES)
_routes(GUARDIANS, GuardianPublic, GuardianList, GuardianUpdate, GuardianCreate, PERSON_RULES)
_routes(STAFF, StaffPublic, StaffList, StaffUpdate, StaffCreate, PERSON_RULES)
_routes(
    GROUPS,
    GroupPublic,
    GroupList,
    GroupUpdate,
    GroupCreate,
    "An edited ESIS group attribute is kept against ESIS (as drift); a local group's "
    "members are set with `student_ids`.",
)


# --- class arrangements (R11): `arrangements_router.py`, mounted here so the order stays ------

router.include_router(arrangements_router.router)


# --- reports --------------------------------------------------------------------------------


@router.get(
    "/reports/missing-in-esis",
    summary="What ESIS no longer lists (R6)",
    description="Records and links that disappeared from ESIS during the year: they stay, "
    "marked missing since a date, until the year transition (R7-R9) or a user deletes them.",
    responses=problem_responses(*AUTH, Unprocessable),
    name="get_missing_in_esis_report",
)
def missing_report(ctx: WriteSchool, session: SessionDep, limit: Limit = 100) -> MissingReport:
    return reports.missing_in_esis(session=session, school_id=ctx.school.id, limit=limit)


@router.get(
    "/reports/review",
    summary="What the school must check by hand (R10, R11)",
    description="Local groups to remove by hand (R10) and class arrangements to check against "
    "the new year (R11), each with why; flagged at the year transition.",
    responses=problem_responses(*AUTH),
    name="get_review_report",
)
def review_report(ctx: WriteSchool, session: SessionDep) -> ReviewReport:
    return reports.review(session=session, school_id=ctx.school.id)
