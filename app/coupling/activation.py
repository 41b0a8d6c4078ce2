"""R1 readiness and R2 activation, both read from the latest valid snapshot, and, for a school
whose ESIS sends no guardians, from the guardian contact file kept for it (contacts.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.coupling import contacts
from app.coupling.receive import record_failure
from app.db import utcnow, write_transaction
from app.errors import Conflict
from app.esis.parsing import Parsed, parse_snapshot
from app.esis.schemas import EsisSnapshot, Kind
from app.events.service import Change, emit
from app.schools import repository as schools
from app.schools.models import CouplingState, School
from app.sync.gcpause import gc_paused
from app.sync.merge import merge_into
from app.sync.models import RunKind, RunStatus, Snapshot, SyncRun
from app.sync.repository import latest_snapshot


@dataclass(frozen=True)
class Gap:
    key: str
    name: str


@dataclass(frozen=True)
class Readiness:
    snapshot: Snapshot | None
    students_without_guardian: list[Gap]
    guardians_without_email: list[Gap]

    @property
    def ready(self) -> bool:
        return (
            self.snapshot is not None
            and not self.students_without_guardian
            and not self.guardians_without_email
        )


def _display(given: str | None, initials: str | None, prefix: str | None, last: str) -> str:
    return " ".join(part for part in (given or initials, prefix, last) if part)


def readiness_of(
    snapshot: EsisSnapshot, contact_rows: list[dict[str, Any]] | None = None
) -> tuple[list[Gap], list[Gap]]:
    """R1: every student has a guardian, and every guardian an e-mail address. Guardians of a
    contact file count only when the snapshot carries none (ESIS leads for what it sends)."""
    with_guardian = {link.student for g in snapshot.guardians for link in g.students}
    rows = contact_rows if Kind.GUARDIANS not in snapshot.scope else None
    for row in rows or []:
        with_guardian.add(row["student_key"])
    students = [
        Gap(s.key, _display(s.given_name, s.initials, s.name_prefix, s.last_name))
        for s in snapshot.students
        if s.key not in with_guardian
    ]
    guardians = [
        Gap(g.key, _display(g.given_name, g.initials, g.name_prefix, g.last_name))
        for g in snapshot.guardians
        if not g.email
    ]
    guardians.extend(
        Gap(
            f"line {row['line']}",
            _display(row["given_name"], row["initials"], row["name_prefix"], row["last_name"]),
        )
        for row in rows or []
        if not row["email"]
    )
    return students, guardians


def _latest_parsed(session: Session, school_id: uuid.UUID) -> tuple[Snapshot | None, Parsed | None]:
    row = latest_snapshot(session=session, school_id=school_id)
    if row is None:
        return None, None
    return row, parse_snapshot(row.body, row.content_type)


def readiness(*, session: Session, school_id: uuid.UUID) -> Readiness:
    row, parsed = _latest_parsed(session, school_id)
    if parsed is None:
        return Readiness(None, [], [])
    students, guardians = readiness_of(parsed.snapshot, contacts.stored_rows(session, school_id))
    return Readiness(row, students, guardians)


@gc_paused
def activate(*, sessions: sessionmaker[Session], school_id: uuid.UUID, actor: str) -> SyncRun:
    """R2: apply the latest snapshot as the initial load and switch the coupling on.

    Refused (409) while the readiness check (R1) finds gaps. Records already here from EDEXml
    or local creation are matched, not duplicated; the run's report lists the pairing.

    The garbage collector is paused throughout (`gcpause`), not only while the merge is
    planned: parsing, writing and the events allocate tens of thousands of objects more, and
    each collection in between walked the plan (about 10 ms of an initial load, and now and
    then a full collection of the process, 100 ms and more).
    """
    with write_transaction(sessions) as session:
        school = schools.lock(session=session, school_id=school_id)
        if school.coupling == CouplingState.ACTIVE.value:
            raise Conflict("the coupling is already active")
        row, parsed = _latest_parsed(session, school_id)
        if row is None or parsed is None:
            raise Conflict("no valid ESIS snapshot has been received yet: push or pull one first")
        kept = contacts.stored_rows(session, school_id)
        students, guardians = readiness_of(parsed.snapshot, kept)
        if students or guardians:
            raise Conflict(
                f"not ready (R1): {len(students)} students without a guardian, "
                f"{len(guardians)} guardians without an e-mail address",
                students_without_guardian=[g.__dict__ for g in students],
                guardians_without_email=[g.__dict__ for g in guardians],
            )
        run = SyncRun(
            school_id=school_id,
            snapshot_id=row.id,
            kind=RunKind.ACTIVATION.value,
            origin=row.origin,
            actor=actor,
        )
        session.add(run)
        session.flush()
        try:
            result = merge_into(
                session=session, school=school, run_id=run.id, parsed=parsed, activation=True
            )
        except Exception as exc:
            session.rollback()  # frees the write lock for the failure's own transaction
            # Nothing of the initial load stays; the failed attempt is recorded on its own.
            failed = SyncRun(
                school_id=school_id,
                snapshot_id=row.id,
                kind=RunKind.ACTIVATION.value,
                origin=row.origin,
                actor=actor,
            )
            record_failure(sessions=sessions, run=failed, exc=exc)
            raise
        run_report: dict[str, Any] | None = dict(result.report) if result.report else None
        if run_report is not None and kept and Kind.GUARDIANS not in parsed.snapshot.scope:
            run_report["contacts"] = contacts.match_at_activation(
                session, school_id, actor=actor, run_id=run.id
            )
        _switch(session, school, CouplingState.ACTIVE, actor)
        school.current_school_year = parsed.snapshot.school.school_year
        run.counts = result.counts
        run.warnings = [*parsed.warnings, *result.warnings]
        run.kept = [k.as_json() for k in parsed.kept]
        run.report = run_report
        run.status = RunStatus.APPLIED.value
        run.finished_at = utcnow()
    return run


def deactivate(*, session: Session, school_id: uuid.UUID, actor: str) -> School:
    """Stop the merge; the data stays. Deactivating an inactive coupling changes nothing."""
    school = schools.lock(session=session, school_id=school_id)
    if school.coupling == CouplingState.ACTIVE.value:
        _switch(session, school, CouplingState.INACTIVE, actor)
    return school


def _switch(session: Session, school: School, state: CouplingState, actor: str) -> None:
    before = school.coupling
    school.coupling = state.value
    school.coupling_since = utcnow()
    school.updated_at = school.coupling_since
    emit(
        session=session,
        school_id=school.id,
        source="api",
        actor=actor,
        changes=[
            Change(
                "school",
                school.id,
                "updated",
                {"coupling": {"before": before, "after": state.value}},
            )
        ],
    )
