from __future__ import annotations

import uuid

from sqlalchemy.orm import Session
from sqlmodel import select

from app.schools.models import School


def get_by_key(*, session: Session, key: str) -> School | None:
    return session.scalar(select(School).where(School.key == key))


def lock(*, session: Session, school_id: uuid.UUID) -> School:
    """Take the school's row lock: writers of one school run one after the other."""
    school = session.scalar(select(School).where(School.id == school_id).with_for_update())
    assert school is not None
    return school
