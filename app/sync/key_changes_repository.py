"""The queries of key-change proposals (`key_changes.py` has the rules for deciding them)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, or_, update
from sqlalchemy.orm import Session
from sqlmodel import col, select

from app.sync.models import KeyChange, KeyChangeStatus
from app.sync.repository import table


def add_proposals(*, session: Session, rows: Sequence[KeyChange]) -> None:
    session.add_all(rows)
    session.flush()


def proposals_page(
    *,
    session: Session,
    school_id: uuid.UUID,
    status: KeyChangeStatus | None,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[KeyChange]:
    """Up to `limit` proposals (of one status, when given) by time proposed, after `after`."""
    query = select(KeyChange).where(KeyChange.school_id == school_id)
    if status is not None:
        query = query.where(KeyChange.status == status.value)
    if after is not None:
        at, last_id = after
        query = query.where(
            or_(
                col(KeyChange.proposed_at) > at,
                and_(col(KeyChange.proposed_at) == at, col(KeyChange.id) > last_id),
            )
        )
    return list(
        session.scalars(query.order_by(col(KeyChange.proposed_at), col(KeyChange.id)).limit(limit))
    )


def proposal(
    *, session: Session, school_id: uuid.UUID, key_change_id: uuid.UUID
) -> KeyChange | None:
    return session.get(KeyChange, (school_id, key_change_id))


def record_key(
    *, session: Session, table_name: str, school_id: uuid.UUID, record_id: uuid.UUID
) -> Any:
    """The record's `esis_key`, `deleted_at` and `version`, or None."""
    t = table(table_name)
    return session.execute(
        select(t.c.esis_key, t.c.deleted_at, t.c.version).where(
            t.c.school_id == school_id, t.c.id == record_id
        )
    ).first()


def holder_of_key(
    *, session: Session, table_name: str, school_id: uuid.UUID, esis_key: str
) -> uuid.UUID | None:
    """The id of the record with this ESIS key, if any."""
    t = table(table_name)
    return session.scalar(
        select(t.c.id).where(t.c.school_id == school_id, t.c.esis_key == esis_key)
    )


def set_key(
    *,
    session: Session,
    table_name: str,
    school_id: uuid.UUID,
    record_id: uuid.UUID,
    esis_key: str,
    now: dt.datetime,
    version: int,
) -> None:
    t = table(table_name)
    session.execute(
        update(t)
        .where(t.c.school_id == school_id, t.c.id == record_id)
        .values(esis_key=esis_key, updated_at=now, version=version)
    )


def rivals(*, session: Session, school_id: uuid.UUID, accepted: KeyChange) -> list[KeyChange]:
    """Other open proposals for the accepted one's record or for its new key."""
    return list(
        session.scalars(
            select(KeyChange).where(
                KeyChange.school_id == school_id,
                KeyChange.entity == accepted.entity,
                KeyChange.status == KeyChangeStatus.PROPOSED.value,
                col(KeyChange.id) != accepted.id,
                or_(
                    col(KeyChange.record_id) == accepted.record_id,
                    col(KeyChange.new_key) == accepted.new_key,
                ),
            )
        )
    )
