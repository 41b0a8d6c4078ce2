"""Build ESIS snapshots for tests: a small realistic school, easy to vary."""

from __future__ import annotations

import copy
from typing import Any

Snapshot = dict[str, Any]


def school_snapshot(
    *, brin: str = "12AB", branch: str = "00", year: str = "2026-2027", students: int = 4
) -> Snapshot:
    """Two classes and a reading group; each student has one or two guardians."""
    snap: Snapshot = {
        "school": {"brin": brin, "branch": branch, "school_year": year},
        "groups": [
            {"key": "G5A", "name": "Groep 5a", "year_level": 5},
            {"key": "G6A", "name": "Groep 6a", "year_level": 6},
            {"key": "LEES1", "name": "Leesgroep 1", "is_composite": True},
        ],
        "students": [],
        "guardians": [],
        "staff": [
            {
                "key": "LK01",
                "last_name": "Bakker",
                "initials": "P",
                "email": "p.bakker@school.example.nl",
                "roles": ["leerkracht"],
                "groups": ["G5A"],
            },
            {
                "key": "LK02",
                "last_name": "Visser",
                "initials": "M",
                "email": "m.visser@school.example.nl",
                "groups": ["G6A", "LEES1"],
            },
        ],
    }
    for i in range(1, students + 1):
        key = f"S{i:04d}"
        snap["students"].append(
            {
                "key": key,
                "last_name": f"Leerling{i}",
                "given_name": f"Kind{i}",
                "birth_date": f"2017-0{1 + i % 9}-1{i % 10}",
                "gender": "female" if i % 2 else "male",
                "year_level": 5 if i % 2 else 6,
                "group": "G5A" if i % 2 else "G6A",
                "composite_groups": ["LEES1"] if i % 3 == 0 else [],
            }
        )
        snap["guardians"].append(
            {
                "key": f"V{i:04d}",
                "last_name": f"Ouder{i}",
                "initials": "A",
                "email": f"ouder{i}@example.nl",
                "phone": "+31612345678",
                "students": [{"student": key, "relation": "mother"}],
            }
        )
    return snap


def changed(snap: Snapshot) -> Snapshot:
    return copy.deepcopy(snap)


def find(snap: Snapshot, kind: str, key: str) -> dict[str, Any]:
    return next(item for item in snap[kind] if item["key"] == key)


def with_new_key(snap: Snapshot, old: str, new: str) -> Snapshot:
    """A copy in which ESIS gives student `old` the key `new` (its guardians' links follow)."""
    nxt = changed(snap)
    find(nxt, "students", old)["key"] = new
    for guardian in nxt["guardians"]:
        for link in guardian["students"]:
            if link["student"] == old:
                link["student"] = new
    return nxt
