"""The queries of a connection's health (`health.py` decides quarantine and warnings)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

from sqlalchemy import CursorResult, Table, func, update
from sqlalchemy.orm import Session
from sqlmodel import col, select

from app.coupling.health_models import ConnectionHealth
from app.coupling.models import EsisConnection
from app.sync.models import RunStatus, SyncRun

# The statuses of a pull that reached ESIS and got an answer.
SUCCESS = (
    RunStatus.APPLIED.value,
    RunStatus.STORED.value,
    RunStatus.HELD.value,
    RunStatus.NO_CHANGES.value,  # geenwijzigingen: ESIS answered, nothing new
    RunStatus.REJECTED.value,  # held by the change guard, then rejected: ESIS did answer
)


def failures_since_success(
    session: Session, school_ids: list[uuid.UUID], exclude_run: uuid.UUID | None = None
) -> dict[uuid.UUID, tuple[int, dt.datetime, dt.datetime | None]]:
    """Per school: failed pulls since its last success, the latest failure, that success."""
    ok = (
        select(col(SyncRun.school_id), func.max(col(SyncRun.started_at)).label("at"))
        .where(
            col(SyncRun.origin) == "pull",
            col(SyncRun.status).in_(SUCCESS),
            col(SyncRun.school_id).in_(school_ids),
            *([col(SyncRun.id) != exclude_run] if exclude_run is not None else []),
        )
        .group_by(col(SyncRun.school_id))
        .subquery()
    )
    fetched = col(ConnectionHealth.last_success_at)
    query = (
        select(
            col(SyncRun.school_id),
            func.count(),
            func.max(col(SyncRun.started_at)),
            func.max(ok.c.at),
        )
        .outerjoin(ok, ok.c.school_id == col(SyncRun.school_id))
        .outerjoin(ConnectionHealth, col(ConnectionHealth.school_id) == col(SyncRun.school_id))
        .where(
            col(SyncRun.origin) == "pull",
            col(SyncRun.status) == RunStatus.FAILED.value,
            col(SyncRun.school_id).in_(school_ids),
            (ok.c.at.is_(None)) | (col(SyncRun.started_at) > ok.c.at),
            fetched.is_(None) | (col(SyncRun.started_at) > fetched),
        )
        .group_by(col(SyncRun.school_id))
    )
    return {s: (int(n), last, success) for s, n, last, success in session.execute(query)}


def last_pull_success(*, session: Session, school_id: uuid.UUID) -> dt.datetime | None:
    return session.scalar(
        select(func.max(col(SyncRun.started_at))).where(
            col(SyncRun.school_id) == school_id,
            col(SyncRun.origin) == "pull",
            col(SyncRun.status).in_(SUCCESS),
        )
    )


def last_pull_error(*, session: Session, school_id: uuid.UUID) -> dict[str, Any] | None:
    """The error of the school's latest failed pull."""
    return session.scalar(
        select(SyncRun.error)
        .where(
            col(SyncRun.school_id) == school_id,
            col(SyncRun.origin) == "pull",
            col(SyncRun.status) == RunStatus.FAILED.value,
        )
        .order_by(col(SyncRun.started_at).desc())
        .limit(1)
    )


def health_row(*, session: Session, school_id: uuid.UUID) -> ConnectionHealth | None:
    return session.get(ConnectionHealth, school_id)


def health_row_to_write(*, session: Session, school_id: uuid.UUID) -> ConnectionHealth:
    """The school's health row, added when it has none yet."""
    seen = session.get(ConnectionHealth, school_id)
    if seen is None:
        seen = ConnectionHealth(school_id=school_id)
        session.add(seen)
    return seen


def note_success(*, session: Session, school_id: uuid.UUID, at: dt.datetime) -> None:
    """The school's last successful fetch: one UPDATE of its row, which is added when it has
    none yet (a pull's note took a SELECT and an UPDATE)."""
    table = cast(Table, ConnectionHealth.__table__)  # type: ignore[attr-defined]
    result = session.execute(
        update(table).where(table.c.school_id == school_id).values(last_success_at=at)
    )
    if cast(CursorResult[Any], result).rowcount == 0:
        session.add(ConnectionHealth(school_id=school_id, last_success_at=at))


def connection_id(*, session: Session, school_id: uuid.UUID) -> uuid.UUID | None:
    return session.scalar(select(EsisConnection.id).where(EsisConnection.school_id == school_id))


def certificates_ending_before(*, session: Session, horizon: dt.datetime) -> list[Any]:
    """(school_id, connection id, cert_not_after) of certificates that end by `horizon`."""
    return list(
        session.execute(
            select(
                EsisConnection.school_id, EsisConnection.id, EsisConnection.cert_not_after
            ).where(col(EsisConnection.cert_not_after) <= horizon)
        )
    )
