"""What the rules leave to a person: drift (R5), missing in ESIS and deleted locally (R6),
local groups and class arrangements (R10, R11), held year transitions (R7-R11)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from app.console import queries
from app.console.web import (
    Form,
    SchoolScope,
    error_flash,
    flash,
    parse_ids,
    redirect,
    render,
    sessions_of,
    settings_of,
    writable,
)
from app.db import begin_write
from app.errors import Conflict, DomainError
from app.roster import reports
from app.roster import service as roster
from app.roster.repository import GUARDIANS, STUDENTS, Filters, Kind, list_rows
from app.roster.views import display_name
from app.sync import drift
from app.sync.schemas import DriftAccept, DriftEntity, DriftFilter
from app.year_transition import flow
from app.year_transition.models import TransitionStatus

router = APIRouter(prefix="/schools/{school}")
DRIFT_PAGE = 200
PREVIEW_PAGE = 50
RESTORABLE: dict[str, Kind] = {"student": STUDENTS, "guardian": GUARDIANS}


ENTITIES: tuple[DriftEntity, ...] = get_args(DriftEntity)


def _entity(value: str | None) -> DriftEntity | None:
    for entity in ENTITIES:
        if value == entity:
            return entity
    return None


@router.get("/drift")
def drift_page(
    request: Request,
    page: SchoolScope,
    entity: Annotated[str, Query(max_length=32)] = "",
    field: Annotated[str, Query(max_length=64)] = "",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    where = DriftFilter(entity=_entity(entity), field=field or None)
    with sessions_of(request)() as session:
        items, next_cursor = drift.list_drift(
            session=session,
            school_id=page.school.id,
            where=where,
            limit=DRIFT_PAGE,
            cursor=cursor,
        )
        names = queries.record_names(
            session=session,
            school_id=page.school.id,
            records=[(i.entity, i.record_id) for i in items],
        )
    groups: dict[tuple[str, uuid.UUID], list[Any]] = {}
    for item in items:
        groups.setdefault((item.entity, item.record_id), []).append(item)
    return render(
        request,
        "drift.html",
        {
            "page": page,
            "school": page.school,
            "groups": [
                {"entity": e, "id": r, "name": names.get((e, r), "-"), "items": rows}
                for (e, r), rows in groups.items()
            ],
            "count": len(items),
            "entity": entity if where.entity else "",
            "field": field,
            "entities": list(ENTITIES),
            "next_cursor": next_cursor,
        },
        user=page.user,
    )


@router.post("/drift/accept")
def accept_drift(request: Request, page: SchoolScope, form: Form) -> Response:
    writable(page)
    entity, field = _entity(str(form.get("entity") or "")), str(form.get("field") or "")
    if form.get("scope") == "filter":
        accept = DriftAccept(filter=DriftFilter(entity=entity, field=field or None))
    else:
        ids = parse_ids(form.getlist("ids"))
        if not ids:
            flash(request, page.user, "drift.none_chosen")
            return redirect(_back(page, entity, field))
        accept = DriftAccept(ids=ids)
    try:
        with sessions_of(request)() as session:
            begin_write(session)
            accepted = drift.accept(
                session=session,
                school_id=page.school.id,
                request=accept,
                actor=page.user.principal.actor,
            )
            session.commit()
    except DomainError as exc:
        error_flash(request, page.user, exc)
    else:
        flash(request, page.user, "drift.accepted", n=len(accepted))
    return redirect(_back(page, entity, field))


def _back(page: SchoolScope, entity: DriftEntity | None, field: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in (("entity", entity or ""), ("field", field)) if v)
    return f"{page.base}/drift" + (f"?{query}" if query else "")


@router.get("/missing")
def missing_page(request: Request, page: SchoolScope) -> Response:
    with sessions_of(request)() as session:
        report = reports.missing_in_esis(session=session, school_id=page.school.id, limit=200)
    return render(
        request,
        "missing.html",
        {"page": page, "school": page.school, "report": report},
        user=page.user,
    )


@router.get("/deleted")
def deleted_page(request: Request, page: SchoolScope) -> Response:
    sections = []
    with sessions_of(request)() as session:
        for name, kind in RESTORABLE.items():
            rows, _next = list_rows(
                session=session,
                kind=kind,
                school_id=page.school.id,
                filters=Filters(deleted=True),
                limit=200,
                cursor=None,
            )
            sections.append(
                {
                    "kind": name,
                    "rows": [
                        {
                            "id": r["id"],
                            "name": display_name(dict(r)),
                            "deleted_at": r["deleted_at"],
                            "purged": r["tombstoned_at"] is not None,
                        }
                        for r in rows
                    ],
                }
            )
    return render(
        request,
        "deleted.html",
        {
            "page": page,
            "school": page.school,
            "sections": sections,
            "retention_days": settings_of(request).retention_days,
        },
        user=page.user,
    )


@router.post("/deleted/{kind}/{record_id}/restore")
def restore(
    request: Request, page: SchoolScope, kind: str, record_id: uuid.UUID, _form: Form
) -> Response:
    writable(page)
    if kind not in RESTORABLE:
        raise Conflict(f"a {kind} is not restored here")
    try:
        with sessions_of(request)() as session:
            begin_write(session)
            roster.restore(
                session=session,
                kind=RESTORABLE[kind],
                school_id=page.school.id,
                record_id=record_id,
                retention_days=settings_of(request).retention_days,
                actor=page.user.principal.actor,
            )
            session.commit()
    except DomainError as exc:
        error_flash(request, page.user, exc)
    else:
        flash(request, page.user, "deleted.restored")
    return redirect(f"{page.base}/deleted")


@router.get("/review")
def review_page(request: Request, page: SchoolScope) -> Response:
    with sessions_of(request)() as session:
        report = reports.review(session=session, school_id=page.school.id)
    return render(
        request,
        "review.html",
        {"page": page, "school": page.school, "report": report},
        user=page.user,
    )


@router.get("/year-transition")
def year_transition_page(
    request: Request, page: SchoolScope, cursor: Annotated[str | None, Query(max_length=200)] = None
) -> Response:
    preview: dict[str, Any] | None = None
    next_cursor: str | None = None
    unavailable: str | None = None
    with sessions_of(request)() as session:
        try:
            preview, next_cursor = flow.preview(
                session=session, school_id=page.school.id, limit=PREVIEW_PAGE, cursor=cursor
            )
        except DomainError as exc:
            unavailable = exc.detail
        transitions = flow.list_all(session=session, school_id=page.school.id)
    return render(
        request,
        "year_transition.html",
        {
            "page": page,
            "school": page.school,
            "preview": preview,
            "next_cursor": next_cursor,
            "unavailable": unavailable,
            "held": [t for t in transitions if t.status == TransitionStatus.HELD.value],
            "decided": [t for t in transitions if t.status != TransitionStatus.HELD.value][:10],
        },
        user=page.user,
    )


@router.post("/year-transition/{transition_id}")
async def decide(
    request: Request, page: SchoolScope, transition_id: uuid.UUID, form: Form
) -> Response:
    writable(page)
    decision = form.get("decision")
    if decision not in ("confirm", "reject"):
        flash(request, page.user, "error.service", detail="decision: confirm or reject")
        return redirect(f"{page.base}/year-transition")
    try:
        await run_in_threadpool(
            flow.decide_held,
            sessions=sessions_of(request),
            school_id=page.school.id,
            transition_id=transition_id,
            confirm=decision == "confirm",
            actor=page.user.principal.actor,
        )
    except DomainError as exc:
        error_flash(request, page.user, exc)
    else:
        flash(request, page.user, f"year.{decision}ed")
    return redirect(f"{page.base}/year-transition")
