"""Checks a snapshot's references before anything is applied: each error names the key."""

from __future__ import annotations

from collections import Counter
from typing import Any

from app.esis.errors import FormatError, invalid
from app.esis.schemas import EsisSnapshot


def check_snapshot(
    snapshot: EsisSnapshot, *, brin: str, branch: str, max_records: int | None = None
) -> None:
    """Raise one 422 listing every problem: wrong school, duplicate and unknown keys."""
    errors: list[dict[str, Any]] = []
    total = sum(len(getattr(snapshot, n)) for n in ("groups", "students", "guardians", "staff"))
    if max_records is not None and total > max_records:
        raise FormatError(
            f"the snapshot has {total} records, more than the limit of {max_records} "
            "(ESIS_SYNC_MAX_SNAPSHOT_RECORDS)",
            errors=[{"field": "body", "message": "too many records"}],
        )

    def error(field: str, message: str) -> None:
        errors.append({"field": field, "message": message})

    school = snapshot.school
    if (school.brin, school.branch) != (brin, branch):
        error("school", f"snapshot is for school {school.brin}{school.branch}, not {brin}{branch}")

    for name in ("groups", "students", "guardians", "staff"):
        counts = Counter(item.key for item in getattr(snapshot, name))
        for key, n in counts.items():
            if n > 1:
                error(name, f"duplicate key {key!r} ({n} times)")

    groups = {g.key: g for g in snapshot.groups}
    students = {s.key for s in snapshot.students}
    for s in snapshot.students:
        where = f"students (key {s.key})"
        if s.group is not None:
            group = groups.get(s.group)
            if group is None:
                error(f"{where}.group", f"unknown group key {s.group!r}")
            elif group.is_composite:
                error(f"{where}.group", f"main group {s.group!r} is a composite group")
        for key in s.composite_groups:
            group = groups.get(key)
            if group is None:
                error(f"{where}.composite_groups", f"unknown group key {key!r}")
            elif not group.is_composite:
                error(f"{where}.composite_groups", f"group {key!r} is not a composite group")
    for g in snapshot.guardians:
        seen: set[str] = set()
        for link in g.students:
            if link.student not in students:
                error(f"guardians (key {g.key}).students", f"unknown student key {link.student!r}")
            if link.student in seen:
                error(f"guardians (key {g.key}).students", f"student {link.student!r} listed twice")
            seen.add(link.student)
    for member in snapshot.staff:
        for key in member.groups:
            if key not in groups:
                error(f"staff (key {member.key}).groups", f"unknown group key {key!r}")

    if errors:
        raise invalid(errors)
