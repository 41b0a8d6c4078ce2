"""Key changes: a record ESIS dropped and a new key ESIS sent, in one snapshot, that look
like the same person (a student by name and birth date, a guardian or staff member by
e-mail, case-insensitive) are paired as a proposal instead of "missing" plus "new".

Pure: which pairs, from the record rows and the snapshot's values. Only one-to-one pairs
count (two new keys with one fingerprint propose nothing), and a pair an admin rejected is
never proposed again: those two are missing + new, as without this step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from app.sync.matching import person_fingerprint
from app.sync.plan import Row

PERSONS = frozenset({"student", "guardian", "staff"})


def matched_by(entity: str) -> str:
    return "name_birth_date" if entity == "student" else "email"


def pair(
    entity: str,
    gone: Iterable[Row],
    new: Mapping[str, Row],
    rejected: frozenset[tuple[Any, str]],
) -> dict[str, Row]:
    """new key -> the dropped record it probably is. `rejected`: (record id, new key)."""
    if entity not in PERSONS or not new:
        return {}
    ours: dict[tuple[Any, ...], list[Row]] = {}
    for row in gone:
        # What ESIS said of it last: a local correction does not hide the person.
        seen = person_fingerprint(entity, row["esis_values"] or row)
        if seen is not None:
            ours.setdefault(seen, []).append(row)
    theirs: dict[tuple[Any, ...], list[str]] = {}
    for key, values in new.items():
        seen = person_fingerprint(entity, values)
        if seen is not None:
            theirs.setdefault(seen, []).append(key)
    pairs: dict[str, Row] = {}
    for seen, keys in theirs.items():
        rows = ours.get(seen, [])
        if len(keys) == 1 and len(rows) == 1 and (rows[0]["id"], keys[0]) not in rejected:
            pairs[keys[0]] = rows[0]
    return pairs
