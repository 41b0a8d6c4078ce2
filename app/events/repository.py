"""Event numbering: each school's events are numbered 1, 2, 3, … without gaps."""

from __future__ import annotations

import uuid

from sqlalchemy import column, table, update
from sqlalchemy.orm import Session

# The counter is a column of the school's row (`schools.models.School.event_seq`), so that
# numbering takes the school's row lock until commit: one writer numbers a school's events
# at a time, in commit order. Named here as a plain table so that events sit below schools
# (the schools package emits events, so it cannot also be imported by them).
_school = table("school", column("id"), column("event_seq"))


def take_event_numbers(*, session: Session, school_id: uuid.UUID, count: int) -> int:
    """Reserve `count` event numbers; returns the last. Locks the school's row."""
    last = session.execute(
        update(_school)
        .where(_school.c.id == school_id)
        .values(event_seq=_school.c.event_seq + count)
        .returning(_school.c.event_seq)
    ).scalar_one()
    return int(last)
