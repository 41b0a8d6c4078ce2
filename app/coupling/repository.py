"""The coupling's queries: signing secrets, the ESIS connection and its daily-pull lease,
stored EDEXml files, and the live rows the export writes. `receive.py` keeps its own."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.orm import Session
from sqlmodel import col, select

import app.roster.models  # noqa: F401  (the roster's tables in app.db.metadata, for the export)
from app.coupling.models import EsisConnection, SigningSecret
from app.db import metadata
from app.schools.models import CouplingState, School
from app.sync.models import Snapshot

Row = dict[str, Any]

# --- signing secrets ----------------------------------------------------------------------


def active_signing_secrets(*, session: Session, school_id: uuid.UUID) -> list[SigningSecret]:
    """The school's unrevoked secrets, oldest first."""
    return list(
        session.scalars(
            select(SigningSecret)
            .where(SigningSecret.school_id == school_id, col(SigningSecret.revoked_at).is_(None))
            .order_by(col(SigningSecret.created_at))
        )
    )


# --- the ESIS connection and the daily pull -----------------------------------------------


def connection_of(*, session: Session, school_id: uuid.UUID) -> EsisConnection | None:
    return session.scalar(select(EsisConnection).where(EsisConnection.school_id == school_id))


def pull_candidates(
    *, session: Session, now: dt.datetime
) -> list[tuple[uuid.UUID, dt.time, dt.date | None]]:
    """(school, daily sync time, last pulled on) of active schools with a connection that no
    worker holds a lease on at `now`."""
    rows = session.execute(
        select(col(School.id), col(School.daily_sync_time), col(EsisConnection.last_pulled_on))
        .join(EsisConnection, col(EsisConnection.school_id) == col(School.id))
        .where(
            School.coupling == CouplingState.ACTIVE.value,
            or_(
                col(EsisConnection.claimed_until).is_(None), col(EsisConnection.claimed_until) < now
            ),
        )
    )
    return [(school_id, at, last) for school_id, at, last in rows]


def claim_pull(
    *,
    session: Session,
    school_id: uuid.UUID,
    now: dt.datetime,
    until: dt.datetime,
    today: dt.date,
) -> bool:
    """Lease the school's pull of `today` until `until`: one conditional UPDATE, so of two
    workers only one wins. False when it is leased or was pulled today already."""
    won = session.execute(
        update(EsisConnection)
        .where(
            col(EsisConnection.school_id) == school_id,
            or_(
                col(EsisConnection.claimed_until).is_(None),
                col(EsisConnection.claimed_until) < now,
            ),
            or_(
                col(EsisConnection.last_pulled_on).is_(None),
                col(EsisConnection.last_pulled_on) < today,
            ),
        )
        .values(claimed_until=until)
    ).rowcount  # type: ignore[attr-defined]
    return bool(won)


def finish_pull(*, session: Session, school_id: uuid.UUID, today: dt.date) -> None:
    """The school's pull of `today` is done: the lease ends."""
    session.execute(
        update(EsisConnection)
        .where(col(EsisConnection.school_id) == school_id)
        .values(last_pulled_on=today, claimed_until=None)
    )


# --- EDEXml imports -----------------------------------------------------------------------


def snapshot_by_digest(*, session: Session, school_id: uuid.UUID, digest: str) -> Snapshot | None:
    return session.scalar(
        select(Snapshot).where(Snapshot.school_id == school_id, Snapshot.body_sha256 == digest)
    )


def soft_delete(
    *,
    session: Session,
    school_id: uuid.UUID,
    table_name: str,
    record_id: uuid.UUID,
    deleted_by: str,
    now: dt.datetime,
) -> None:
    t = metadata.tables[table_name]
    session.execute(
        update(t)
        .where(t.c.school_id == school_id, t.c.id == record_id)
        .values(deleted_at=now, deleted_by=deleted_by, updated_at=now, version=t.c.version + 1)
    )


# --- the export ---------------------------------------------------------------------------


def school_row(*, session: Session, school_id: uuid.UUID) -> Row | None:
    schools = metadata.tables["school"]
    found = session.execute(schools.select().where(schools.c.id == school_id)).mappings().first()
    return dict(found) if found is not None else None


def live_rows(*, session: Session, table_name: str, school_id: uuid.UUID) -> list[Row]:
    """The table's rows of the school that are neither deleted nor purged."""
    t = metadata.tables[table_name]
    query = t.select().where(t.c.school_id == school_id, t.c.deleted_at.is_(None))
    if "tombstoned_at" in t.c:
        query = query.where(t.c.tombstoned_at.is_(None))
    return [dict(row) for row in session.execute(query).mappings()]
