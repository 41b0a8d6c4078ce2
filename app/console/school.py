"""A school's overview, its activation (R1, R2), and its sync runs with a CSV report."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from app.console import queries
from app.console.web import (
    Form,
    SchoolScope,
    error_flash,
    flash,
    redirect,
    render,
    sessions_of,
    settings_of,
    writable,
)
from app.coupling import activation, pulls
from app.coupling.health import HealthState, health_of
from app.errors import DomainError, NotFound
from app.schools.models import CouplingState, School
from app.sync import queries as runs
from app.sync.models import SyncRun

router = APIRouter(prefix="/schools/{school}")
RUN_CHANGES_SHOWN = 200


def next_pull(
    school: School,
    last_pulled_on: dt.date | None,
    now: dt.datetime,
    tz: dt.tzinfo,
    backed_off_until: dt.date | None = None,
) -> dt.datetime | None:
    """When the daily pull (R3) is next due: today's sync time, or tomorrow's once done; while
    the connection is quarantined, not before the sync time of the day its back-off ends
    (`backed_off_until`, `coupling.health`): the schedule skips the days before it."""
    if school.coupling != CouplingState.ACTIVE.value:
        return None
    local = now.astimezone(tz)
    today_slot = dt.datetime.combine(local.date(), school.daily_sync_time, tzinfo=tz)
    if last_pulled_on is not None and last_pulled_on >= local.date():
        due = today_slot + dt.timedelta(days=1)
    else:
        due = max(today_slot, local)
    if backed_off_until is not None:
        resumes = dt.datetime.combine(backed_off_until, school.daily_sync_time, tzinfo=tz)
        due = max(due, resumes)
    return due


@router.get("")
def overview(request: Request, page: SchoolScope) -> Response:
    school = page.school
    settings = settings_of(request)
    with sessions_of(request)() as session:
        health = queries.health(session=session, schools=[school])[0]
        try:
            connection = pulls.get_connection(session=session, school_id=school.id)
        except NotFound:
            connection = None
        ready = (
            activation.readiness(session=session, school_id=school.id)
            if school.coupling != CouplingState.ACTIVE.value
            else None
        )
        recent, _cursor = runs.list_runs(session=session, school_id=school.id, limit=5, cursor=None)
        connection_health = health_of(session=session, settings=settings, school_id=school.id)
    quarantined = connection_health.state == HealthState.QUARANTINED
    return render(
        request,
        "overview.html",
        {
            "page": page,
            "school": school,
            "health": health,
            "connection": connection,
            "readiness": ready,
            "runs": recent,
            "next_pull": next_pull(
                school,
                health.last_pulled_on,
                health.now,
                settings.tz,
                connection_health.next_scheduled_pull_on,
            )
            if connection
            else None,
            "quarantined_after": connection_health.consecutive_failures if quarantined else None,
        },
        user=page.user,
    )


@router.get("/activation")
def activation_page(request: Request, page: SchoolScope) -> Response:
    with sessions_of(request)() as session:
        ready = activation.readiness(session=session, school_id=page.school.id)
    return render(
        request,
        "activation.html",
        {"page": page, "school": page.school, "readiness": ready},
        user=page.user,
    )


@router.post("/activation")
async def activate(request: Request, page: SchoolScope, _form: Form) -> Response:
    writable(page)
    try:
        run = await run_in_threadpool(
            activation.activate,
            sessions=sessions_of(request),
            school_id=page.school.id,
            actor=page.user.principal.actor,
        )
    except DomainError as exc:
        error_flash(request, page.user, exc)
        return redirect(f"{page.base}/activation")
    flash(request, page.user, "activation.done")
    return redirect(f"{page.base}/runs/{run.id}")


def _run(request: Request, page: SchoolScope, run_id: uuid.UUID) -> tuple[SyncRun, int, list[Any]]:
    with sessions_of(request)() as session:
        run = runs.get_run(session=session, school_id=page.school.id, run_id=run_id)
        touched, changes = queries.run_events(
            session=session, school_id=page.school.id, run_id=run_id, limit=RUN_CHANGES_SHOWN
        )
    return run, touched, changes


@router.get("/runs")
def runs_page(request: Request, page: SchoolScope, cursor: str | None = None) -> Response:
    with sessions_of(request)() as session:
        rows, next_cursor = runs.list_runs(
            session=session, school_id=page.school.id, limit=50, cursor=cursor
        )
    return render(
        request,
        "runs.html",
        {"page": page, "school": page.school, "runs": rows, "next_cursor": next_cursor},
        user=page.user,
    )


@router.get("/runs/{run_id}")
def run_page(request: Request, page: SchoolScope, run_id: uuid.UUID) -> Response:
    run, touched, changes = _run(request, page, run_id)
    return render(
        request,
        "run.html",
        {
            "page": page,
            "school": page.school,
            "run": run,
            "touched": touched,
            "changes": changes,
            "shown": RUN_CHANGES_SHOWN,
        },
        user=page.user,
    )


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet runs a cell that starts like a formula; a quote keeps it text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/runs/{run_id}/report.csv")
def run_csv(request: Request, page: SchoolScope, run_id: uuid.UUID) -> Response:
    with sessions_of(request)() as session:
        run = runs.get_run(session=session, school_id=page.school.id, run_id=run_id)
        _touched, changes = queries.run_events(
            session=session, school_id=page.school.id, run_id=run_id, limit=1_000_000
        )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "entity", "name", "value"])
    writer.writerow(["run", "", "status", run.status])
    writer.writerow(["run", "", "kind", run.kind])
    writer.writerow(["run", "", "started_at", run.started_at.isoformat()])
    for entity, counts in sorted(run.counts.items()):
        for name, value in counts.items():
            writer.writerow(["count", entity, name, value])
    for warning in run.warnings:
        writer.writerow(["warning", "", "", _cell(warning)])
    if run.error:
        writer.writerow(["error", "", "", _cell(run.error.get("detail"))])
    for change in changes:
        fields = ";".join(sorted((change["changes"] or {}).keys()))
        writer.writerow(
            ["record", change["entity"], _cell(change["kind"]), f"{change['entity_id']} {fields}"]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{page.school.key}-run-{run.id}.csv"',
            "Cache-Control": "no-store",
        },
    )
