"""The queries of class arrangements and their placements (R11; `arrangements.py` has the rules)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from app.db import metadata

Row = dict[str, Any]

ARR = metadata.tables["class_arrangement"]
PLACE = metadata.tables["class_placement"]
STUDENT = metadata.tables["student"]


def arrangement_row(
    *, session: Session, school_id: uuid.UUID, arrangement_id: uuid.UUID
) -> Row | None:
    row = (
        session.execute(select(ARR).where(ARR.c.school_id == school_id, ARR.c.id == arrangement_id))
        .mappings()
        .one_or_none()
    )
    return None if row is None else dict(row)


def placements_of(*, session: Session, arrangement_ids: Sequence[uuid.UUID]) -> list[Row]:
    """The placements of the given arrangements, by class name and student."""
    return [
        dict(p)
        for p in session.execute(
            select(PLACE)
            .where(PLACE.c.arrangement_id.in_(arrangement_ids))
            .order_by(PLACE.c.class_name, PLACE.c.student_id)
        ).mappings()
    ]


def arrangement_rows(
    *,
    session: Session,
    school_id: uuid.UUID,
    deleted: bool,
    after: uuid.UUID | None,
    limit: int,
) -> list[Row]:
    """Up to `limit` arrangements (deleted ones or live ones) by id, after `after`."""
    query = select(ARR).where(
        ARR.c.school_id == school_id,
        ARR.c.deleted_at.is_not(None) if deleted else ARR.c.deleted_at.is_(None),
    )
    if after is not None:
        query = query.where(ARR.c.id > after)
    return [dict(r) for r in session.execute(query.order_by(ARR.c.id).limit(limit)).mappings()]


def live_students(
    *, session: Session, school_id: uuid.UUID, student_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of the given students are at this school and not deleted."""
    return set(
        session.scalars(
            select(STUDENT.c.id).where(
                STUDENT.c.school_id == school_id,
                STUDENT.c.id.in_(student_ids),
                STUDENT.c.deleted_at.is_(None),
            )
        )
    )


def replace_placements(
    *, session: Session, school_id: uuid.UUID, arrangement_id: uuid.UUID, rows: Sequence[Row]
) -> None:
    session.execute(
        delete(PLACE).where(
            PLACE.c.school_id == school_id, PLACE.c.arrangement_id == arrangement_id
        )
    )
    if rows:
        session.execute(insert(PLACE), list(rows))


def insert_arrangement(*, session: Session, values: Row) -> None:
    session.execute(insert(ARR).values(**values))


def update_arrangement(
    *, session: Session, school_id: uuid.UUID, arrangement_id: uuid.UUID, values: Row
) -> None:
    session.execute(
        update(ARR).where(ARR.c.school_id == school_id, ARR.c.id == arrangement_id).values(**values)
    )


def arrangements_to_review(*, session: Session, school_id: uuid.UUID) -> list[Row]:
    """Live arrangements with a review reason (R10/R11), by name."""
    return [
        dict(r)
        for r in session.execute(
            select(ARR)
            .where(
                ARR.c.school_id == school_id,
                ARR.c.deleted_at.is_(None),
                ARR.c.review_reason.is_not(None),
            )
            .order_by(ARR.c.name, ARR.c.id)
        ).mappings()
    ]
