"""Records (groups, students, guardians, staff): R4 additions, R5 drift, R6 missing marks.

A new key is added (R4); a known one takes ESIS's values where `should_apply` says so and
keeps drift otherwise (R5); a record ESIS no longer lists stays, marked missing (R6); a
record deleted locally is not brought back (suppressed).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.db import new_id
from app.events.service import Change
from app.provenance import Source
from app.sync.digests import digest
from app.sync.drift_plan import close_drift, open_drift
from app.sync.key_pairs import PERSONS, matched_by, pair
from app.sync.matching import activation_matches
from app.sync.plan import EntityState, Plan, Row, State
from app.sync.rules import (
    DATE_FIELDS,
    PLAIN,
    Context,
    EntitySpec,
    created_changes,
    jsonable,
    should_apply,
    to_db,
)

ESIS = Source.ESIS.value  # read once: an enum member's `.value` is a Python-level property


@dataclass
class Merged:
    """Ids of the snapshot's keys after the merge, and which of them were deleted locally."""

    ids: dict[str, uuid.UUID]
    suppressed: set[uuid.UUID]
    new: set[uuid.UUID]
    # New keys proposed as a key change: they map to the record they probably are, whose
    # links are left as they are until an admin decides (like a kept key).
    proposed: frozenset[str] = frozenset()


def known(current: EntityState) -> Merged:
    """A kind the snapshot does not carry: its records as they are, for links to refer to."""
    merged = Merged(ids={}, suppressed=set(), new=set())
    for key, row in current.by_key.items():
        merged.ids[key] = row["id"]
        if not _live(row):
            merged.suppressed.add(row["id"])
    return merged


def _live(row: Row) -> bool:
    return row["deleted_at"] is None and row["tombstoned_at"] is None


def merge_records(
    plan: Plan,
    ctx: Context,
    spec: EntitySpec,
    current: EntityState,
    state: State,
    incoming: Iterable[tuple[str, Row]],
    *,
    keep: frozenset[str] = frozenset(),
    shortcut: bool = True,
) -> Merged:
    """`keep`: keys the snapshot holds with an unusable value; left exactly as they are.

    `shortcut`: a known record whose every field already equals what ESIS sends, with no
    drift, no missing mark and no deletion, is settled by that one comparison (`agrees`)
    instead of the field-by-field rules of `merge_existing`, with the same outcome; and when
    every record we have is listed, none is looked for as gone. Off, every known record goes
    the full path (the property tests compare the two)."""
    incoming_by_key = dict(incoming)
    merged = Merged(ids={}, suppressed=set(), new=set())
    for key in keep:
        incoming_by_key.pop(key, None)
        if (kept := current.by_key.get(key)) is not None:
            merged.ids[key] = kept["id"]
            if not _live(kept):
                merged.suppressed.add(kept["id"])
    matches = activation_matches(plan, spec, current, incoming_by_key) if ctx.activation else {}
    table = plan.table(spec.table)
    # Short-cut too: every record we have is keyed and listed (the daily case), so none is
    # gone: no key change to propose, nothing to mark missing (R6) below.
    all_listed = (
        shortcut
        and len(current.by_key) == len(current.rows)
        and current.by_key.keys() <= incoming_by_key.keys()
    )
    proposed = (
        {}
        if all_listed
        else _key_changes(plan, ctx, spec, current, state, incoming_by_key, keep, matches)
    )
    merged.proposed = frozenset(proposed)
    drifting = drifting_records(state, spec) if shortcut else None
    unchanged = 0
    by_key = current.by_key
    settled = current.settled
    for key, values in incoming_by_key.items():
        row = by_key.get(key) or matches.get(key)
        if proposed and key in proposed:
            merged.ids[key] = proposed[key]["id"]
            continue
        if (
            drifting is not None
            and row is not None
            and row["missing_in_esis_since"] is None
            and row["deleted_at"] is None
            and row["tombstoned_at"] is None
            and (not drifting or row["id"] not in drifting)
            and (not matches or key not in matches)
            and (row["id"] in settled or agrees(row, values))
        ):
            # The short-cut: ours already is what ESIS sends, and nothing local is pending
            # (no drift on the record, not missing, not deleted, not being matched). The full
            # path would only close drift that is not there and count it unchanged. A record
            # settled by its digest stores these values and this digest already.
            merged.ids[key] = row["id"]
            if row["id"] not in settled:
                update = _provenance(row, values, digest(row["id"], values, row["version"]))
                if update:
                    table.updates.append({"school_id": ctx.school_id, "id": row["id"], **update})
            unchanged += 1
            continue
        if row is None:
            record_id = new_id()
            merged.ids[key] = merged_id = record_id
            merged.new.add(merged_id)
            insert = {
                "school_id": ctx.school_id,
                "id": record_id,
                "source": ctx.source.value,
                "esis_key": key,
                **values,
                "esis_values": values,
                "esis_digest": digest(record_id, values, 1),
                "local_edits": {},
                "created_at": ctx.now,
                "updated_at": ctx.now,
                "version": 1,
            }
            for name in DATE_FIELDS:  # the only values stored as other than their JSON form
                if name in values:
                    insert[name] = to_db(name, values[name])
            table.inserts.append(insert)
            plan.count(spec.name, "added")
            plan.changes.append(
                Change(spec.name, record_id, "created", created_changes(key, values))
            )
            if plan.report is not None:
                plan.report["created"].append(
                    {"entity": spec.name, "id": str(record_id), "key": key}
                )
            continue
        merged.ids[key] = row["id"]
        if not _live(row):
            # R6: deleted locally; ESIS does not bring it back.
            merged.suppressed.add(row["id"])
            plan.count(spec.name, "suppressed")
            continue
        merge_existing(plan, ctx, spec, state, row, key, values, matched=key in matches)
    if unchanged:
        plan.count(spec.name, "unchanged", unchanged)

    if all_listed:
        return merged
    # R6: an ESIS record that ESIS no longer lists stays, marked missing since now (unless
    # it is proposed as a key change: then it waits, as it is, for an admin).
    paired = {row["id"] for row in proposed.values()}
    for row in current.rows.values():
        if (
            ctx.source is not Source.ESIS
            and row["source"] == ctx.source.value
            and row["esis_key"] not in incoming_by_key
            and row["esis_key"] not in keep
            and row["deleted_at"] is None
        ):
            plan.absent.append(
                {"entity": spec.name, "table": spec.table, "id": row["id"], "key": row["esis_key"]}
            )
            plan.count(spec.name, "missing")
        elif (
            ctx.source is Source.ESIS
            and row["source"] == ESIS
            and row["esis_key"] not in incoming_by_key
            and row["esis_key"] not in keep
            and row["deleted_at"] is None
            and row["missing_in_esis_since"] is None
            and row["id"] not in paired
        ):
            table.updates.append(
                {"school_id": ctx.school_id, "id": row["id"], "missing_in_esis_since": ctx.now}
            )
            plan.count(spec.name, "missing")
            plan.changes.append(Change(spec.name, row["id"], "missing-in-esis"))
    return merged


