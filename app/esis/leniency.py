"""Leniency per record, strictness per snapshot.

A real ESIS export is never perfectly clean, and a school must not lose a day's additions
because one record holds an odd value. A record with a value that cannot be used (an
impossible date, a key longer than the column, a year level out of range) is *set aside*: the
merge leaves it exactly as it is (not updated, not added, not marked missing) and the run
lists it with the field and the reason. What makes the whole snapshot untrustworthy (not
XML/JSON, another school, an earlier year, truncated, duplicate keys, over the limits, a
record without a key) still refuses it, with nothing applied.

A record that depends on one set aside is set aside with it: a student in a group set aside,
a guardian of a student set aside, a staff member teaching a group set aside. Applying them
would need the missing end; leaving them as they are is what leaves the school consistent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from app.esis.schemas import EsisSnapshot

# The snapshot's lists and the entity (as the merge names it) of their records.
ENTITIES = {"groups": "group", "students": "student", "guardians": "guardian", "staff": "staff"}
MAX_KEY_SHOWN = 256  # a key longer than the column is reported cut to it


@dataclass(frozen=True)
class KeptRecord:
    entity: str  # group, student, guardian, staff
    key: str
    field: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {
            "entity": self.entity,
            "key": self.key[:MAX_KEY_SHOWN],
            "field": self.field[:200],
            "reason": self.reason[:500],
        }

    def warning(self) -> str:
        return (
            f"{self.entity} key={self.key[:64]}: {self.field}: {self.reason[:300]}; left as it is"
        )


def keep_map(kept: Iterable[KeptRecord]) -> dict[str, frozenset[str]]:
    """Per entity, the keys the merge must leave as they are (`plan_merge(keep=...)`)."""
    out: dict[str, set[str]] = {}
    for record in kept:
        out.setdefault(record.entity, set()).add(record.key)
    return {entity: frozenset(keys) for entity, keys in out.items()}


def set_aside_dependents(
    snapshot: EsisSnapshot, kept: list[KeptRecord]
) -> tuple[EsisSnapshot, list[KeptRecord]]:
    """Set aside the records that refer to one set aside; returns the snapshot without them."""
    if not kept:
        return snapshot, kept
    keys: Mapping[str, frozenset[str]] = keep_map(kept)
    groups = keys.get("group", frozenset())
    more: list[KeptRecord] = []
    students = []
    for s in snapshot.students:
        refs = [g for g in (s.group, *s.composite_groups) if g in groups]
        if s.key in keys.get("student", frozenset()) or refs:
            if refs:
                more.append(
                    KeptRecord("student", s.key, "group", f"its group {refs[0]} is set aside")
                )
            continue
        students.append(s)
    gone = keys.get("student", frozenset()) | {r.key for r in more}
    guardians = []
    for g in snapshot.guardians:
        refs = [link.student for link in g.students if link.student in gone]
        if refs:
            more.append(
                KeptRecord("guardian", g.key, "students", f"its student {refs[0]} is set aside")
            )
            continue
        guardians.append(g)
    staff = []
    for member in snapshot.staff:
        refs = [g for g in member.groups if g in groups]
        if refs:
            more.append(
                KeptRecord("staff", member.key, "groups", f"its group {refs[0]} is set aside")
            )
            continue
        staff.append(member)
    update = {
        name: value
        for name, value in (("students", students), ("guardians", guardians), ("staff", staff))
        if len(value) != len(getattr(snapshot, name))
    }
    if update:
        # Only lists the snapshot holds are replaced, so what it carries (its scope) stays.
        snapshot = snapshot.model_copy(update=update)
    return snapshot, kept + more
