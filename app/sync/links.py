"""Links (student in group, guardian of student, staff in group): not personal data.

New links are added, absent ones kept and marked missing (R6); a student's move to another
main group during the year is drift, not a silent move.
"""

from __future__ import annotations

import uuid
from typing import Any

from app.db import new_id
from app.esis.schemas import EsisSnapshot
from app.events.service import Change, Created
from app.provenance import Source
from app.sync.drift_plan import close_drift, open_drift
from app.sync.plan import LinkState, Pair, Plan, Row, State
from app.sync.records import Merged
from app.sync.rules import Context, Mode, should_apply

ESIS = Source.ESIS.value  # read once: an enum member's `.value` is a Python-level property


def merge_student_groups(
    plan: Plan,
    ctx: Context,
    state: State,
    snapshot: EsisSnapshot,
    students: Merged,
    groups: Merged,
    *,
    keep: frozenset[str] = frozenset(),
    shortcut: bool = True,
) -> None:
    """Memberships; a student's move to another main group is drift, not a silent move.

    The memberships of a student in `keep` (held with an unusable value) stay as they are."""
    incoming: dict[Pair, Row] = {}
    held: set[Pair] = set()
    main_links = current_main_groups(state)
    student_ids, group_ids, suppressed = students.ids, groups.ids, students.suppressed
    drift = state.drift  # empty on most merges: then there is no drift to close
    for s in snapshot.students:
        student_id = student_ids.get(s.key)
        if student_id is None or s.key in keep:
            continue
        for group_key in s.composite_groups:
            if group_key in group_ids:
                incoming[(student_id, group_ids[group_key])] = {}
        group_id = group_ids.get(s.group) if s.group is not None else None
        if group_id is None:
            continue
        pair = (student_id, group_id)
        incoming[pair] = {}
        ours = main_links.get(student_id, [])
        if suppressed and student_id in suppressed:
            continue
        if not ours or group_id in ours:
            # ESIS's class is ours (again), or the student had none: no move to hold back.
            if drift:
                close_drift(plan, state, "student", student_id, "group", "agreed")
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
            close_drift(plan, state, "student", student_id, "group", "applied")
            plan.count("student_group", "moved")
        else:
            held.add(pair)
            open_drift(plan, ctx, state, "student", student_id, "group", our_key, s.group)
    for pair in held:
        incoming.pop(pair)
    merge_links(
        plan,
        ctx,
        "student_group",
        ("student_id", "group_id"),
        state.student_groups,
        incoming,
        students.suppressed | groups.suppressed,
        state,
        keep_ends={students.ids[key] for key in keep if key in students.ids},
        shortcut=shortcut,
    )


def current_main_groups(state: State) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Per student, the ESIS class (non-composite group) links it has now."""
    out: dict[uuid.UUID, list[uuid.UUID]] = {}
    for (student_id, group_id), row in state.student_groups.rows.items():
        group = state.groups.rows.get(group_id)
        if (
            group is not None
            and group["source"] == ESIS
            and not group["is_composite"]
            and row["deleted_at"] is None
        ):
            out.setdefault(student_id, []).append(group_id)
    return out


def merge_links(
    plan: Plan,
    ctx: Context,
    name: str,
    columns: tuple[str, str],
    current: LinkState,
    incoming: dict[Pair, Row],
    suppressed_ends: set[uuid.UUID],
    state: State,
    *,
    keep_ends: set[uuid.UUID] | None = None,
    shortcut: bool = True,
) -> None:
    """`keep_ends`: records left as they are (an unusable value); so are their links.

    `shortcut`: when every link we have is in the snapshot, the R6 pass over them (which
    marks the absent ones missing) is not made: none is absent. Off, it always is."""
    keep_ends = keep_ends or set()
    table = plan.table(name)
    rows = current.rows
    drift = state.drift  # empty on most merges: then there is no drift to close
    unchanged = 0
    known = 0  # incoming links that are rows already
    for pair, values in incoming.items():
        row = rows.get(pair)
        if row is None:
            if suppressed_ends and (pair[0] in suppressed_ends or pair[1] in suppressed_ends):
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
                # Both ends as their UUIDs: the event's JSON writes them as their text.
                Change(
                    name,
                    link_id,
                    "created",
                    Created(((columns[0], pair[0]), (columns[1], pair[1])), values),
                )
            )
            continue
        known += 1
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
                if drift:
                    close_drift(plan, state, name, row["id"], field_name, "agreed")
                continue
            edited = field_name in (row["local_edits"] or {})
            if should_apply(
                Mode.PROTECTED, policy=ctx.policy, edited=edited, activation=ctx.activation
            ):
                update[field_name] = esis_value
                changes[field_name] = {"before": ours, "after": esis_value}
                close_drift(plan, state, name, row["id"], field_name, "applied")
            else:
                open_drift(plan, ctx, state, name, row["id"], field_name, ours, esis_value)
        if values and (row["esis_values"] or {}) != values:
            update["esis_values"] = values
        if row["source"] != ESIS and ctx.activation:
            update["source"] = ESIS
        if changes:
            update["updated_at"] = ctx.now
            plan.count(name, "updated")
            plan.changes.append(Change(name, row["id"], "updated", changes))
        else:
            unchanged += 1
        if update:
            table.updates.append({"school_id": ctx.school_id, "id": row["id"], **update})
    if unchanged:
        plan.count(name, "unchanged", unchanged)
    if shortcut and known == len(rows):
        return  # every link we have is in the snapshot: none is missing (R6 below)
    # R6 for links: kept, marked missing in ESIS.
    deleted = set(table.deletes)
    for pair, row in rows.items():
        if (
            pair not in incoming
            and pair[0] not in keep_ends
            and pair[1] not in keep_ends
            and row["source"] == ESIS
            and row["deleted_at"] is None
            and row["missing_in_esis_since"] is None
            and row["id"] not in deleted
        ):
            table.updates.append(
                {"school_id": ctx.school_id, "id": row["id"], "missing_in_esis_since": ctx.now}
            )
            plan.count(name, "missing")
            plan.changes.append(Change(name, row["id"], "missing-in-esis"))
