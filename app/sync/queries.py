"""Reads of sync runs."""

from __future__ import annotations

import uuid

from sqlalchemy import and_, or_
from sqlalchemy.orm import Session
from sqlmodel import col, select

from app.errors import NotFound
from app.pagination import encode_cursor, time_id_cursor
from app.sync.models import SyncRun


def list_runs(
    *, session: Session, school_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[SyncRun], str | None]:
    query = (
        select(SyncRun)
        .where(SyncRun.school_id == school_id)
        .order_by(col(SyncRun.started_at).desc(), col(SyncRun.id).desc())
        .limit(limit + 1)
    )
    if cursor is not None:
        started_at, last_id = time_id_cursor(cursor)
        query = query.where(
            or_(
                col(SyncRun.started_at) < started_at,
                and_(col(SyncRun.started_at) == started_at, col(SyncRun.id) < last_id),
            )
        )
    rows = list(session.scalars(query))
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([last.started_at.isoformat(), str(last.id)])
    return rows[:limit], next_cursor


def get_run(*, session: Session, school_id: uuid.UUID, run_id: uuid.UUID) -> SyncRun:
    run = session.get(SyncRun, (school_id, run_id))
    if run is None:
        raise NotFound(f"no sync run {run_id}")
    return run
