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

`plan_merge` decides; `repository.write_plan` writes the plan with bulk statements.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from app.db import new_id
from app.esis.schemas import EsisSnapshot
from app.events.service import Change
from app.provenance import Source
from app.schools.models import UpdatePolicy
from app.sync.plan import EntityState, LinkState, Pair, Plan, Row, State


class Mode(Enum):
    """How an ESIS value that differs from ours is treated."""

    PROTECTED = "protected"  # personal data: R5, the school's policy decides
    FOLLOW_UNLESS_EDITED = "follow_unless_edited"  # groups: ESIS unless a user edited it
    FOLLOW = "follow"  # ESIS's own statements (a group's school year, staff active)


@dataclass(frozen=True)
class EntitySpec:
    name: str
    table: str
    fields: dict[str, Mode]


_P, _F, _E = Mode.PROTECTED, Mode.FOLLOW, Mode.FOLLOW_UNLESS_EDITED
PERSON_NAMES = {"last_name": _P, "name_prefix": _P, "initials": _P, "given_name": _P}
GROUP = EntitySpec(
    "group",
    "school_group",
    {"name": _E, "description": _E, "year_level": _E, "is_composite": _E, "school_year": _F},
)
STUDENT = EntitySpec(
    "student",
    "student",
    {
        **PERSON_NAMES,
        "first_names": _P,
        "birth_date": _P,
        "gender": _P,
        "year_level": _P,
        "email": _P,
    },
)
GUARDIAN = EntitySpec("guardian", "guardian", {**PERSON_NAMES, "email": _P, "phone": _P})
STAFF = EntitySpec("staff", "staff", {**PERSON_NAMES, "email": _P, "roles": _P, "active": _F})
DATE_FIELDS = frozenset({"birth_date"})


@dataclass(frozen=True)
class Context:
    school_id: uuid.UUID
    policy: UpdatePolicy
    activation: bool
    run_id: uuid.UUID | None
    now: dt.datetime
    source: Source  # `esis`, or `edexml` for a file imported before activation


def should_apply(mode: Mode, *, policy: UpdatePolicy, edited: bool, activation: bool) -> bool:
    """R5 in one place: does a differing ESIS value replace ours?"""
    if mode is Mode.FOLLOW:
        return True
    if edited:
        return False
    if mode is Mode.FOLLOW_UNLESS_EDITED or activation:
        return True
    return policy is UpdatePolicy.APPLY_UNEDITED


def plan_merge(
    *,
    state: State,
    snapshot: EsisSnapshot,
    policy: UpdatePolicy,
    activation: bool,
    run_id: uuid.UUID | None,
    now: dt.datetime,
    source: Source = Source.ESIS,
) -> Plan:
    """Decide every insert, update, drift item and event that `snapshot` causes.

    With `source=edexml` (a file imported before activation) new records get that source and
    records absent from the file are listed in `plan.absent` instead of marked missing in ESIS.
    """
    ctx = Context(state.school_id, policy, activation, run_id, now, source)
    plan = Plan(
        now=now, report={"matched": [], "created": [], "unmatched": []} if activation else None
    )
    year = snapshot.school.school_year

    groups = _merge_records(
        plan,
        ctx,
        GROUP,
        state.groups,
        state,
        ((g.key, _group_values(g, year)) for g in snapshot.groups),
    )
    students = _merge_records(
        plan,
        ctx,
        STUDENT,
        state.students,
        state,
        ((s.key, _values(s, STUDENT)) for s in snapshot.students),
    )
    guardians = _merge_records(
        plan,
        ctx,
        GUARDIAN,
        state.guardians,
        state,
        ((g.key, _values(g, GUARDIAN)) for g in snapshot.guardians),
    )
    staff = _merge_records(
        plan,
        ctx,
        STAFF,
        state.staff,
        state,
        ((s.key, _values(s, STAFF)) for s in snapshot.staff),
    )

    _merge_student_groups(plan, ctx, state, snapshot, students, groups)
    guardian_links = {
        (students.ids[link.student], guardians.ids[g.key]): {
            "relation": link.relation.value if link.relation else None
        }
        for g in snapshot.guardians
        for link in g.students
    }
    _merge_links(
        plan,
        ctx,
        "student_guardian",
        ("student_id", "guardian_id"),
        state.student_guardians,
        guardian_links,
        students.suppressed | guardians.suppressed,
        state,
    )
    staff_links: dict[Pair, Row] = {
        (staff.ids[s.key], groups.ids[group_key]): {}
        for s in snapshot.staff
        for group_key in s.groups
    }
    _merge_links(
        plan,
        ctx,
        "staff_group",
        ("staff_id", "group_id"),
        state.staff_groups,
        staff_links,
        staff.suppressed | groups.suppressed,
        state,
    )
    return plan