def drifting_records(state: State, spec: EntitySpec) -> set[uuid.UUID]:
    """Records of `spec` with an open drift item on one of its fields."""
    return {
        record_id
        for (entity, record_id, name) in state.drift
        if entity == spec.name and name in spec.fields
    }


def _provenance(row: Row, values: Row, after: str | None) -> Row:
    """What of the record's provenance columns changes: the values ESIS sent (now these)
    and the digest (`after`: of these values at the version the merge leaves, when the
    record agrees with them; else None)."""
    update: Row = {}
    if (row["esis_values"] or {}) != values:
        update["esis_values"] = values
    if row["esis_digest"] != after:
        update["esis_digest"] = after
    return update


def agrees(row: Row, values: Row) -> bool:
    """Every field of ours equals ESIS's value, compared as `merge_existing` compares them
    (`jsonable(ours) == esis`; a plain value is its own jsonable form)."""
    for name, esis_value in values.items():
        ours = row[name]
        if ours != esis_value and (type(ours) in PLAIN or jsonable(ours) != esis_value):
            return False
    return True


def _key_changes(
    plan: Plan,
    ctx: Context,
    spec: EntitySpec,
    current: EntityState,
    state: State,
    incoming: dict[str, Row],
    keep: frozenset[str],
    matches: dict[str, Row],
) -> dict[str, Row]:
    """Pair records ESIS dropped with new keys that look like the same person: proposals."""
    if not ctx.key_changes or ctx.activation or ctx.source is not Source.ESIS:
        return {}
    if spec.name not in PERSONS:
        return {}
    new = {k: v for k, v in incoming.items() if k not in current.by_key and k not in matches}
    gone = [
        row
        for row in current.rows.values()
        if row["source"] == ESIS
        and row["esis_key"] not in incoming
        and row["esis_key"] not in keep
        and _live(row)
        and row["missing_in_esis_since"] is None
    ]
    rejected = frozenset(
        (record_id, new_key)
        for (entity, record_id, new_key), status in state.key_changes.items()
        if entity == spec.name and status != "proposed"
    )
    proposed = pair(spec.name, gone, new, rejected)
    for key, row in proposed.items():
        plan.key_changes.append(
            {
                "entity": spec.name,
                "record_id": row["id"],
                "old_key": row["esis_key"],
                "new_key": key,
                "matched_by": matched_by(spec.name),
            }
        )
        plan.warnings.append(
            f"{spec.name}: key {row['esis_key']} is gone and {key} is new, probably the same "
            "person: proposed as a key change (neither added nor marked missing until an "
            "admin decides)"
        )
    return proposed


def merge_existing(
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
        update.update(esis_key=key, source=ESIS)
        plan.count(spec.name, "matched")
        plan.changes.append(
            Change(
                spec.name,
                row["id"],
                "matched",
                {
                    "source": {"before": row["source"], "after": ESIS},
                    "esis_key": {"before": row["esis_key"], "after": key},
                },
            )
        )
    if row["missing_in_esis_since"] is not None:
        update["missing_in_esis_since"] = None
        plan.count(spec.name, "reappeared")
        plan.changes.append(Change(spec.name, row["id"], "reappeared-in-esis"))
    edits = row["local_edits"] or {}
    differs = False  # a field of ours stays other than ESIS's value (drift)
    for name, esis_value in values.items():
        ours = jsonable(row[name])
        if ours == esis_value:
            close_drift(plan, state, spec.name, row["id"], name, "agreed")
            continue
        mode = spec.fields[name]
        if should_apply(mode, policy=ctx.policy, edited=name in edits, activation=ctx.activation):
            update[name] = to_db(name, esis_value)
            changes[name] = {"before": ours, "after": esis_value}
            close_drift(plan, state, spec.name, row["id"], name, "applied")
        else:
            differs = True
            open_drift(plan, ctx, state, spec.name, row["id"], name, ours, esis_value)
    version = row["version"] + 1 if changes else row["version"]
    after = None if differs else digest(row["id"], values, version)
    update.update(_provenance(row, values, after))
    if changes:
        update["updated_at"] = ctx.now
        update["version"] = version
        plan.count(spec.name, "updated")
        plan.changes.append(Change(spec.name, row["id"], "updated", changes))
    elif not matched:
        plan.count(spec.name, "unchanged")
    if update:
        plan.table(spec.table).updates.append(
            {"school_id": ctx.school_id, "id": row["id"], **update}
        )
