"""Queries of webhook endpoints and deliveries."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import delete, or_, update
from sqlalchemy.orm import Session
from sqlmodel import col, select

from app.errors import NotFound, Unprocessable
from app.events.models import Event
from app.pagination import decode_cursor, encode_cursor
from app.schools.models import School
from app.webhooks.models import WebhookDelivery, WebhookEndpoint


def get(*, session: Session, school_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    row = session.get(WebhookEndpoint, (school_id, endpoint_id))
    if row is None:
        raise NotFound(f"no webhook {endpoint_id}")
    return row


def list_endpoints(*, session: Session, school_id: uuid.UUID) -> list[WebhookEndpoint]:
    query = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.school_id == school_id)
        .order_by(col(WebhookEndpoint.created_at), col(WebhookEndpoint.id))
    )
    return list(session.scalars(query))


def list_deliveries(
    *,
    session: Session,
    school_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    limit: int,
    cursor: str | None,
) -> tuple[list[WebhookDelivery], str | None]:
    """Newest first: the log an admin reads when a receiver complains."""
    query = select(WebhookDelivery).where(
        WebhookDelivery.school_id == school_id, WebhookDelivery.endpoint_id == endpoint_id
    )
    if cursor is not None:
        value = decode_cursor(cursor)
        try:
            at, last_id = dt.datetime.fromisoformat(value[0]), uuid.UUID(value[1])
        except (TypeError, ValueError, IndexError, KeyError):
            raise Unprocessable("cursor: not a cursor this service issued") from None
        query = query.where(
            or_(
                col(WebhookDelivery.attempted_at) < at,
                (col(WebhookDelivery.attempted_at) == at) & (col(WebhookDelivery.id) < last_id),
            )
        )
    query = query.order_by(
        col(WebhookDelivery.attempted_at).desc(), col(WebhookDelivery.id).desc()
    ).limit(limit + 1)
    rows = list(session.scalars(query))
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([last.attempted_at.isoformat(), str(last.id)])
    return rows[:limit], next_cursor


def due_endpoints(*, session: Session, now: dt.datetime) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Enabled endpoints not waiting for a retry nor leased by another worker."""
    query = select(col(WebhookEndpoint.school_id), col(WebhookEndpoint.id)).where(
        col(WebhookEndpoint.disabled_at).is_(None),
        or_(
            col(WebhookEndpoint.next_attempt_at).is_(None),
            col(WebhookEndpoint.next_attempt_at) <= now,
        ),
        or_(
            col(WebhookEndpoint.claimed_until).is_(None),
            col(WebhookEndpoint.claimed_until) < now,
        ),
    )
    return [(s, e) for s, e in session.execute(query)]


def claim(
    *,
    session: Session,
    school_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    now: dt.datetime,
    until: dt.datetime,
) -> bool:
    """One conditional UPDATE: only one worker wins the lease."""
    won = session.execute(
        update(WebhookEndpoint)
        .where(
            col(WebhookEndpoint.school_id) == school_id,
            col(WebhookEndpoint.id) == endpoint_id,
            col(WebhookEndpoint.disabled_at).is_(None),
            or_(
                col(WebhookEndpoint.claimed_until).is_(None),
                col(WebhookEndpoint.claimed_until) < now,
            ),
        )
        .values(claimed_until=until)
    ).rowcount  # type: ignore[attr-defined]
    return bool(won)


def pending_events(
    *, session: Session, school_id: uuid.UUID, after: int, limit: int
) -> list[Event]:
    query = (
        select(Event)
        .where(col(Event.school_id) == school_id, col(Event.seq) > after)
        .order_by(col(Event.seq))
        .limit(limit)
    )
    return list(session.scalars(query))


def endpoint_or_none(
    *, session: Session, school_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookEndpoint | None:
    return session.get(WebhookEndpoint, (school_id, endpoint_id))


def endpoint_one(
    *, session: Session, school_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    return session.get_one(WebhookEndpoint, (school_id, endpoint_id))


def school_key(*, session: Session, school_id: uuid.UUID) -> str:
    return session.get_one(School, school_id).key


def event_seq(*, session: Session, school_id: uuid.UUID) -> int | None:
    """The school's event counter: the `seq` of its latest event."""
    return session.scalar(select(School.event_seq).where(School.id == school_id))


def release_claim(*, session: Session, school_id: uuid.UUID, endpoint_id: uuid.UUID) -> None:
    session.execute(
        update(WebhookEndpoint)
        .where(
            col(WebhookEndpoint.school_id) == school_id,
            col(WebhookEndpoint.id) == endpoint_id,
        )
        .values(claimed_until=None)
    )


def delete_deliveries_before(*, session: Session, cutoff: dt.datetime) -> int:
    """Deletes the delivery log's entries attempted before `cutoff`; how many."""
    table = WebhookDelivery.__table__  # type: ignore[attr-defined]
    result = session.execute(delete(table).where(table.c.attempted_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def delete_endpoint(*, session: Session, endpoint: WebhookEndpoint) -> None:
    session.delete(endpoint)
