"""The one-way merge: rules R4-R6 as a pure function of (state, snapshot, policy).

Read it next to docs/rules.md:

- R4  ESIS leads for additions: new groups, persons and links are added (source `esis`).
- R5  Local edits win: an ESIS change to an existing person is not applied but kept as drift.
      Under the `apply_unedited` policy, fields never edited locally follow ESIS.
- R6  ESIS deletions are not propagated: an absent record stays, marked missing in ESIS
      since; a record deleted locally is not brought back (counted as suppressed).
- Links are not personal data: new ones are added, absent ones kept and marked missing; a
  student's move to another main group during the year is drift, not a silent move.
- Groups are not persons: their attributes follow ESIS unless a user edited them (then drift).
- Activation (R2) is the initial load: records already here from EDEXml or local creation
  are matched (LAS key, else name + birth date / e-mail) and take ESIS's values except where
  edited locally.

`plan_merge` decides; `repository.write_plan` writes the plan with bulk statements. The
parts: `rules.py` (fields, modes, R5's `should_apply`), `records.py` (R4-R6 for records),
`links.py` (R4/R6 for links, group moves), `matching.py` (R2), `drift_plan.py` (drift items).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping

from app.esis.schemas import EsisSnapshot, Kind
from app.provenance import Source
from app.schools.models import UpdatePolicy
from app.sync.gcpause import gc_paused
from app.sync.links import merge_links, merge_student_groups
from app.sync.plan import EntityState, Pair, Plan, Row, State
from app.sync.records import Merged, known, merge_records
from app.sync.rules import (
    DATE_FIELDS,
    GROUP,
    GUARDIAN,
    STAFF,
    STUDENT,
    Context,
    EntitySpec,
    Mode,
    group_values,
    should_apply,
    values_of,
)

__all__ = [
    "DATE_FIELDS",
    "GROUP",
    "GUARDIAN",
    "STAFF",
    "STUDENT",
    "EntitySpec",
    "Incoming",
    "Mode",
    "incoming_records",
    "plan_merge",
    "should_apply",
]


@gc_paused
def plan_merge(
    *,
    state: State,
    snapshot: EsisSnapshot,
    policy: UpdatePolicy,
    activation: bool,
    run_id: uuid.UUID | None,
    now: dt.datetime,
    source: Source = Source.ESIS,
    scope: frozenset[Kind] | None = None,
    keep: Mapping[str, frozenset[str]] | None = None,
    key_changes: bool = False,
    shortcut: bool = True,
    incoming: Incoming | None = None,
) -> Plan:
    """Decide every insert, update, drift item and event that `snapshot` causes.

    With `source=edexml` (a file imported before activation) new records get that source and
    records absent from the file are listed in `plan.absent` instead of marked missing in ESIS.

    ESIS leads for what ESIS sends: a kind outside `scope` (default: what the snapshot
    carries) is left exactly as it is. `keep` names, per entity, the keys of records the
    snapshot held with an unusable value: they are left as they are too (not updated, not
    added, not marked missing).

    `key_changes`: pair a dropped record with a new key that is the same person as a
    proposal (`plan.key_changes`) instead of missing + new; the daily merge asks for it.

    `shortcut`: a known record that already agrees with ESIS in every field and has nothing
    pending locally is settled by one comparison (`records.agrees`), and when the snapshot
    lists every record (or link) of a kind we have, the pass looking for absent ones (key
    changes, R6's missing marks) is not made; the plan is the same either way
    (tests/test_merge_properties.py compares both).

    `incoming`: the snapshot's records as `incoming_records` makes them, when the caller
    has them already (`merge.merge_into` settles records by their digest with them).
    """
    scope = snapshot.scope if scope is None else scope
    incoming = incoming_records(snapshot) if incoming is None else incoming
    keep = keep or {}
    ctx = Context(state.school_id, policy, activation, run_id, now, source, key_changes)
    plan = Plan(
        now=now,
        run_id=run_id,  # drift items seen again are stamped with it (repository.write_plan)
        report={"matched": [], "created": [], "unmatched": []} if activation else None,
    )

    def records(
        kind: Kind, spec: EntitySpec, current: EntityState, listed: Iterable[tuple[str, Row]]
    ) -> Merged:
        if kind not in scope:
            return known(current)
        return merge_records(
            plan,
            ctx,
            spec,
            current,
            state,
            listed,
            keep=keep.get(spec.name, frozenset()),
            shortcut=shortcut,
        )

    groups = records(Kind.GROUPS, GROUP, state.groups, incoming[GROUP.name])
    students = records(Kind.STUDENTS, STUDENT, state.students, incoming[STUDENT.name])
    guardians = records(Kind.GUARDIANS, GUARDIAN, state.guardians, incoming[GUARDIAN.name])
    staff = records(Kind.STAFF, STAFF, state.staff, incoming[STAFF.name])
    # A key proposed as a key change is kept too: its record's links wait for the decision.
    kept_students = keep.get("student", frozenset()) | students.proposed
    kept_guardians = keep.get("guardian", frozenset()) | guardians.proposed
    kept_staff = keep.get("staff", frozenset()) | staff.proposed

    if Kind.STUDENT_GROUPS in scope:
        merge_student_groups(
            plan, ctx, state, snapshot, students, groups, keep=kept_students, shortcut=shortcut
        )
    if Kind.STUDENT_GUARDIANS in scope:
        guardian_links = {
            (students.ids[link.student], guardians.ids[g.key]): {
                "relation": link.relation.value if link.relation else None
            }
            for g in snapshot.guardians
            if g.key not in kept_guardians
            for link in g.students
            if link.student in students.ids
        }
        merge_links(
            plan,
            ctx,
            "student_guardian",
            ("student_id", "guardian_id"),
            state.student_guardians,
            guardian_links,
            students.suppressed | guardians.suppressed,
            state,
            keep_ends=_ids(students, kept_students) | _ids(guardians, kept_guardians),
            shortcut=shortcut,
        )
    if Kind.STAFF_GROUPS in scope:
        staff_links: dict[Pair, Row] = {
            (staff.ids[s.key], groups.ids[group_key]): {}
            for s in snapshot.staff
            if s.key not in kept_staff
            for group_key in s.groups
            if group_key in groups.ids
        }
        merge_links(
            plan,
            ctx,
            "staff_group",
            ("staff_id", "group_id"),
            state.staff_groups,
            staff_links,
            staff.suppressed | groups.suppressed,
            state,
            keep_ends=_ids(staff, kept_staff),
            shortcut=shortcut,
        )
    return plan


# Per entity (its spec's name): (key, values) of each record the snapshot sends.
Incoming = dict[str, list[tuple[str, Row]]]


def incoming_records(snapshot: EsisSnapshot) -> Incoming:
    """The values ESIS sends for each record, as the merge compares them (`rules.jsonable`)."""
    year = snapshot.school.school_year
    return {
        GROUP.name: [(g.key, group_values(g, year)) for g in snapshot.groups],
        STUDENT.name: [(s.key, values_of(s, STUDENT)) for s in snapshot.students],
        GUARDIAN.name: [(g.key, values_of(g, GUARDIAN)) for g in snapshot.guardians],
        STAFF.name: [(s.key, values_of(s, STAFF)) for s in snapshot.staff],
    }


def _ids(merged: Merged, keys: frozenset[str]) -> set[uuid.UUID]:
    return {merged.ids[key] for key in keys if key in merged.ids}
