"""What a year transition would do (R7-R11), decided from the school's state and the new
year's snapshot; nothing is written here. `report` shows the decision, `apply` carries it out.

- R7  students absent from the new year's ESIS data are removed (a soft delete);
- R8  guardians whose children all leave are removed; one with a child who stays never is;
- R9  staff no longer active (absent, or listed as not active) are removed;
- R10 local groups are never removed automatically: they are flagged for the school;
- R11 class arrangements are flagged for the school to check against the new year;
- ESIS groups of the old year that ESIS no longer lists end; memberships of the new year
  replace the old ones; R5 still holds: personal changes stay drift.

Guarded: a transition that would remove more than the school's removal-guard share of its
students, or whose snapshot has no students, is held until an admin confirms it.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from app.db import utcnow
from app.esis.schemas import EsisSnapshot, Kind
from app.provenance import Source
from app.schools.models import School, UpdatePolicy
from app.sync import repository
from app.sync.plan import Row, State
from app.sync.service import plan_merge
from app.year_transition import repository as ty_repository


@dataclass
class Decision:
    """What a transition would do; the preview shows it, apply carries it out."""

    from_year: str | None
    to_year: str
    # Records the snapshot set aside for an unusable value (leniency per record): they count
    # as present, so a bad value never removes anyone (R7-R9), and they are left as they are.
    keep: Mapping[str, frozenset[str]] = field(default_factory=dict)
    students: list[Row] = field(default_factory=list)  # R7
    guardians: list[Row] = field(default_factory=list)  # R8
    staff: list[Row] = field(default_factory=list)  # R9
    groups: list[Row] = field(default_factory=list)  # ESIS groups that end
    ended_links: dict[str, list[Row]] = field(default_factory=dict)
    local_groups: list[Row] = field(default_factory=list)  # R10
    arrangements: list[Row] = field(default_factory=list)  # R11
    new_groups: list[str] = field(default_factory=list)
    new_memberships: int = 0
    drift: list[Row] = field(default_factory=list)  # R5 across the transition
    live_students: int = 0
    held_reason: str | None = None

    @property
    def share(self) -> float:
        return len(self.students) / self.live_students if self.live_students else 0.0


def _live(row: Row) -> bool:
    return row["deleted_at"] is None and row["tombstoned_at"] is None


def decide(
    *,
    session: Session,
    school: School,
    snapshot: EsisSnapshot,
    keep: Mapping[str, frozenset[str]] | None = None,
) -> Decision:
    """Compute the transition from the school's state and the new year's snapshot."""
    state = repository.load_state(session=session, school_id=school.id)
    keep = keep or {}
    d = Decision(
        from_year=school.current_school_year, to_year=snapshot.school.school_year, keep=keep
    )
    students_in = {s.key for s in snapshot.students} | keep.get("student", frozenset())
    staff_in = {s.key for s in snapshot.staff if s.active} | keep.get("staff", frozenset())
    groups_in = {g.key for g in snapshot.groups} | keep.get("group", frozenset())

    def esis_live(rows: dict[uuid.UUID, Row]) -> list[Row]:
        return [r for r in rows.values() if _live(r) and r["source"] == Source.ESIS.value]

    # ESIS leads for what ESIS sends: a kind the snapshot does not carry loses nothing.
    scope = snapshot.scope
    d.live_students = sum(1 for r in state.students.rows.values() if _live(r))
    if Kind.STUDENTS in scope:
        d.students = [r for r in esis_live(state.students.rows) if r["esis_key"] not in students_in]
    if Kind.STAFF in scope:
        d.staff = [r for r in esis_live(state.staff.rows) if r["esis_key"] not in staff_in]
    if Kind.GROUPS in scope:
        d.groups = [r for r in esis_live(state.groups.rows) if r["esis_key"] not in groups_in]
    leaving = {r["id"] for r in d.students}
    staying_children: dict[uuid.UUID, bool] = {}
    for (student_id, guardian_id), link in state.student_guardians.rows.items():
        student = state.students.rows[student_id]
        stays = link["deleted_at"] is None and _live(student) and student_id not in leaving
        staying_children[guardian_id] = staying_children.get(guardian_id, False) or stays
    guardians_in = {g.key for g in snapshot.guardians} | keep.get("guardian", frozenset())
    if Kind.GUARDIANS in scope:
        d.guardians = [
            r
            for r in esis_live(state.guardians.rows)
            if not staying_children.get(r["id"], False) and r["esis_key"] not in guardians_in
        ]
    else:
        # Not sent by ESIS: only R8 itself removes them, when all their children leave.
        d.guardians = [
            r
            for r in state.guardians.rows.values()
            if _live(r)
            and r["source"] in (Source.ESIS.value, Source.CONTACTS.value)
            and staying_children.get(r["id"]) is False
        ]
    d.ended_links = _ended_links(state, snapshot, d)
    d.local_groups = [
        r for r in state.groups.rows.values() if _live(r) and r["source"] == Source.LOCAL.value
    ]
    d.arrangements = ty_repository.live_arrangements(session=session, school_id=school.id)
    d.new_groups = sorted(groups_in - set(state.groups.by_key))
    d.new_memberships, d.drift = _simulate(state, snapshot, school, d)
    if Kind.STUDENTS in scope and not snapshot.students:
        d.held_reason = "the new year's snapshot has no students"
    elif d.share > school.removal_guard_share:
        d.held_reason = (
            f"it would remove {len(d.students)} of {d.live_students} students "
            f"({d.share:.0%}), more than the removal guard of {school.removal_guard_share:.0%}"
        )
    return d


def _ended_links(state: State, snapshot: EsisSnapshot, d: Decision) -> dict[str, list[Row]]:
    """ESIS memberships of the old year that the new year does not have (both ends stay)."""
    removed = {r["id"] for r in (*d.students, *d.guardians, *d.staff, *d.groups)}
    key_of = {
        **{i: r["esis_key"] for i, r in state.students.rows.items()},
        **{i: r["esis_key"] for i, r in state.groups.rows.items()},
        **{i: r["esis_key"] for i, r in state.guardians.rows.items()},
        **{i: r["esis_key"] for i, r in state.staff.rows.items()},
    }
    wanted = {
        "student_group": {
            (s.key, g)
            for s in snapshot.students
            for g in ([s.group] if s.group else []) + list(s.composite_groups)
        },
        "student_guardian": {
            (link.student, g.key) for g in snapshot.guardians for link in g.students
        },
        "staff_group": {(s.key, g) for s in snapshot.staff for g in s.groups},
    }
    links = {
        "student_group": state.student_groups,
        "student_guardian": state.student_guardians,
        "staff_group": state.staff_groups,
    }
    ended: dict[str, list[Row]] = {}
    scope = snapshot.scope
    for name, link_state in links.items():
        if Kind(f"{name}s") not in scope:
            ended[name] = []  # a kind of link the snapshot does not carry: none end
            continue
        ended[name] = [
            row
            for (a, b), row in link_state.rows.items()
            if row["source"] == Source.ESIS.value
            and row["deleted_at"] is None
            and a not in removed
            and b not in removed
            and (key_of.get(a), key_of.get(b)) not in wanted[name]
        ]
    return ended


def _without(state: State, d: Decision) -> State:
    """The state as it will be after the removals and ended links (for the preview)."""
    now = utcnow()
    simulated = copy.deepcopy(state)
    for rows, removed in (
        (simulated.students.rows, d.students),
        (simulated.guardians.rows, d.guardians),
        (simulated.staff.rows, d.staff),
        (simulated.groups.rows, d.groups),
    ):
        for row in removed:
            rows[row["id"]]["deleted_at"] = now
    for links, ended in (
        (simulated.student_groups, d.ended_links["student_group"]),
        (simulated.student_guardians, d.ended_links["student_guardian"]),
        (simulated.staff_groups, d.ended_links["staff_group"]),
    ):
        gone = {row["id"] for row in ended}
        links.rows = {pair: row for pair, row in links.rows.items() if row["id"] not in gone}
    return simulated


def _simulate(
    state: State, snapshot: EsisSnapshot, school: School, d: Decision
) -> tuple[int, list[Row]]:
    plan = plan_merge(
        state=_without(state, d),
        snapshot=snapshot,
        policy=UpdatePolicy(school.update_policy),
        activation=False,
        run_id=None,
        now=utcnow(),
        keep=d.keep,
    )
    memberships = len(plan.table("student_group").inserts) + len(plan.table("staff_group").inserts)
    drift = [
        {
            "entity": i["entity"],
            "record_id": str(i["record_id"]),
            "field": i["field"],
            "our_value": i["our_value"],
            "esis_value": i["esis_value"],
        }
        for i in plan.drift_inserts
    ]
    touched = set(plan.drift_touched)  # once: a test per drift item would be quadratic
    drift += [
        {
            "entity": r["entity"],
            "record_id": str(r["record_id"]),
            "field": r["field"],
            "our_value": r["our_value"],
            "esis_value": r["esis_value"],
        }
        for r in state.drift.values()
        if r["id"] in touched
    ]
    return memberships, drift
