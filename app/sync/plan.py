"""What a merge decides, before anything is written: the state it reads and the plan it makes.

`service.plan_merge` is a pure function from (State, snapshot, policy) to a Plan;
`repository.write_plan` applies a Plan with bulk statements.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from app.events.service import Change

Row = dict[str, Any]
Pair = tuple[uuid.UUID, uuid.UUID]

COUNT_KEYS = (
    "added",
    "updated",
    "unchanged",
    "matched",
    "drift_opened",
    "drift_closed",
    "missing",
    "reappeared",
    "suppressed",
    "moved",
    "removed",
)


@dataclass
class EntityState:
    """Current rows of one table of one school."""

    rows: dict[uuid.UUID, Row] = field(default_factory=dict)
    by_key: dict[str, Row] = field(default_factory=dict)
    # Records settled by their digest (sync/digests.py): loaded narrow, without the fields
    # ESIS sends or the values it sent; the merge's short-cut takes them as they are.
    settled: set[uuid.UUID] = field(default_factory=set)

    def add(self, row: Row) -> None:
        self.rows[row["id"]] = row
        if row.get("esis_key") is not None:
            self.by_key[row["esis_key"]] = row


@dataclass
class LinkState:
    rows: dict[Pair, Row] = field(default_factory=dict)


@dataclass
class State:
    """Everything the merge needs of one school, loaded once."""

    school_id: uuid.UUID
    groups: EntityState
    students: EntityState
    guardians: EntityState
    staff: EntityState
    student_groups: LinkState
    student_guardians: LinkState
    staff_groups: LinkState
    drift: dict[tuple[str, uuid.UUID, str], Row]
    # Key-change proposals decided or pending: (entity, record id, new key) -> status.
    key_changes: dict[tuple[str, uuid.UUID, str], str] = field(default_factory=dict)


@dataclass
class TablePlan:
    inserts: list[Row] = field(default_factory=list)
    updates: list[Row] = field(default_factory=list)
    deletes: list[uuid.UUID] = field(default_factory=list)


@dataclass
class Plan:
    now: dt.datetime
    run_id: uuid.UUID | None = None
    tables: dict[str, TablePlan] = field(default_factory=dict)
    drift_inserts: list[Row] = field(default_factory=list)
    drift_updates: list[Row] = field(default_factory=list)
    drift_touched: list[uuid.UUID] = field(default_factory=list)
    drift_deletes: list[uuid.UUID] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    report: dict[str, list[Row]] | None = None
    absent: list[Row] = field(default_factory=list)  # records a file import no longer lists
    key_changes: list[Row] = field(default_factory=list)  # proposals (sync/key_pairs.py)

    def table(self, name: str) -> TablePlan:
        return self.tables.setdefault(name, TablePlan())

    def count(self, entity: str, what: str, n: int = 1) -> None:
        counter = self.counts.get(entity)
        if counter is None:  # not setdefault: that would build a Counter on every call
            counter = self.counts[entity] = Counter()
        counter[what] += n

    def counts_json(self) -> dict[str, dict[str, int]]:
        return {
            entity: {key: counter.get(key, 0) for key in COUNT_KEYS}
            for entity, counter in sorted(self.counts.items())
        }
