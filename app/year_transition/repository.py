"""The year transition's queries: the arrangements it flags, the removals it writes, the
transitions it records. The school's merge state comes from `app.sync.repository`."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import delete, update
from sqlalchemy.orm import Session
from sqlmodel import col, select

from app.db import metadata
from app.sync.plan import Row
from app.year_transition.models import TransitionStatus, YearTransition

# Rows changed per statement: bounded, so a large school does not make one huge IN list.
CHUNK = 500


def live_arrangements(*, session: Session, school_id: uuid.UUID) -> list[Row]:
    """The school's class arrangements that are not deleted (R11 flags them)."""
    a = metadata.tables["class_arrangement"]
    query = a.select().where(a.c.school_id == school_id, a.c.deleted_at.is_(None))
    return [dict(r) for r in session.execute(query).mappings()]


def soft_delete(
    *,
    session: Session,
    school_id: uuid.UUID,
    table_name: str,
    ids: Sequence[uuid.UUID],
    marker: str,
    now: dt.datetime,
) -> None:
    """Soft-delete the records `ids` (marked `deleted_by=marker`, restorable) and drop their
    drift items: a removed record has nothing left to reconcile."""
    t = metadata.tables[table_name]
    drift = metadata.tables["drift_item"]
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start : start + CHUNK])
        session.execute(
            update(t)
            .where(t.c.school_id == school_id, t.c.id.in_(chunk))
            .values(deleted_at=now, deleted_by=marker, updated_at=now, version=t.c.version + 1)
        )
        session.execute(
            delete(drift).where(drift.c.school_id == school_id, drift.c.record_id.in_(chunk))
        )


def flag_for_review(
    *,
    session: Session,
    school_id: uuid.UUID,
    table_name: str,
    ids: Sequence[uuid.UUID],
    reason: str,
) -> None:
    """Set `review_reason` on the records `ids` (local groups, class arrangements)."""
    t = metadata.tables[table_name]
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start : start + CHUNK])
        session.execute(
            update(t)
            .where(t.c.school_id == school_id, t.c.id.in_(chunk))
            .values(review_reason=reason)
        )


def held_for_snapshot(
    *, session: Session, school_id: uuid.UUID, snapshot_id: uuid.UUID
) -> YearTransition | None:
    return session.scalar(
        select(YearTransition).where(
            YearTransition.school_id == school_id,
            YearTransition.snapshot_id == snapshot_id,
            YearTransition.status == TransitionStatus.HELD.value,
        )
    )


def get(
    *, session: Session, school_id: uuid.UUID, transition_id: uuid.UUID
) -> YearTransition | None:
    return session.get(YearTransition, (school_id, transition_id))


def list_all(*, session: Session, school_id: uuid.UUID) -> list[YearTransition]:
    """The school's transitions, newest first."""
    return list(
        session.scalars(
            select(YearTransition)
            .where(YearTransition.school_id == school_id)
            .order_by(col(YearTransition.created_at).desc())
        )
    )
