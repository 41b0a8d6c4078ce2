"""R2: at activation, records already here from EDEXml or local creation are paired with
ESIS's, not duplicated; the pairing is reported (matched / created / left unmatched)."""

from __future__ import annotations

from typing import Any

from app.provenance import Source
from app.sync.plan import EntityState, Plan, Row
from app.sync.rules import EntitySpec, fold, jsonable

ESIS = Source.ESIS.value  # read once: an enum member's `.value` is a Python-level property


def activation_matches(
    plan: Plan, spec: EntitySpec, current: EntityState, incoming: dict[str, Row]
) -> dict[str, Row]:
    """Pair incoming keys ESIS does not know yet with records made from EDEXml or locally.

    The LAS key pairs first; then a student by name + birth date, a guardian or staff member
    by e-mail. Only one-to-one pairs count; ambiguity is reported.
    """
    assert plan.report is not None
    candidates = [
        row
        for row in current.rows.values()
        if row["source"] != ESIS
        and row["deleted_at"] is None
        and (row["esis_key"] is None or row["esis_key"] not in incoming)
    ]
    matches: dict[str, Row] = {}
    if spec.name in ("student", "guardian", "staff"):
        ours: dict[tuple[Any, ...], list[Row]] = {}
        for row in candidates:
            fingerprint = person_fingerprint(spec.name, row)
            if fingerprint is not None:
                ours.setdefault(fingerprint, []).append(row)
        theirs: dict[tuple[Any, ...], list[str]] = {}
        for key, values in incoming.items():
            if key in current.by_key:
                continue
            fingerprint = person_fingerprint(spec.name, values)
            if fingerprint is not None:
                theirs.setdefault(fingerprint, []).append(key)
        for fingerprint, keys in theirs.items():
            rows = ours.get(fingerprint, [])
            if len(keys) == 1 and len(rows) == 1:
                matches[keys[0]] = rows[0]
            elif rows:
                plan.warnings.append(
                    f"{spec.name}: {len(rows)} records here and {len(keys)} in ESIS share a "
                    f"{'name and birth date' if spec.name == 'student' else 'e-mail address'}; "
                    "not matched automatically"
                )
    by = "name_birth_date" if spec.name == "student" else "email"
    matched_ids = set()
    for key, row in matches.items():
        matched_ids.add(row["id"])
        plan.report["matched"].append(
            {
                "entity": spec.name,
                "id": str(row["id"]),
                "key": key,
                "by": by,
                "previous_source": row["source"],
            }
        )
    for key, row in current.by_key.items():
        if key in incoming and row["source"] != ESIS:
            matched_ids.add(row["id"])
            plan.report["matched"].append(
                {
                    "entity": spec.name,
                    "id": str(row["id"]),
                    "key": key,
                    "by": "key",
                    "previous_source": row["source"],
                }
            )
            matches[key] = row
    for row in candidates:
        if row["id"] not in matched_ids:
            plan.report["unmatched"].append(
                {
                    "entity": spec.name,
                    "id": str(row["id"]),
                    "source": row["source"],
                    "esis_key": row["esis_key"],
                }
            )
    return matches


def person_fingerprint(entity: str, values: Row) -> tuple[Any, ...] | None:
    if entity == "student":
        first = values.get("given_name") or (values.get("first_names") or "").split(" ")[0]
        birth = jsonable(values.get("birth_date"))
        if not values.get("last_name") or not first or not birth:
            return None
        return (fold(values["last_name"]), fold(values.get("name_prefix")), fold(first), birth)
    email = values.get("email")
    return (fold(email),) if email else None
