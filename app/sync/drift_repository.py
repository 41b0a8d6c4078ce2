"""The queries of drift review (`drift.py` has R5's rules for accepting drift)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session
from sqlmodel import col, select

from app.bulk import bulk_delete, bulk_update
from app.roster.models import Group, StudentGroup
from app.sync import repository
from app.sync.models import DriftItem
from app.sync.schemas import DriftFilter


def _query(school_id: uuid.UUID, where: DriftFilter) -> Any:
    query = select(DriftItem).where(DriftItem.school_id == school_id)
    if where.entity is not None:
        query = query.where(DriftItem.entity == where.entity)
    if where.field is not None:
        query = query.where(DriftItem.field == where.field)
    if where.record_id is not None:
        query = query.where(DriftItem.record_id == where.record_id)
    return query


def drift_page(
    *,
    session: Session,
    school_id: uuid.UUID,
    where: DriftFilter,
    after: uuid.UUID | None,
    limit: int,
) -> list[DriftItem]:
    """Up to `limit` open drift items matching `where`, by id, after `after`."""
    query = _query(school_id, where).order_by(col(DriftItem.id)).limit(limit)
    if after is not None:
        query = query.where(col(DriftItem.id) > after)
    return list(session.scalars(query))


def drift_items(
    *,
    session: Session,
    school_id: uuid.UUID,
    where: DriftFilter,
    ids: Sequence[uuid.UUID] | None = None,
) -> list[DriftItem]:
    """The open drift items matching `where` (and among `ids`, when given)."""
    query = _query(school_id, where)
    if ids is not None:
        query = query.where(col(DriftItem.id).in_(ids))
    return list(session.scalars(query))


def record_row(
    *, session: Session, table_name: str, school_id: uuid.UUID, record_id: uuid.UUID
) -> dict[str, Any] | None:
    t = repository.table(table_name)
    row = (
        session.execute(t.select().where(t.c.school_id == school_id, t.c.id == record_id))
        .mappings()
        .one_or_none()
    )
    return None if row is None else dict(row)


def live_group(*, session: Session, school_id: uuid.UUID, esis_key: Any) -> Group | None:
    """The school's live group with this ESIS key."""
    return session.scalar(
        select(Group).where(
            Group.school_id == school_id,
            Group.esis_key == esis_key,
            col(Group.deleted_at).is_(None),
        )
    )


def esis_class_links(
    *, session: Session, school_id: uuid.UUID, student_id: uuid.UUID, source: str
) -> list[StudentGroup]:
    """The student's links to groups from `source` (ESIS) that are classes (not composite)."""
    current = session.execute(
        select(StudentGroup, Group)
        .join(
            Group,
            (col(Group.school_id) == col(StudentGroup.school_id))
            & (col(Group.id) == col(StudentGroup.group_id)),
        )
        .where(
            StudentGroup.school_id == school_id,
            StudentGroup.student_id == student_id,
            Group.source == source,
            col(Group.is_composite).is_(False),
        )
    ).all()
    return [link for link, _group in current]


def replace_links(*, session: Session, old: Sequence[StudentGroup], new: StudentGroup) -> None:
    """Removes the `old` links (flushed first, so a unique link may come back) and adds `new`."""
    for link in old:
        session.delete(link)
    session.flush()
    session.add(new)


def update_records(*, session: Session, table_name: str, rows: Sequence[dict[str, Any]]) -> None:
    """Writes each row's values (keyed by `school_id` and `id`) in one statement per batch."""
    bulk_update(session, repository.table(table_name), list(rows))


def close_items(*, session: Session, school_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> None:
    """Removes the drift items (they were accepted)."""
    bulk_delete(session, repository.table("drift_item"), school_id, list(ids))
