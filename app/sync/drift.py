"""R5's other half: drift an admin reviews and accepts, one by one or in bulk."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.db import new_id, utcnow
from app.errors import NotFound, Unprocessable
from app.events.service import Change, emit
from app.pagination import decode_cursor, encode_cursor, invalid_cursor
from app.provenance import Source
from app.roster.models import StudentGroup
from app.schools import repository as schools
from app.sync import drift_repository
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


def list_drift(
    *, session: Session, school_id: uuid.UUID, where: DriftFilter, limit: int, cursor: str | None
) -> tuple[list[DriftItem], str | None]:
    after = None
    if cursor is not None:
        decoded = decode_cursor(cursor)
        try:
            after = uuid.UUID(str(decoded))
        except ValueError:
            raise invalid_cursor() from None
    rows = drift_repository.drift_page(
        session=session, school_id=school_id, where=where, after=after, limit=limit + 1
    )
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
        items = drift_repository.drift_items(
            session=session, school_id=school_id, where=DriftFilter(), ids=request.ids
        )
        unknown = set(request.ids) - {item.id for item in items}
        if unknown:
            raise NotFound(
                f"no open drift item {sorted(map(str, unknown))[0]}", ids=sorted(map(str, unknown))
            )
    else:
        assert request.filter is not None
        items = drift_repository.drift_items(
            session=session, school_id=school_id, where=request.filter
        )
    now = utcnow()
    updates: dict[str, dict[uuid.UUID, dict[str, Any]]] = {}
    changes: list[Change] = []
    for item in items:
        if item.entity == "student" and item.field == "group":
            _move_student(session, school_id, item, changes)
            continue
        table_name = TABLE_OF[item.entity]
        row = drift_repository.record_row(
            session=session, table_name=table_name, school_id=school_id, record_id=item.record_id
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
        drift_repository.update_records(
            session=session, table_name=table_name, rows=list(rows.values())
        )
    ids = [item.id for item in items]
    drift_repository.close_items(session=session, school_id=school_id, ids=ids)
    emit(
        session=session, school_id=school_id, changes=changes, source=Source.ESIS.value, actor=actor
    )
    return ids


def _move_student(
    session: Session, school_id: uuid.UUID, item: DriftItem, changes: list[Change]
) -> None:
    """Accepting a main-group move: the ESIS class links are replaced by the new one."""
    group = drift_repository.live_group(
        session=session, school_id=school_id, esis_key=item.esis_value
    )
    if group is None:
        raise Unprocessable(f"group {item.esis_value!r} is not here (deleted?); cannot move")
    current = drift_repository.esis_class_links(
        session=session, school_id=school_id, student_id=item.record_id, source=Source.ESIS.value
    )
    for link in current:
        changes.append(
            Change(
                "student_group",
                link.id,
                "removed",
                {"reason": "drift accepted: student moved group"},
            )
        )
    link_id = new_id()
    drift_repository.replace_links(
        session=session,
        old=current,
        new=StudentGroup(
            school_id=school_id,
            id=link_id,
            student_id=item.record_id,
            group_id=group.id,
            source=Source.ESIS.value,
        ),
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
