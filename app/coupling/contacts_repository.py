"""The queries of guardian contact files (`contacts.py` reads, matches and applies them)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session
from sqlmodel import col, select

from app.coupling.models import ContactFile
from app.roster.models import Guardian, Student, StudentGuardian


def live_students(
    *, session: Session, school_id: uuid.UUID, tombstoned: bool = True
) -> list[Student]:
    """The school's students not deleted (`tombstoned=False`: nor tombstoned)."""
    query = select(Student).where(
        col(Student.school_id) == school_id,
        col(Student.deleted_at).is_(None),
    )
    if not tombstoned:
        query = query.where(col(Student.tombstoned_at).is_(None))
    return list(session.scalars(query))


def live_guardians(*, session: Session, school_id: uuid.UUID) -> list[Guardian]:
    return list(
        session.scalars(
            select(Guardian).where(
                col(Guardian.school_id) == school_id,
                col(Guardian.deleted_at).is_(None),
            )
        )
    )


def live_guardian_links(*, session: Session, school_id: uuid.UUID) -> list[StudentGuardian]:
    return list(
        session.scalars(
            select(StudentGuardian).where(
                col(StudentGuardian.school_id) == school_id,
                col(StudentGuardian.deleted_at).is_(None),
            )
        )
    )


def contact_file(*, session: Session, school_id: uuid.UUID) -> ContactFile | None:
    """The file kept for activation, if any (one per school)."""
    return session.scalar(select(ContactFile).where(col(ContactFile.school_id) == school_id))


def drop_contact_file(*, session: Session, school_id: uuid.UUID) -> None:
    session.execute(delete(ContactFile).where(col(ContactFile.school_id) == school_id))


def keep_contact_file(
    *, session: Session, school_id: uuid.UUID, rows: list[dict[str, Any]], uploaded_by: str
) -> None:
    """Keeps `rows` for activation, in place of a file kept before."""
    drop_contact_file(session=session, school_id=school_id)
    session.add(ContactFile(school_id=school_id, rows=rows, uploaded_by=uploaded_by))