# --- records ------------------------------------------------------------------------------


@dataclass
class Merged:
    """Ids of the snapshot's keys after the merge, and which of them were deleted locally."""

    ids: dict[str, uuid.UUID]
    suppressed: set[uuid.UUID]
    new: set[uuid.UUID]


def _merge_records(
    plan: Plan,
    ctx: Context,
    spec: EntitySpec,
    current: EntityState,
    state: State,
    incoming: Iterable[tuple[str, Row]],
) -> Merged:
    incoming_by_key = dict(incoming)
    merged = Merged(ids={}, suppressed=set(), new=set())
    matches = _activation_matches(plan, spec, current, incoming_by_key) if ctx.activation else {}
    table = plan.table(spec.table)
    for key, values in incoming_by_key.items():
        row = current.by_key.get(key) or matches.get(key)
        if row is None:
            record_id = new_id()
            merged.ids[key] = merged_id = record_id
            merged.new.add(merged_id)
            table.inserts.append(
                {
                    "school_id": ctx.school_id,
                    "id": record_id,
                    "source": ctx.source.value,
                    "esis_key": key,
                    **{f: _to_db(f, v) for f, v in values.items()},
                    "esis_values": values,
                    "local_edits": {},
                    "created_at": ctx.now,
                    "updated_at": ctx.now,
                    "version": 1,
                }
            )
            plan.count(spec.name, "added")
            plan.changes.append(
                Change(spec.name, record_id, "created", _created_changes(key, values))
            )
            if plan.report is not None:
                plan.report["created"].append(
                    {"entity": spec.name, "id": str(record_id), "key": key}
                )
            continue
        merged.ids[key] = row["id"]
        if row["deleted_at"] is not None or row["tombstoned_at"] is not None:
            # R6: deleted locally; ESIS does not bring it back.
            merged.suppressed.add(row["id"])
            plan.count(spec.name, "suppressed")
            continue
        _merge_existing(plan, ctx, spec, state, row, key, values, matched=key in matches)

    # R6: an ESIS record that ESIS no longer lists stays, marked missing since now.
    for row in current.rows.values():
        if (
            ctx.source is not Source.ESIS
            and row["source"] == ctx.source.value
            and row["esis_key"] not in incoming_by_key
            and row["deleted_at"] is None
        ):
            plan.absent.append(
                {"entity": spec.name, "table": spec.table, "id": row["id"], "key": row["esis_key"]}
            )
            plan.count(spec.name, "missing")
        elif (
            ctx.source is Source.ESIS
            and row["source"] == Source.ESIS.value
            and row["esis_key"] not in incoming_by_key
            and row["deleted_at"] is None
            and row["missing_in_esis_since"] is None
        ):
            table.updates.append(
                {"school_id": ctx.school_id, "id": row["id"], "missing_in_esis_since": ctx.now}
            )
            plan.count(spec.name, "missing")
            plan.changes.append(Change(spec.name, row["id"], "missing-in-esis"))
    return merged


