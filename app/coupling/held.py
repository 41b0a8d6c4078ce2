"""Snapshots held by the change guard (app/sync/guard.py): holding one, and an admin's
confirmation or rejection of it, as with a held year transition.

A confirmation plans the snapshot again against the school as it is at that moment (local
edits, deletions and drift since the hold count), never the plan made when it was held.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session, sessionmaker

from app.coupling import repository
from app.db import utcnow, write_transaction
from app.errors import Conflict, NotFound
from app.esis.parsing import parse_snapshot
from app.events.service import Change, emit
from app.schools import repository as schools
from app.schools.models import CouplingState, School
from app.sync.guard import GuardShares, Held
from app.sync.merge import merge_into
from app.sync.models import RunStatus, Snapshot, SyncRun


def shares_of(school: School) -> GuardShares | None:
    """The school's change guard; None for its first load (nothing to compare with)."""
    if school.current_school_year is None:
        return None
    return GuardShares(
        update=school.change_guard_update_share, missing=school.change_guard_missing_share
    )


def hold(*, session: Session, school: School, run: SyncRun, held: Held) -> list[str]:
    """Mark `run` held with its report and announce it; returns the run's warnings."""
    run.status = RunStatus.HELD.value
    run.counts = {}  # nothing applied; what it would do is in the report
    run.report = held.report
    emit(
        session=session,
        school_id=school.id,
        source="esis",
        actor="esis",
        sync_run_id=run.id,
        changes=[
            Change(
                "school", school.id, "sync-held", {"run_id": str(run.id), "reasons": held.reasons}
            )
        ],
    )
    return [
        f"held by the change guard: {'; '.join(held.reasons)}; nothing was applied, an admin "
        f"confirms or rejects it (run {run.id})"
    ]


def decide(
    *,
    sessions: sessionmaker[Session],
    school_id: uuid.UUID,
    run_id: uuid.UUID,
    confirm: bool,
    actor: str,
) -> SyncRun:
    """Confirm (apply, planned afresh) or reject a run the change guard held."""
    with write_transaction(sessions) as session:
        school = schools.lock(session=session, school_id=school_id)
        run = repository.run_of(session=session, school_id=school_id, run_id=run_id)
        if run is None:
            raise NotFound(f"no sync run {run_id}")
        if run.status != RunStatus.HELD.value or not (run.report or {}).get("guard"):
            raise Conflict(
                f"sync run {run_id} is {run.status}, not held by the change guard",
                run_id=str(run_id),
            )
        assert run.snapshot_id is not None
        snapshot = repository.snapshot_of(
            session=session, school_id=school_id, snapshot_id=run.snapshot_id
        )
        decision = {"by": actor, "at": utcnow().isoformat(), "confirmed": confirm}
        if not confirm:
            run.status = RunStatus.REJECTED.value
            run.report = {**(run.report or {}), "decision": decision}
            run.warnings = [*run.warnings, f"rejected by {actor}: nothing was applied"]
            _announce(session, school, run, "sync-rejected", actor)
            return run
        _check_current(session, school, run, snapshot)
        parsed = parse_snapshot(snapshot.body, snapshot.content_type)
        result = merge_into(session=session, school=school, run_id=run.id, parsed=parsed)
        run.status = RunStatus.APPLIED.value
        run.counts = result.counts
        run.report = {**(run.report or {}), "decision": decision}
        run.warnings = [
            *run.warnings,
            *result.warnings,
            f"confirmed by {actor} and applied to the school as it is now",
        ]
        run.finished_at = utcnow()
        _announce(session, school, run, "sync-confirmed", actor)
        return run


def _check_current(session: Session, school: School, run: SyncRun, snapshot: Snapshot) -> None:
    """A held snapshot still describes the school: same year, nothing newer applied."""
    if school.coupling != CouplingState.ACTIVE.value:
        raise Conflict("the coupling is not active: a held snapshot cannot be applied")
    if snapshot.school_year != school.current_school_year:
        raise Conflict(
            f"the school is in {school.current_school_year} now; this snapshot is of "
            f"{snapshot.school_year}: reject it"
        )
    newer = repository.applied_after(
        session=session, school_id=school.id, started_at=run.started_at
    )
    if newer is not None:
        raise Conflict(
            f"a newer snapshot was applied since (run {newer}); this one is out of date: reject it",
            newer_run_id=str(newer),
        )


def _announce(session: Session, school: School, run: SyncRun, kind: str, actor: str) -> None:
    emit(
        session=session,
        school_id=school.id,
        source="api",
        actor=actor,
        sync_run_id=run.id,
        changes=[Change("school", school.id, kind, {"run_id": str(run.id)})],
    )
