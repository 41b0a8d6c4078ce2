"""The queries of schools: by key, the row lock writers take, the paged list."""

from __future__ import annotations

import uuid

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


def page_by_key(*, session: Session, after: str | None, limit: int) -> list[School]:
    """Up to `limit` schools in key order, after the key `after` (a page of the list)."""
    query = select(School).order_by(col(School.key)).limit(limit)
    if after is not None:
        query = query.where(col(School.key) > after)
    return list(session.scalars(query))
