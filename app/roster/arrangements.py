"""R11: class arrangements are the school's own; made and changed here, never from ESIS."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import new_id, utcnow
from app.errors import Conflict, NotFound, Unprocessable
from app.events.service import Change, emit
from app.pagination import decode_cursor, encode_cursor, invalid_cursor
from app.roster import arrangements_repository as repo
from app.roster.arrangements_schemas import (
    ClassArrangementCreate,
    ClassArrangementPublic,
    ClassArrangementUpdate,
    Placement,
)
from app.roster.etags import check_if_match
from app.schools import repository as schools


def _row(session: Session, school_id: uuid.UUID, arrangement_id: uuid.UUID) -> dict[str, Any]:
    row = repo.arrangement_row(session=session, school_id=school_id, arrangement_id=arrangement_id)
    if row is None:
        raise NotFound(f"no class arrangement {arrangement_id} at this school")
    return row


def public(session: Session, rows: list[dict[str, Any]]) -> list[ClassArrangementPublic]:
    ids = [r["id"] for r in rows]
    placements: dict[uuid.UUID, list[Placement]] = {i: [] for i in ids}
    if ids:
        for p in repo.placements_of(session=session, arrangement_ids=ids):
            placements[p["arrangement_id"]].append(
                Placement(student_id=p["student_id"], class_name=p["class_name"])
            )
    return [
        ClassArrangementPublic(
            id=r["id"],
            name=r["name"],
            description=r["description"],
            school_year=r["school_year"],
            review_reason=r["review_reason"],
            placements=placements[r["id"]],
            created_by=r["created_by"],
            deleted_at=r["deleted_at"],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
            version=r["version"],
        )
        for r in rows
    ]


def get(
    *, session: Session, school_id: uuid.UUID, arrangement_id: uuid.UUID
) -> ClassArrangementPublic:
    return public(session, [_row(session, school_id, arrangement_id)])[0]


def list_all(
    *, session: Session, school_id: uuid.UUID, deleted: bool, limit: int, cursor: str | None
) -> tuple[list[ClassArrangementPublic], str | None]:
    after = None
    if cursor is not None:
        try:
            after = uuid.UUID(str(decode_cursor(cursor)))
        except ValueError:
            raise invalid_cursor() from None
    rows = repo.arrangement_rows(
        session=session, school_id=school_id, deleted=deleted, after=after, limit=limit + 1
    )
    next_cursor = encode_cursor(str(rows[limit - 1]["id"])) if len(rows) > limit else None
    return public(session, rows[:limit]), next_cursor


def _place(
    session: Session, school_id: uuid.UUID, arrangement_id: uuid.UUID, placements: list[Placement]
) -> None:
    students = [p.student_id for p in placements]
    if len(set(students)) != len(students):
        raise Unprocessable("placements: a student is placed twice")
    found = repo.live_students(session=session, school_id=school_id, student_ids=students)
    unknown = [str(s) for s in students if s not in found]
    if unknown:
        raise Unprocessable(
            f"placements: no student {unknown[0]} at this school",
            errors=[{"field": "placements", "message": f"unknown student {u}"} for u in unknown],
        )
    repo.replace_placements(
        session=session,
        school_id=school_id,
        arrangement_id=arrangement_id,
        rows=[
            {
                "school_id": school_id,
                "id": new_id(),
                "arrangement_id": arrangement_id,
                "student_id": p.student_id,
                "class_name": p.class_name,
            }
            for p in placements
        ],
    )


def create(
    *, session: Session, school_id: uuid.UUID, data: ClassArrangementCreate, actor: str
) -> ClassArrangementPublic:
    schools.lock(session=session, school_id=school_id)
    arrangement_id = new_id()
    now = utcnow()
    try:
        with session.begin_nested():
            repo.insert_arrangement(
                session=session,
                values={
                    "school_id": school_id,
                    "id": arrangement_id,
                    "name": data.name,
                    "description": data.description,
                    "school_year": data.school_year,
                    "created_by": actor,
                    "local_edits": {},
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                },
            )
    except IntegrityError:
        raise Conflict(f"a class arrangement {data.name!r} for {data.school_year} exists") from None
    _place(session, school_id, arrangement_id, data.placements)
    emit(
        session=session,
        school_id=school_id,
        source="api",
        actor=actor,
        changes=[
            Change(
                "class_arrangement",
                arrangement_id,
                "created",
                {
                    "name": {"before": None, "after": data.name},
                    "placements": {"before": None, "after": len(data.placements)},
                },
            )
        ],
    )
    return get(session=session, school_id=school_id, arrangement_id=arrangement_id)


def patch(
    *,
    session: Session,
    school_id: uuid.UUID,
    arrangement_id: uuid.UUID,
    data: ClassArrangementUpdate,
    if_match: str | None,
    actor: str,
) -> ClassArrangementPublic:
    schools.lock(session=session, school_id=school_id)
    row = _row(session, school_id, arrangement_id)
    check_if_match(if_match, f'"{row["version"]}"', what="arrangement", version=row["version"])
    values = data.model_dump(exclude_unset=True)
    placements = values.pop("placements", None)
    changes = {k: {"before": row[k], "after": v} for k, v in values.items() if row[k] != v}
    if "name" in values and values["name"] is None:
        raise Unprocessable("name: may not be empty")
    if placements is not None:
        _place(session, school_id, arrangement_id, data.placements or [])
        changes["placements"] = {"before": None, "after": len(placements)}
    if changes:
        repo.update_arrangement(
            session=session,
            school_id=school_id,
            arrangement_id=arrangement_id,
            values={
                **values,
                "review_reason": None,
                "updated_at": utcnow(),
                "version": row["version"] + 1,
            },
        )
        emit(
            session=session,
            school_id=school_id,
            source="api",
            actor=actor,
            changes=[Change("class_arrangement", arrangement_id, "updated", changes)],
        )
    return get(session=session, school_id=school_id, arrangement_id=arrangement_id)


def set_deleted(
    *, session: Session, school_id: uuid.UUID, arrangement_id: uuid.UUID, deleted: bool, actor: str
) -> None:
    schools.lock(session=session, school_id=school_id)
    row = _row(session, school_id, arrangement_id)
    if (row["deleted_at"] is not None) == deleted:
        if deleted:
            return
        raise Conflict("this class arrangement is not deleted")
    now = utcnow()
    repo.update_arrangement(
        session=session,
        school_id=school_id,
        arrangement_id=arrangement_id,
        values={
            "deleted_at": now if deleted else None,
            "deleted_by": actor if deleted else None,
            "updated_at": now,
            "version": row["version"] + 1,
        },
    )
    emit(
        session=session,
        school_id=school_id,
        source="api",
        actor=actor,
        changes=[Change("class_arrangement", arrangement_id, "deleted" if deleted else "restored")],
    )
