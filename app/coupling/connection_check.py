"""Test connection: fetch the school from ESIS now and say what a merge would do, writing
nothing (no snapshot, no run, no event), so "why is this child missing?" has an answer in
seconds rather than the next day.

The merge is planned as a pull plans it (`sync.merge.merge_into`): with key-change pairing
and with the records set aside for an unusable value left as they are. The report adds what
the change guard (`sync.guard.check`, with the school's shares) would decide and which
key-change proposals the merge would make; neither is stored.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.coupling import held
from app.coupling.activation import readiness_of
from app.coupling.health_schemas import (
    ConnectionTestResult,
    Gaps,
    GuardPreview,
    KeyChangePreview,
    ReadinessPreview,
)
from app.coupling.pulls import PullOptions, _uwlr_connection, get_connection
from app.coupling.receive import in_pause
from app.db import utcnow
from app.esis.errors import FormatError
from app.esis.leniency import keep_map
from app.esis.uwlr_soap import UwlrError
from app.esis.validation import check_snapshot
from app.schools.models import CouplingState, School, UpdatePolicy
from app.sync.guard import check
from app.sync.plan import Plan, State
from app.sync.repository import load_state
from app.sync.service import plan_merge

KINDS = ("groups", "students", "guardians", "staff")


def _gaps(keys: list[str]) -> Gaps:
    return Gaps(count=len(keys), keys=keys[:50])


def _key_changes(plan: Plan, state: State) -> list[KeyChangePreview]:
    return [
        KeyChangePreview(
            entity=p["entity"],
            record_id=p["record_id"],
            old_key=p["old_key"],
            new_key=p["new_key"],
            matched_by=p["matched_by"],
            already_proposed=(p["entity"], p["record_id"], p["new_key"]) in state.key_changes,
        )
        for p in plan.key_changes
    ]


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
    except UwlrError as exc:
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
    today = dt.datetime.now(settings.tz).date()
    with sessions() as session:
        school = session.get_one(School, school_id)
        active = school.coupling == CouplingState.ACTIVE.value
        transition = school.current_school_year is not None and year > school.current_school_year
        earlier = school.current_school_year is not None and year < school.current_school_year
        paused = active and in_pause(school, today)
        state = load_state(session=session, school_id=school_id)
        plan = plan_merge(
            state=state,
            snapshot=snapshot,
            policy=UpdatePolicy(school.update_policy),
            activation=not active,
            run_id=None,
            now=utcnow(),
            key_changes=True,  # as merge_into plans it
            keep=keep_map(answer.read.kept),  # set aside for an unusable value: left alone
        )
        shares = held.shares_of(school)  # None on the first load: not guarded
        session.rollback()  # nothing of this is kept
    # What receive.py does with it: only a merge of an active school, outside the pause
    # window and the year transition, meets the guard (and proposes key changes).
    merges = active and not paused and not transition and not earlier
    holding = None
    if merges and shares is not None:
        holding = check(plan=plan, state=state, scope=snapshot.scope, shares=shares)
    guard = GuardPreview(
        applies=merges and shares is not None,
        would_hold=holding is not None,
        reasons=holding.reasons if holding is not None else [],
        shares={"update": shares.update, "missing": shares.missing} if shares else None,
    )
    proposals = _key_changes(plan, state) if merges else []
    warnings.extend(plan.warnings)
    if holding is not None:
        warnings.append(
            "the change guard would hold a pull of this answer for an admin's confirmation: "
            "nothing would be applied (nor any key change proposed) until then"
        )
    if paused:
        warnings.append(
            "inside the school's pause window: a pull would be stored, not applied; the counts "
            "are what an ordinary merge would do"
        )
    return ConnectionTestResult(
        reachable=True,
        duration_ms=ms,
        error=None,
        school_year=year,
        records=records,
        would=plan.counts_json(),
        would_start_year_transition=transition,
        guard=guard,
        key_changes=proposals,
        warnings=warnings,
        readiness=readiness,
    )
