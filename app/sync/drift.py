"""R5's other half: drift an admin reviews and accepts, one by one or in bulk."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.orm import Session
from sqlmodel import col, select

from app.bulk import bulk_delete, bulk_update
from app.db import new_id, utcnow
from app.errors import NotFound, Unprocessable
from app.events.service import Change, emit
from app.pagination import decode_cursor, encode_cursor, invalid_cursor
from app.provenance import Source
from app.roster.models import Group, StudentGroup
from app.schools import repository as schools
from app.sync import repository
from app.sync.models import DriftItem
from app.sync.schemas import DriftAccept, DriftFilter
from app.sync.service import DATE_FIELDS

TABLE_OF = {
    "group": "school_group",
    "student": "student",
    "guardian": "guardian",
    "staff": "staff",
    "student_guardian": "student_guardian",
}
VERSIONED = {"school_group", "student", "guardian", "staff"}


def _query(school_id: uuid.UUID, where: DriftFilter) -> Any:
    query = select(DriftItem).where(DriftItem.school_id == school_id)
    if where.entity is not None:
        query = query.where(DriftItem.entity == where.entity)
    if where.field is not None:
        query = query.where(DriftItem.field == where.field)
    if where.record_id is not None:
        query = query.where(DriftItem.record_id == where.record_id)
    return query


def list_drift(
    *, session: Session, school_id: uuid.UUID, where: DriftFilter, limit: int, cursor: str | None
) -> tuple[list[DriftItem], str | None]:
    query = _query(school_id, where).order_by(col(DriftItem.id)).limit(limit + 1)
    if cursor is not None:
        after = decode_cursor(cursor)
        try:
            query = query.where(col(DriftItem.id) > uuid.UUID(str(after)))
        except ValueError:
            raise invalid_cursor() from None
    rows = list(session.scalars(query))
    next_cursor = encode_cursor(str(rows[limit - 1].id)) if len(rows) > limit else None
    return rows[:limit], next_cursor


def accept(
    *, session: Session, school_id: uuid.UUID, request: DriftAccept, actor: str
) -> list[uuid.UUID]:
    """Apply the ESIS values of the chosen drift items, recorded as coming from ESIS."""
    if (request.ids is None) == (request.filter is None):
        raise Unprocessable(
            "give either `ids` or `filter`",
            errors=[{"field": "body", "message": "exactly one of ids, filter"}],
        )
    schools.lock(session=session, school_id=school_id)
    if request.ids is not None:
        items = list(
            session.scalars(
                _query(school_id, DriftFilter()).where(col(DriftItem.id).in_(request.ids))
            )
        )
        unknown = set(request.ids) - {item.id for item in items}
        if unknown:
            raise NotFound(
                f"no open drift item {sorted(map(str, unknown))[0]}", ids=sorted(map(str, unknown))
            )
    else:
        assert request.filter is not None
        items = list(session.scalars(_query(school_id, request.filter)))
    now = utcnow()
    updates: dict[str, dict[uuid.UUID, dict[str, Any]]] = {}
    changes: list[Change] = []
    for item in items:
        if item.entity == "student" and item.field == "group":
            _move_student(session, school_id, item, changes)
            continue
        table_name = TABLE_OF[item.entity]
        t = repository.table(table_name)
        row = (
            session.execute(t.select().where(t.c.school_id == school_id, t.c.id == item.record_id))
            .mappings()
            .one_or_none()
        )
        if row is None:
            continue
        pending = updates.setdefault(table_name, {}).setdefault(
            item.record_id,
            {
                "school_id": school_id,
                "id": item.record_id,
                "updated_at": now,
                "local_edits": dict(row["local_edits"] or {}),
            },
        )
        value = item.esis_value
        pending[item.field] = (
            dt.date.fromisoformat(value)
            if item.field in DATE_FIELDS and isinstance(value, str)
            else value
        )
        pending["local_edits"].pop(item.field, None)
        if table_name in VERSIONED:
            pending["version"] = row["version"] + 1
        changes.append(
            Change(
                item.entity,
                item.record_id,
                "drift-accepted",
                {item.field: {"before": item.our_value, "after": item.esis_value}},
            )
        )
    for table_name, rows in updates.items():
        bulk_update(session, repository.table(table_name), list(rows.values()))
    ids = [item.id for item in items]
    bulk_delete(session, repository.table("drift_item"), school_id, ids)
    emit(
        session=session, school_id=school_id, changes=changes, source=Source.ESIS.value, actor=actor
    )
    return ids


def _move_student(
    session: Session, school_id: uuid.UUID, item: DriftItem, changes: list[Change]
) -> None:
    """Accepting a main-group move: the ESIS class links are replaced by the new one."""
    group = session.scalar(
        select(Group).where(
            Group.school_id == school_id,
            Group.esis_key == item.esis_value,
            col(Group.deleted_at).is_(None),
        )
    )
    if group is None:
        raise Unprocessable(f"group {item.esis_value!r} is not here (deleted?); cannot move")
    current = session.execute(
        select(StudentGroup, Group)
        .join(
            Group,
            (col(Group.school_id) == col(StudentGroup.school_id))
            & (col(Group.id) == col(StudentGroup.group_id)),
        )
        .where(
            StudentGroup.school_id == school_id,
            StudentGroup.student_id == item.record_id,
            Group.source == Source.ESIS.value,
            col(Group.is_composite).is_(False),
        )
    ).all()
    for link, _group in current:
        session.delete(link)
        changes.append(
            Change(
                "student_group",
                link.id,
                "removed",
                {"reason": "drift accepted: student moved group"},
            )
        )
    session.flush()
    link_id = new_id()
    session.add(
        StudentGroup(
            school_id=school_id,
            id=link_id,
            student_id=item.record_id,
            group_id=group.id,
            source=Source.ESIS.value,
        )
    )
    changes.append(
        Change(
            "student",
            item.record_id,
            "drift-accepted",
            {"group": {"before": item.our_value, "after": item.esis_value}},
        )
    )
    changes.append(
        Change(
            "student_group",
            link_id,
            "created",
            {"group_id": {"before": None, "after": str(group.id)}},
        )
    )
