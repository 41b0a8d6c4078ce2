from __future__ import annotations

import uuid

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlmodel import col, select

from app.schools.models import School


def get_by_key(*, session: Session, key: str) -> School | None:
    return session.scalar(select(School).where(School.key == key))


def lock(*, session: Session, school_id: uuid.UUID) -> School:
    """Take the school's row lock: writers of one school run one after the other."""
    school = session.scalar(select(School).where(School.id == school_id).with_for_update())
    assert school is not None
    return school


def take_event_numbers(*, session: Session, school_id: uuid.UUID, count: int) -> int:
    """Reserve `count` event numbers; returns the last. Locks the school's row."""
    last = session.execute(
        update(School)
        .where(col(School.id) == school_id)
        .values(event_seq=col(School.event_seq) + count)
        .returning(col(School.event_seq))
    ).scalar_one()
    return int(last)
