"""The change guard: a snapshot that would change too much of a school at once is held.

A pure decision from a `Plan` (what the snapshot would do) and the `State` it was planned
against. Two shares, per school (`School.change_guard_update_share`, `..._missing_share`):

- updates: more than the share of one kind's records would be updated (Clever holds at 75 %);
- missing: more than the share of the school's students would be marked missing in ESIS in
  the middle of the year (Clever holds deletions at 10 %): an export cut in half looks so.

"More than" is strict: exactly at the share passes. A kind with fewer than `FLOOR` live
records is not judged (three of four children updated is not an accident worth holding),
and a kind the snapshot does not carry (its `scope`) is not judged either: nothing changes
there. Activation and a school's first load are never guarded (the callers pass no guard).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.esis.schemas import Kind
from app.sync.plan import EntityState, Plan, State

# Fewer live records than this in a kind and a share says little: not judged.
FLOOR = 20

_KINDS: tuple[tuple[Kind, str], ...] = (
    (Kind.GROUPS, "group"),
    (Kind.STUDENTS, "student"),
    (Kind.GUARDIANS, "guardian"),
    (Kind.STAFF, "staff"),
)


@dataclass(frozen=True)
class GuardShares:
    update: float = 0.75
    missing: float = 0.10


@dataclass(frozen=True)
class Held:
    """Why a snapshot is held, and what it would have done (counts per entity)."""

    reasons: list[str]
    report: dict[str, Any]


def _live(entities: EntityState) -> int:
    return sum(
        1
        for row in entities.rows.values()
        if row["deleted_at"] is None and row["tombstoned_at"] is None
    )


def _over(count: int, total: int, share: float) -> bool:
    # Compared in integers where possible: 15 of 20 at 0.75 is exactly at the share.
    return count * 1_000_000 > round(share * 1_000_000) * total


def check(*, plan: Plan, state: State, scope: frozenset[Kind], shares: GuardShares) -> Held | None:
    """None when the plan may be applied; else why it is held."""
    reasons: list[str] = []
    judged: dict[str, dict[str, int]] = {}
    entities = {
        "group": state.groups,
        "student": state.students,
        "guardian": state.guardians,
        "staff": state.staff,
    }
    for kind, entity in _KINDS:
        if kind not in scope:
            continue
        total = _live(entities[entity])
        counts = plan.counts.get(entity)
        updated = counts["updated"] if counts else 0
        missing = counts["missing"] if counts else 0
        judged[entity] = {"records": total, "updated": updated, "missing": missing}
        if total < FLOOR:
            continue
        if _over(updated, total, shares.update):
            reasons.append(
                f"{entity}: {updated} of {total} records would be updated "
                f"({updated / total:.0%}), more than the change guard of {shares.update:.0%}"
            )
        if entity == "student" and _over(missing, total, shares.missing):
            reasons.append(
                f"student: {missing} of {total} students would be marked missing in ESIS "
                f"({missing / total:.0%}), more than the change guard of {shares.missing:.0%}"
            )
    if not reasons:
        return None
    return Held(
        reasons=reasons,
        report={
            "guard": {
                "reasons": reasons,
                "shares": {"update": shares.update, "missing": shares.missing},
                "floor": FLOOR,
                "judged": judged,
                "would": plan.counts_json(),
            }
        },
    )
