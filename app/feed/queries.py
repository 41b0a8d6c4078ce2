"""Reads of the change feed: per school, by `seq`, never by offset."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session
from sqlmodel import col, select

from app.events.models import Event
from app.feed.retention import check_reachable
from app.pagination import decode_cursor, encode_cursor, invalid_cursor


@dataclass(frozen=True)
class EventFilter:
    entity: str | None = None
    entity_id: uuid.UUID | None = None
    kind: str | None = None


def _after_seq(cursor: str | None) -> int:
    if cursor is None:
        return 0
    seq = decode_cursor(cursor, parameter="after")
    if type(seq) is not int or seq < 0:
        raise invalid_cursor("after")
    return seq


def list_events(
    *,
    session: Session,
    school_id: uuid.UUID,
    where: EventFilter,
    limit: int,
    after: str | None,
) -> tuple[list[Event], str]:
    """Events after the cursor, oldest first, and the cursor to resume from.

    Numbers are taken under the school's row lock and become visible in their order, so
    `seq > last seen` neither skips nor repeats an event, whatever is written meanwhile.
    """
    last_seen = _after_seq(after)
    if after is not None:
        check_reachable(session=session, school_id=school_id, after=last_seen)
    query = (
        select(Event)
        .where(col(Event.school_id) == school_id, col(Event.seq) > last_seen)
        .order_by(col(Event.seq))
        .limit(limit)
    )
    if where.entity is not None:
        query = query.where(col(Event.entity) == where.entity)
    if where.entity_id is not None:
        query = query.where(col(Event.entity_id) == where.entity_id)
    if where.kind is not None:
        query = query.where(col(Event.kind) == where.kind)
    rows = list(session.scalars(query))
    return rows, encode_cursor(rows[-1].seq if rows else last_seen)
