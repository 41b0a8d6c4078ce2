"""When a year transition happens: from a snapshot, from an admin, on confirmation.

Each path runs in one transaction under the school's lock; a failure leaves nothing behind.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.db import utcnow, write_transaction
from app.errors import Conflict, NotFound
from app.esis.leniency import keep_map
from app.esis.parsing import Parsed, parse_snapshot
from app.events.service import Change, emit
from app.pagination import decode_cursor, encode_cursor, invalid_cursor
from app.schools import repository as schools
from app.schools.models import CouplingState, School
from app.sync.models import RunKind, RunStatus, Snapshot, SyncRun
from app.sync.repository import latest_snapshot
from app.year_transition import repository
from app.year_transition.apply import apply, record
from app.year_transition.decide import decide
from app.year_transition.models import TransitionStatus, YearTransition
from app.year_transition.report import more_pages, report


@dataclass
class Outcome:
    status: RunStatus
    transition: YearTransition
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def start_from_snapshot(
    *, session: Session, school: School, run: SyncRun, parsed: Parsed, actor: str
) -> Outcome:
    """Decide, record, and apply unless the guard holds it (the caller owns the transaction)."""
    assert run.snapshot_id is not None
    decision = decide(
        session=session, school=school, snapshot=parsed.snapshot, keep=keep_map(parsed.kept)
    )
    transition = record(
        session=session,
        school=school,
        snapshot_id=run.snapshot_id,
        run_id=run.id,
        d=decision,
        actor=actor,
    )
    if decision.held_reason:
        return Outcome(
            RunStatus.HELD,
            transition,
            warnings=[
                f"year transition to {decision.to_year} held: {decision.held_reason}; an admin "
                f"confirms or rejects it (transition {transition.id})"
            ],
        )
    counts = apply(
        session=session,
        school=school,
        transition=transition,
        d=decision,
        snapshot=parsed.snapshot,
        run_id=run.id,
        actor=actor,
    )
    return Outcome(
        RunStatus.APPLIED,
        transition,
        counts=counts,
        warnings=[f"year transition to {decision.to_year} applied"],
    )


def _new_year_snapshot(session: Session, school: School) -> tuple[Snapshot, Parsed]:
    if school.coupling != CouplingState.ACTIVE.value:
        raise Conflict("the coupling is not active: activate it first (R2)")
    row = latest_snapshot(
        session=session, school_id=school.id, after_year=school.current_school_year
    )
    if row is None:
        raise Conflict(
            f"no valid ESIS snapshot of a school year after {school.current_school_year} has "
            "been received: there is no new year to move to"
        )
    return row, parse_snapshot(row.body, row.content_type)


def preview(
    *, session: Session, school_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[dict[str, Any], str | None]:
    """The transition as a dry run against the latest snapshot: nothing changes."""
    school = session.get_one(School, school_id)
    _row, parsed = _new_year_snapshot(session, school)
    offset = 0
    if cursor is not None:
        offset = decode_cursor(cursor)
        if not isinstance(offset, int) or offset < 0:
            raise invalid_cursor()
    decision = decide(
        session=session, school=school, snapshot=parsed.snapshot, keep=keep_map(parsed.kept)
    )
    more = more_pages(decision, limit=limit, offset=offset)
    return report(decision, limit=limit, offset=offset), (
        encode_cursor(offset + limit) if more else None
    )


def _run(session: Session, school: School, snapshot_id: uuid.UUID, actor: str) -> SyncRun:
    run = SyncRun(
        school_id=school.id,
        snapshot_id=snapshot_id,
        kind=RunKind.YEAR_TRANSITION.value,
        origin="push",
        actor=actor,
    )
    session.add(run)
    session.flush()
    return run


def start_by_admin(
    *, sessions: sessionmaker[Session], school_id: uuid.UUID, actor: str
) -> YearTransition:
    with write_transaction(sessions) as session:
        school = schools.lock(session=session, school_id=school_id)
        row, parsed = _new_year_snapshot(session, school)
        held = repository.held_for_snapshot(
            session=session, school_id=school_id, snapshot_id=row.id
        )
        if held is not None:
            raise Conflict(
                f"transition {held.id} of this snapshot is held: confirm or reject it",
                transition_id=str(held.id),
            )
        run = _run(session, school, row.id, actor)
        outcome = start_from_snapshot(
            session=session, school=school, run=run, parsed=parsed, actor=actor
        )
        _finish(run, outcome)
    return outcome.transition


def decide_held(
    *,
    sessions: sessionmaker[Session],
    school_id: uuid.UUID,
    transition_id: uuid.UUID,
    confirm: bool,
    actor: str,
) -> YearTransition:
    """An admin confirms a held transition (it is applied as it stands now) or rejects it."""
    with write_transaction(sessions) as session:
        school = schools.lock(session=session, school_id=school_id)
        transition = repository.get(
            session=session, school_id=school_id, transition_id=transition_id
        )
        if transition is None:
            raise NotFound(f"no year transition {transition_id}")
        if transition.status != TransitionStatus.HELD.value:
            raise Conflict(f"transition {transition_id} is {transition.status}, not held")
        if school.current_school_year != transition.from_year:
            raise Conflict(
                f"the school is in {school.current_school_year} now; this transition "
                f"was from {transition.from_year}"
            )
        transition.decided_by = actor
        transition.decided_at = utcnow()
        if not confirm:
            transition.status = TransitionStatus.REJECTED.value
            emit(
                session=session,
                school_id=school_id,
                source="api",
                actor=actor,
                changes=[
                    Change(
                        "school",
                        school_id,
                        "year-transition-rejected",
                        {"transition_id": str(transition_id)},
                    )
                ],
            )
            return transition
        snapshot = session.get_one(Snapshot, (school_id, transition.snapshot_id))
        parsed = parse_snapshot(snapshot.body, snapshot.content_type)
        decision = decide(
            session=session, school=school, snapshot=parsed.snapshot, keep=keep_map(parsed.kept)
        )
        run = _run(session, school, snapshot.id, actor)
        transition.run_id = run.id
        transition.report = report(decision)
        counts = apply(
            session=session,
            school=school,
            transition=transition,
            d=decision,
            snapshot=parsed.snapshot,
            run_id=run.id,
            actor=actor,
        )
        _finish(
            run,
            Outcome(
                RunStatus.APPLIED,
                transition,
                counts=counts,
                warnings=[
                    f"year transition to {decision.to_year} confirmed by {actor} and applied"
                ],
            ),
        )
    return transition


def _finish(run: SyncRun, outcome: Outcome) -> None:
    run.status = outcome.status.value
    run.counts = outcome.counts
    run.warnings = outcome.warnings
    run.report = {"year_transition_id": str(outcome.transition.id)}
    run.finished_at = utcnow()


def get(*, session: Session, school_id: uuid.UUID, transition_id: uuid.UUID) -> YearTransition:
    transition = repository.get(session=session, school_id=school_id, transition_id=transition_id)
    if transition is None:
        raise NotFound(f"no year transition {transition_id}")
    return transition


def list_all(*, session: Session, school_id: uuid.UUID) -> list[YearTransition]:
    return repository.list_all(session=session, school_id=school_id)
