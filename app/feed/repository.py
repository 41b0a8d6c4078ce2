"""The feed's writes and its one retention query (`retention.py` has the rules; the reads of
the feed itself are `queries.py`)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.events.models import Event


def delete_events_before(*, session: Session, cutoff: dt.datetime) -> int:
    """Deletes events older than `cutoff` (all schools) but each school's newest; how many."""
    event = Event.__table__  # type: ignore[attr-defined]
    newest = event.alias("newest")
    latest = (
        select(func.max(newest.c.seq))
        .where(newest.c.school_id == event.c.school_id)
        .scalar_subquery()
    )
    result = session.execute(
        delete(event).where(event.c.occurred_at < cutoff, event.c.seq < latest)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def oldest_seq(*, session: Session, school_id: uuid.UUID) -> int | None:
    """The `seq` of the school's oldest kept event."""
    event = Event.__table__  # type: ignore[attr-defined]
    value = session.scalar(select(func.min(event.c.seq)).where(event.c.school_id == school_id))
    return None if value is None else int(value)