def _merge_existing(
    plan: Plan,
    ctx: Context,
    spec: EntitySpec,
    state: State,
    row: Row,
    key: str,
    values: Row,
    *,
    matched: bool,
) -> None:
    update: Row = {}
    changes: dict[str, Any] = {}
    if matched:
        update.update(esis_key=key, source=Source.ESIS.value)
        plan.count(spec.name, "matched")
        plan.changes.append(
            Change(
                spec.name,
                row["id"],
                "matched",
                {
                    "source": {"before": row["source"], "after": Source.ESIS.value},
                    "esis_key": {"before": row["esis_key"], "after": key},
                },
            )
        )
    if row["missing_in_esis_since"] is not None:
        update["missing_in_esis_since"] = None
        plan.count(spec.name, "reappeared")
        plan.changes.append(Change(spec.name, row["id"], "reappeared-in-esis"))
    edits = row["local_edits"] or {}
    for name, esis_value in values.items():
        ours = _jsonable(row[name])
        if ours == esis_value:
            _close_drift(plan, state, spec.name, row["id"], name, "agreed")
            continue
        mode = spec.fields[name]
        if should_apply(mode, policy=ctx.policy, edited=name in edits, activation=ctx.activation):
            update[name] = _to_db(name, esis_value)
            changes[name] = {"before": ours, "after": esis_value}
            _close_drift(plan, state, spec.name, row["id"], name, "applied")
        else:
            _open_drift(plan, ctx, state, spec.name, row["id"], name, ours, esis_value)
    if (row["esis_values"] or {}) != values:
        update["esis_values"] = values
    if changes:
        update["updated_at"] = ctx.now
        update["version"] = row["version"] + 1
        plan.count(spec.name, "updated")
        plan.changes.append(Change(spec.name, row["id"], "updated", changes))
    elif not matched:
        plan.count(spec.name, "unchanged")
    if update:
        plan.table(spec.table).updates.append(
            {"school_id": ctx.school_id, "id": row["id"], **update}
        )


def _activation_matches(
    plan: Plan, spec: EntitySpec, current: EntityState, incoming: dict[str, Row]
) -> dict[str, Row]:
    """R2: pair incoming keys ESIS does not know yet with records made from EDEXml or locally.

    The LAS key pairs first (done by the caller); then a student by name + birth date, a
    guardian or staff member by e-mail. Only one-to-one pairs count; ambiguity is reported.
    """
    assert plan.report is not None
    candidates = [
        row
        for row in current.rows.values()
        if row["source"] != Source.ESIS.value
        and row["deleted_at"] is None
        and (row["esis_key"] is None or row["esis_key"] not in incoming)
    ]
    matches: dict[str, Row] = {}
    if spec.name in ("student", "guardian", "staff"):
        ours: dict[tuple[Any, ...], list[Row]] = {}
        for row in candidates:
            fingerprint = _fingerprint(spec.name, row)
            if fingerprint is not None:
                ours.setdefault(fingerprint, []).append(row)
        theirs: dict[tuple[Any, ...], list[str]] = {}
        for key, values in incoming.items():
            if key in current.by_key:
                continue
            fingerprint = _fingerprint(spec.name, values)
            if fingerprint is not None:
                theirs.setdefault(fingerprint, []).append(key)
        for fingerprint, keys in theirs.items():
            rows = ours.get(fingerprint, [])
            if len(keys) == 1 and len(rows) == 1:
                matches[keys[0]] = rows[0]
            elif rows:
                plan.warnings.append(
                    f"{spec.name}: {len(rows)} records here and {len(keys)} in ESIS share a "
                    f"{'name and birth date' if spec.name == 'student' else 'e-mail address'}; "
                    "not matched automatically"
                )
    by = "name_birth_date" if spec.name == "student" else "email"
    matched_ids = set()
    for key, row in matches.items():
        matched_ids.add(row["id"])
        plan.report["matched"].append(
            {
                "entity": spec.name,
                "id": str(row["id"]),
                "key": key,
                "by": by,
                "previous_source": row["source"],
            }
        )
    for key, row in current.by_key.items():
        if key in incoming and row["source"] != Source.ESIS.value:
            matched_ids.add(row["id"])
            plan.report["matched"].append(
                {
                    "entity": spec.name,
                    "id": str(row["id"]),
                    "key": key,
                    "by": "key",
                    "previous_source": row["source"],
                }
            )
            matches[key] = row
    for row in candidates:
        if row["id"] not in matched_ids:
            plan.report["unmatched"].append(
                {
                    "entity": spec.name,
                    "id": str(row["id"]),
                    "source": row["source"],
                    "esis_key": row["esis_key"],
                }
            )
    return matches


def _fingerprint(entity: str, values: Row) -> tuple[Any, ...] | None:
    if entity == "student":
        first = values.get("given_name") or (values.get("first_names") or "").split(" ")[0]
        birth = _jsonable(values.get("birth_date"))
        if not values.get("last_name") or not first or not birth:
            return None
        return (_fold(values["last_name"]), _fold(values.get("name_prefix")), _fold(first), birth)
    email = values.get("email")
    return (_fold(email),) if email else None


# --- links --------------------------------------------------------------------------------


