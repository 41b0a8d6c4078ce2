"""Carrying a year transition out: `record` stores it (held, or about to be applied),
`apply` removes, ends and flags what the decision says and merges the new year's snapshot,
all in the caller's transaction.

Removals are soft deletes marked `year-transition:<id>`: restorable within the retention
window, and restoring a student brings back the guardians removed with it.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.bulk import bulk_delete
from app.db import new_id, utcnow
from app.esis.schemas import EsisSnapshot
from app.events.service import Change, emit
from app.schools.models import School, UpdatePolicy
from app.sync import repository
from app.sync.service import plan_merge
from app.year_transition import repository as ty_repository
from app.year_transition.decide import Decision
from app.year_transition.models import TransitionStatus, YearTransition
from app.year_transition.report import R10_REASON, r11_reason, report


def record(
    *,
    session: Session,
    school: School,
    snapshot_id: uuid.UUID,
    run_id: uuid.UUID,
    d: Decision,
    actor: str,
) -> YearTransition:
    """Store the transition: held (nothing else changes) or ready to apply."""
    transition = YearTransition(
        school_id=school.id,
        id=new_id(),
        snapshot_id=snapshot_id,
        run_id=run_id,
        from_year=d.from_year,
        to_year=d.to_year,
        status=TransitionStatus.HELD.value if d.held_reason else TransitionStatus.APPLIED.value,
        reason=d.held_reason,
        report=report(d),
        started_by=actor,
    )
    session.add(transition)
    session.flush()
    if d.held_reason:
        emit(
            session=session,
            school_id=school.id,
            source="system",
            actor=actor,
            sync_run_id=run_id,
            changes=[
                Change(
                    "school",
                    school.id,
                    "year-transition-held",
                    {
                        "transition_id": str(transition.id),
                        "to_year": d.to_year,
                        "reason": d.held_reason,
                    },
                )
            ],
        )
    return transition


def apply(
    *,
    session: Session,
    school: School,
    transition: YearTransition,
    d: Decision,
    snapshot: EsisSnapshot,
    run_id: uuid.UUID,
    actor: str,
) -> dict[str, dict[str, int]]:
    """Carry the transition out in the caller's transaction; returns the run's counts."""
    now = utcnow()
    marker = f"year-transition:{transition.id}"
    changes: list[Change] = []
    removed_counts: dict[str, int] = {}
    for entity, table_name, rows, why in (
        ("student", "student", d.students, "R7"),
        ("guardian", "guardian", d.guardians, "R8"),
        ("staff", "staff", d.staff, "R9"),
        ("group", "school_group", d.groups, "group ended"),
    ):
        ids = [r["id"] for r in rows]
        removed_counts[entity] = len(ids)
        ty_repository.soft_delete(
            session=session,
            school_id=school.id,
            table_name=table_name,
            ids=ids,
            marker=marker,
            now=now,
        )
        changes += [
            Change(
                entity,
                i,
                "deleted",
                {"reason": {"before": None, "after": why}, "year_transition": str(transition.id)},
            )
            for i in ids
        ]
    for name, rows in d.ended_links.items():
        ids = [r["id"] for r in rows]
        removed_counts[name] = len(ids)
        bulk_delete(session, repository.table(name), school.id, ids)
        changes += [
            Change(name, i, "removed", {"reason": "membership of the old year"}) for i in ids
        ]
    _flag(session, school, d, changes)
    emit(
        session=session,
        school_id=school.id,
        source="system",
        actor=actor,
        sync_run_id=run_id,
        changes=changes,
    )

    state = repository.load_state(session=session, school_id=school.id)
    plan = plan_merge(
        state=state,
        snapshot=snapshot,
        policy=UpdatePolicy(school.update_policy),
        activation=False,
        run_id=run_id,
        now=now,
        keep=d.keep,
    )
    repository.write_plan(session=session, school_id=school.id, plan=plan)
    for entity, n in removed_counts.items():
        plan.count(entity, "removed", n)
    plan.changes.append(
        Change(
            "school",
            school.id,
            "year-transition-applied",
            {
                "current_school_year": {"before": d.from_year, "after": d.to_year},
                "transition_id": str(transition.id),
            },
        )
    )
    emit(
        session=session,
        school_id=school.id,
        source="esis",
        actor="esis",
        sync_run_id=run_id,
        changes=plan.changes,
    )
    school.current_school_year = d.to_year
    school.updated_at = now
    transition.status = TransitionStatus.APPLIED.value
    transition.decided_at = transition.decided_at or now
    return plan.counts_json()


def _flag(session: Session, school: School, d: Decision, changes: list[Change]) -> None:
    """R10 and R11: local groups and class arrangements are flagged, never removed."""
    r11 = r11_reason(d.to_year)
    ty_repository.flag_for_review(
        session=session,
        school_id=school.id,
        table_name="school_group",
        ids=[r["id"] for r in d.local_groups],
        reason=R10_REASON,
    )
    ty_repository.flag_for_review(
        session=session,
        school_id=school.id,
        table_name="class_arrangement",
        ids=[r["id"] for r in d.arrangements],
        reason=r11,
    )
    changes += [
        Change("group", r["id"], "flagged-for-review", {"reason": R10_REASON})
        for r in d.local_groups
    ]
    changes += [
        Change("class_arrangement", r["id"], "flagged-for-review", {"reason": r11})
        for r in d.arrangements
    ]
