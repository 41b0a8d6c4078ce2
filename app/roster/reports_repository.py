"""The queries of the roster's reports (`reports.py`): what ESIS no longer lists (R6), and
the school's own groups to review (R10)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import metadata
from app.provenance import Source

Row = dict[str, Any]


def _missing(table_name: str, school_id: uuid.UUID) -> tuple[Any, ...]:
    t = metadata.tables[table_name]
    return (
        t.c.school_id == school_id,
        t.c.missing_in_esis_since.is_not(None),
        t.c.deleted_at.is_(None),
    )


def missing_count(*, session: Session, school_id: uuid.UUID, table_name: str) -> int:
    """How many live rows of `table_name` (a record or a link) ESIS no longer lists."""
    t = metadata.tables[table_name]
    where = _missing(table_name, school_id)
    return session.scalar(select(func.count()).select_from(t).where(*where)) or 0


def missing_rows(
    *, session: Session, school_id: uuid.UUID, table_name: str, limit: int
) -> list[Row]:
    """The first `limit` of them, the longest missing first."""
    t = metadata.tables[table_name]
    where = _missing(table_name, school_id)
    return [
        dict(r)
        for r in session.execute(
            select(t).where(*where).order_by(t.c.missing_in_esis_since, t.c.id).limit(limit)
        ).mappings()
    ]


def local_groups_to_review(*, session: Session, school_id: uuid.UUID) -> list[Row]:
    """The school's own live groups with a review reason, by name."""
    g = metadata.tables["school_group"]
    return [
        dict(r)
        for r in session.execute(
            select(g)
            .where(
                g.c.school_id == school_id,
                g.c.source == Source.LOCAL.value,
                g.c.deleted_at.is_(None),
                g.c.review_reason.is_not(None),
            )
            .order_by(g.c.name, g.c.id)
        ).mappings()
    ]