def _merge_student_groups(
    plan: Plan,
    ctx: Context,
    state: State,
    snapshot: EsisSnapshot,
    students: Merged,
    groups: Merged,
) -> None:
    """Memberships; a student's move to another main group is drift, not a silent move."""
    incoming: dict[Pair, Row] = {}
    held: set[Pair] = set()
    main_links = _current_main_groups(state)
    for s in snapshot.students:
        student_id = students.ids[s.key]
        for group_key in s.composite_groups:
            incoming[(student_id, groups.ids[group_key])] = {}
        if s.group is None:
            continue
        pair = (student_id, groups.ids[s.group])
        incoming[pair] = {}
        ours = main_links.get(student_id, [])
        if student_id in students.suppressed:
            continue
        if not ours or pair[1] in ours:
            # ESIS's class is ours (again), or the student had none: no move to hold back.
            _close_drift(plan, state, "student", student_id, "group", "agreed")
            continue
        our_key = state.groups.rows[ours[0]]["esis_key"]
        edited = "group" in (state.students.rows[student_id]["local_edits"] or {})
        if should_apply(
            Mode.PROTECTED, policy=ctx.policy, edited=edited, activation=ctx.activation
        ):
            for old_group in ours:
                old = state.student_groups.rows[(student_id, old_group)]
                plan.table("student_group").deletes.append(old["id"])
                plan.changes.append(
                    Change(
                        "student_group",
                        old["id"],
                        "removed",
                        {"reason": "student moved group in ESIS"},
                    )
                )
            plan.changes.append(
                Change(
                    "student",
                    student_id,
                    "updated",
                    {"group": {"before": our_key, "after": s.group}},
                )
            )
            _close_drift(plan, state, "student", student_id, "group", "applied")
            plan.count("student_group", "moved")
        else:
            held.add(pair)
            _open_drift(plan, ctx, state, "student", student_id, "group", our_key, s.group)
    for pair in held:
        incoming.pop(pair)
    _merge_links(
        plan,
        ctx,
        "student_group",
        ("student_id", "group_id"),
        state.student_groups,
        incoming,
        students.suppressed | groups.suppressed,
        state,
    )


