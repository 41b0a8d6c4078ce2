"""Rows to API shapes: every read carries provenance and the record's relations."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.roster import repository as repo
from app.roster.repository import GROUPS, GUARDIANS, STAFF, STUDENTS, Kind, Row
from app.roster.schemas import (
    DriftSummary,
    EditMark,
    GroupPublic,
    GroupRef,
    GuardianPublic,
    GuardianRef,
    Provenance,
    StaffPublic,
    StudentOfGuardian,
    StudentPublic,
    StudentRef,
)


def display_name(row: Row) -> str:
    first = row.get("given_name") or row.get("initials")
    parts = (first, row.get("name_prefix"), row.get("last_name"))
    return " ".join(p for p in parts if p) or "(purged)"


def provenance(row: Row, drift: Sequence[Row]) -> Provenance:
    return Provenance(
        source=row["source"],
        esis_key=row["esis_key"],
        local_edits={k: EditMark(**v) for k, v in (row["local_edits"] or {}).items()},
        drift=[
            DriftSummary(
                id=d["id"],
                field=d["field"],
                our_value=d["our_value"],
                esis_value=d["esis_value"],
                first_seen_at=d["first_seen_at"],
            )
            for d in drift
        ],
        missing_in_esis_since=row["missing_in_esis_since"],
        deleted_at=row["deleted_at"],
        deleted_by=row["deleted_by"],
        tombstoned_at=row["tombstoned_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
    )


def _link(row: Row) -> dict[str, Any]:
    return {"source": row["link_source"], "missing_in_esis_since": row["link_missing"]}


def _group_ref(row: Row) -> GroupRef:
    return GroupRef(
        id=row["id"],
        name=row["name"],
        esis_key=row["esis_key"],
        is_composite=row["is_composite"],
        **_link(row),
    )


def _person_ref(row: Row) -> StudentRef:
    return StudentRef(id=row["id"], name=display_name(row), esis_key=row["esis_key"], **_link(row))


def build(session: Session, kind: Kind, school_id: uuid.UUID, rows: list[Row]) -> list[BaseModel]:
    """The public shape of `rows`: a fixed number of queries, whatever the page size."""
    ids = [r["id"] for r in rows]
    drift = repo.drift_of(session=session, school_id=school_id, entity=kind.name, ids=ids)

    def rel(link: str, own: str, other: str, other_table: str) -> dict[uuid.UUID, list[Row]]:
        return repo.linked(
            session=session,
            school_id=school_id,
            link=link,
            own=own,
            other=other,
            other_table=other_table,
            ids=ids,
        )

    def fields(row: Row, names: Sequence[str]) -> dict[str, Any]:
        return {name: row[name] for name in names}

    out: list[BaseModel] = []
    if kind is STUDENTS:
        groups = rel("student_group", "student_id", "group_id", "school_group")
        guardians = rel("student_guardian", "student_id", "guardian_id", "guardian")
        for row in rows:
            out.append(
                StudentPublic(
                    id=row["id"],
                    **fields(row, STUDENTS.fields),
                    groups=[_group_ref(g) for g in groups[row["id"]]],
                    guardians=[
                        GuardianRef(**_person_ref(g).model_dump(), relation=g["relation"])
                        for g in guardians[row["id"]]
                    ],
                    provenance=provenance(row, drift[row["id"]]),
                )
            )
    elif kind is GUARDIANS:
        students = rel("student_guardian", "guardian_id", "student_id", "student")
        for row in rows:
            out.append(
                GuardianPublic(
                    id=row["id"],
                    **fields(row, GUARDIANS.fields),
                    students=[
                        StudentOfGuardian(**_person_ref(s).model_dump(), relation=s["relation"])
                        for s in students[row["id"]]
                    ],
                    provenance=provenance(row, drift[row["id"]]),
                )
            )
    elif kind is STAFF:
        groups = rel("staff_group", "staff_id", "group_id", "school_group")
        for row in rows:
            out.append(
                StaffPublic(
                    id=row["id"],
                    **fields(row, STAFF.fields),
                    active=row["active"],
                    groups=[_group_ref(g) for g in groups[row["id"]]],
                    provenance=provenance(row, drift[row["id"]]),
                )
            )
    else:
        members = rel("student_group", "group_id", "student_id", "student")
        staff = rel("staff_group", "group_id", "staff_id", "staff")
        for row in rows:
            out.append(
                GroupPublic(
                    id=row["id"],
                    **fields(row, GROUPS.fields),
                    is_composite=row["is_composite"],
                    school_year=row["school_year"],
                    review_reason=row["review_reason"],
                    members=[_person_ref(s) for s in members[row["id"]]],
                    staff=[_person_ref(s) for s in staff[row["id"]]],
                    provenance=provenance(row, drift[row["id"]]),
                )
            )
    return out
