"""Drift as the merge plans it: an ESIS value held back by R5 opens (or refreshes) an item;
agreement or an applied value closes it. The admin's side is `drift.py`."""

from __future__ import annotations

import uuid
from typing import Any

from app.db import new_id
from app.events.service import Change
from app.sync.plan import Plan, State
from app.sync.rules import Context


def open_drift(
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


def close_drift(
    plan: Plan, state: State, entity: str, record_id: uuid.UUID, field_name: str, why: str
) -> None:
    existing = state.drift.get((entity, record_id, field_name))
    if existing is not None:
        plan.drift_deletes.append(existing["id"])
        plan.count(entity, "drift_closed")
        plan.changes.append(
            Change(entity, record_id, "drift-closed", {field_name: {"reason": why}})
        )
