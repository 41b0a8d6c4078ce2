"""Test connection: fetch the school from ESIS now and say what a merge would do, writing
nothing (no snapshot, no run, no event), so "why is this child missing?" has an answer in
seconds rather than the next day."""

from __future__ import annotations

import time
import uuid

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.coupling.activation import readiness_of
from app.coupling.health_schemas import ConnectionTestResult, Gaps, ReadinessPreview
from app.coupling.pulls import PullOptions, _uwlr_connection, get_connection
from app.db import utcnow
from app.esis import uwlr
from app.esis.errors import FormatError
from app.esis.validation import check_snapshot
from app.schools.models import CouplingState, School, UpdatePolicy
from app.sync.repository import load_state
from app.sync.service import plan_merge

KINDS = ("groups", "students", "guardians", "staff")


def _gaps(keys: list[str]) -> Gaps:
    return Gaps(count=len(keys), keys=keys[:50])


def test_connection(
    *,
    sessions: sessionmaker[Session],
    settings: Settings,
    school_id: uuid.UUID,
    options: PullOptions,
) -> ConnectionTestResult:
    with sessions() as session:
        school = session.get_one(School, school_id)
        conn = _uwlr_connection(settings, get_connection(session=session, school_id=school_id))
        brin, branch = school.brin, school.branch
    started = time.perf_counter()
    try:
        answer = options.fetcher(conn=conn, brin=brin, branch=branch, attempts=1, backoff=0.0)
    except uwlr.UwlrError as exc:
        return ConnectionTestResult(
            reachable=False,
            duration_ms=round((time.perf_counter() - started) * 1000),
            error={"kind": exc.kind, "detail": str(exc), "transient": exc.transient},
        )
    ms = round((time.perf_counter() - started) * 1000)
    snapshot = answer.read.snapshot
    warnings = list(answer.read.warnings)
    records = {kind: len(getattr(snapshot, kind)) for kind in KINDS}
    try:
        check_snapshot(snapshot, brin=brin, branch=branch, max_records=options.limits.max_records)
    except FormatError as exc:
        return ConnectionTestResult(
            reachable=False,
            duration_ms=ms,
            error={"kind": "refused", "detail": exc.detail, "errors": exc.extra.get("errors")},
            school_year=snapshot.school.school_year,
            records=records,
        )
    students, guardians = readiness_of(snapshot)
    readiness = ReadinessPreview(
        ready=not students and not guardians,
        students_without_guardian=_gaps([g.key for g in students]),
        guardians_without_email=_gaps([g.key for g in guardians]),
    )
    year = snapshot.school.school_year
    with sessions() as session:
        school = session.get_one(School, school_id)
        active = school.coupling == CouplingState.ACTIVE.value
        transition = school.current_school_year is not None and year > school.current_school_year
        earlier = school.current_school_year is not None and year < school.current_school_year
        plan = plan_merge(
            state=load_state(session=session, school_id=school_id),
            snapshot=snapshot,
            policy=UpdatePolicy(school.update_policy),
            activation=not active,
            run_id=None,
            now=utcnow(),
        )
        session.rollback()  # nothing of this is kept
    warnings.extend(plan.warnings)
    if not active:
        warnings.append(
            "the coupling is not active: a pull would only be stored; the counts are what "
            "activation would do"
        )
    if transition:
        warnings.append(
            f"{year} is a new school year: a pull would start the year transition (preview it); "
            "the counts are those of an ordinary merge"
        )
    if earlier:
        warnings.append(f"{year} is earlier than the school's current year: a pull is refused")
    return ConnectionTestResult(
        reachable=True,
        duration_ms=ms,
        error=None,
        school_year=year,
        records=records,
        would=plan.counts_json(),
        would_start_year_transition=transition,
        warnings=warnings,
        readiness=readiness,
    )
