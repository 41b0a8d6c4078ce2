"""The year transition's report: counts and lists of what a decision removes, ends, flags
and keeps, paged; stored with the transition and shown by the preview."""

from __future__ import annotations

from typing import Any

from app.roster.views import display_name
from app.sync.plan import Row
from app.year_transition.decide import Decision


def _item(row: Row, reason: str) -> dict[str, Any]:
    name = row.get("name") if "is_composite" in row else display_name(row)
    return {"id": str(row["id"]), "esis_key": row.get("esis_key"), "name": name, "reason": reason}


def report(d: Decision, *, limit: int | None = None, offset: int = 0) -> dict[str, Any]:
    """Counts and lists; `limit`/`offset` page every list at once."""

    def section(items: list[dict[str, Any]]) -> dict[str, Any]:
        page = items[offset:] if limit is None else items[offset : offset + limit]
        return {"count": len(items), "items": page}

    return {
        "from_year": d.from_year,
        "to_year": d.to_year,
        "live_students": d.live_students,
        "removal_share": round(d.share, 4),
        "held_reason": d.held_reason,
        "students_removed": section(
            [_item(r, "R7: not in the new year's ESIS data") for r in d.students]
        ),
        "guardians_removed": section(
            [_item(r, "R8: all their children leave") for r in d.guardians]
        ),
        "staff_removed": section([_item(r, "R9: no longer active at the school") for r in d.staff]),
        "groups_ended": section(
            [_item(r, "an ESIS group of the old year that ends") for r in d.groups]
        ),
        "groups_new": section([{"esis_key": k} for k in d.new_groups]),
        "memberships_ended": {k: len(v) for k, v in d.ended_links.items()},
        "memberships_new": d.new_memberships,
        "local_groups_flagged": section([_item(r, R10_REASON) for r in d.local_groups]),
        "class_arrangements_flagged": section(
            [_item(r, r11_reason(d.to_year)) for r in d.arrangements]
        ),
        "drift_kept": section(d.drift),
    }


R10_REASON = "R10: a local group; remove it by hand if it is no longer needed"


def r11_reason(year: str) -> str:
    return f"R11: check this class arrangement against {year}"


def more_pages(d: Decision, *, limit: int, offset: int) -> bool:
    longest = max(
        len(d.students),
        len(d.guardians),
        len(d.staff),
        len(d.groups),
        len(d.new_groups),
        len(d.local_groups),
        len(d.arrangements),
        len(d.drift),
    )
    return offset + limit < longest