def _current_main_groups(state: State) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Per student, the ESIS class (non-composite group) links it has now."""
    out: dict[uuid.UUID, list[uuid.UUID]] = {}
    for (student_id, group_id), row in state.student_groups.rows.items():
        group = state.groups.rows.get(group_id)
        if (
            group is not None
            and group["source"] == Source.ESIS.value
            and not group["is_composite"]
            and row["deleted_at"] is None
        ):
            out.setdefault(student_id, []).append(group_id)
    return out


def _merge_links(
    plan: Plan,
    ctx: Context,
    name: str,
    columns: tuple[str, str],
    current: LinkState,
    incoming: dict[Pair, Row],
    suppressed_ends: set[uuid.UUID],
    state: State,
) -> None:
    table = plan.table(name)
    for pair, values in incoming.items():
        row = current.rows.get(pair)
        if row is None:
            if pair[0] in suppressed_ends or pair[1] in suppressed_ends:
                plan.count(name, "suppressed")
                continue
            link_id = new_id()
            table.inserts.append(
                {
                    "school_id": ctx.school_id,
                    "id": link_id,
                    columns[0]: pair[0],
                    columns[1]: pair[1],
                    "source": ctx.source.value,
                    "esis_values": values or None,
                    "local_edits": {},
                    "created_at": ctx.now,
                    "updated_at": ctx.now,
                    **values,
                }
            )
            plan.count(name, "added")
            plan.changes.append(
                Change(
                    name,
                    link_id,
                    "created",
                    {
                        columns[0]: {"before": None, "after": str(pair[0])},
                        columns[1]: {"before": None, "after": str(pair[1])},
                        **{k: {"before": None, "after": v} for k, v in values.items()},
                    },
                )
            )
            continue
        if row["deleted_at"] is not None:
            plan.count(name, "suppressed")
            continue
        update: Row = {}
        if row["missing_in_esis_since"] is not None:
            update["missing_in_esis_since"] = None
            plan.count(name, "reappeared")
            plan.changes.append(Change(name, row["id"], "reappeared-in-esis"))
        changes: dict[str, Any] = {}
        for field_name, esis_value in values.items():
            ours = row[field_name]
            if ours == esis_value:
                _close_drift(plan, state, name, row["id"], field_name, "agreed")
                continue
            edited = field_name in (row["local_edits"] or {})
            if should_apply(
                Mode.PROTECTED, policy=ctx.policy, edited=edited, activation=ctx.activation
            ):
                update[field_name] = esis_value
                changes[field_name] = {"before": ours, "after": esis_value}
                _close_drift(plan, state, name, row["id"], field_name, "applied")
            else:
                _open_drift(plan, ctx, state, name, row["id"], field_name, ours, esis_value)
        if values and (row["esis_values"] or {}) != values:
            update["esis_values"] = values
        if row["source"] != Source.ESIS.value and ctx.activation:
            update["source"] = Source.ESIS.value
        if changes:
            update["updated_at"] = ctx.now
            plan.count(name, "updated")
            plan.changes.append(Change(name, row["id"], "updated", changes))
        else:
            plan.count(name, "unchanged")
        if update:
            table.updates.append({"school_id": ctx.school_id, "id": row["id"], **update})
    # R6 for links: kept, marked missing in ESIS.
    deleted = set(table.deletes)
    for pair, row in current.rows.items():
        if (
            pair not in incoming
            and row["source"] == Source.ESIS.value
            and row["deleted_at"] is None
            and row["missing_in_esis_since"] is None
            and row["id"] not in deleted
        ):
            table.updates.append(
                {"school_id": ctx.school_id, "id": row["id"], "missing_in_esis_since": ctx.now}
            )
            plan.count(name, "missing")
            plan.changes.append(Change(name, row["id"], "missing-in-esis"))


# --- drift --------------------------------------------------------------------------------


def _open_drift(
    plan: Plan,
    ctx: Context,
    state: State,
    entity: str,
    record_id: uuid.UUID,
    field_name: str,
    ours: Any,
    esis_value: Any,
) -> None:
    existing = state.drift.get((entity, record_id, field_name))
    if existing is None:
        drift_id = new_id()
        plan.drift_inserts.append(
            {
                "school_id": ctx.school_id,
                "id": drift_id,
                "entity": entity,
                "record_id": record_id,
                "field": field_name,
                "our_value": ours,
                "esis_value": esis_value,
                "first_seen_at": ctx.now,
                "last_seen_at": ctx.now,
                "first_run_id": ctx.run_id,
                "last_run_id": ctx.run_id,
            }
        )
        plan.count(entity, "drift_opened")
        plan.changes.append(
            Change(
                entity, record_id, "drift-opened", {field_name: {"ours": ours, "esis": esis_value}}
            )
        )
    elif existing["esis_value"] != esis_value or existing["our_value"] != ours:
        # ESIS changed its mind (or we changed ours): the same item, seen anew.
        plan.drift_updates.append(
            {
                "school_id": ctx.school_id,
                "id": existing["id"],
                "our_value": ours,
                "esis_value": esis_value,
                "first_seen_at": ctx.now,
                "last_seen_at": ctx.now,
                "first_run_id": ctx.run_id,
                "last_run_id": ctx.run_id,
            }
        )
        plan.changes.append(
            Change(
                entity, record_id, "drift-updated", {field_name: {"ours": ours, "esis": esis_value}}
            )
        )
    else:
        plan.drift_touched.append(existing["id"])


def _close_drift(
    plan: Plan, state: State, entity: str, record_id: uuid.UUID, field_name: str, why: str
) -> None:
    existing = state.drift.get((entity, record_id, field_name))
    if existing is not None:
        plan.drift_deletes.append(existing["id"])
        plan.count(entity, "drift_closed")
        plan.changes.append(
            Change(entity, record_id, "drift-closed", {field_name: {"reason": why}})
        )


# --- values -------------------------------------------------------------------------------


def _values(model: Any, spec: EntitySpec) -> Row:
    return {name: _jsonable(getattr(model, name)) for name in spec.fields}


def _group_values(group: Any, school_year: str) -> Row:
    values = {
        name: _jsonable(getattr(group, name)) for name in GROUP.fields if name != "school_year"
    }
    values["school_year"] = school_year
    return values


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def _to_db(name: str, value: Any) -> Any:
    if name in DATE_FIELDS and isinstance(value, str):
        return dt.date.fromisoformat(value)
    return value


def _fold(value: Any) -> str:
    return " ".join(str(value or "").casefold().split())


def _created_changes(key: str, values: Row) -> dict[str, Any]:
    return {
        "esis_key": {"before": None, "after": key},
        **{k: {"before": None, "after": v} for k, v in values.items()},
    }
