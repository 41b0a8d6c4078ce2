"""The queries of the retention purge (`purge.py` decides what is due and in what order)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.orm import Session

from app.db import metadata


def due_for_tombstone(*, session: Session, table_name: str, cutoff: dt.datetime) -> list[Any]:
    """(school_id, id) of the rows deleted before `cutoff` and not yet tombstoned."""
    t = metadata.tables[table_name]
    return list(
        session.execute(
            select(t.c.school_id, t.c.id).where(
                t.c.deleted_at < cutoff, t.c.tombstoned_at.is_(None)
            )
        )
    )


def tombstone(
    *,
    session: Session,
    table_name: str,
    ids: Sequence[uuid.UUID],
    fields: Sequence[str],
    now: dt.datetime,
) -> None:
    """Empties the personal `fields` of the rows; the row stays with its key."""
    t = metadata.tables[table_name]
    session.execute(
        update(t)
        .where(t.c.id.in_(ids))
        .values(
            **dict.fromkeys(fields),
            esis_values=None,
            esis_digest=None,
            local_edits={},
            tombstoned_at=now,
        )
    )


def delete_where_in(*, session: Session, table_name: str, column: str, ids: Sequence[Any]) -> None:
    t = metadata.tables[table_name]
    session.execute(delete(t).where(t.c[column].in_(ids)))


def redact_events(
    *, session: Session, entity: str, ids: Sequence[uuid.UUID], changes: dict[str, str]
) -> None:
    event = metadata.tables["event"]
    session.execute(
        update(event)
        .where(event.c.entity == entity, event.c.entity_id.in_(ids))
        .values(changes=changes)
    )


def arrangements_deleted_before(*, session: Session, cutoff: dt.datetime) -> list[uuid.UUID]:
    arrangements = metadata.tables["class_arrangement"]
    return list(
        session.scalars(select(arrangements.c.id).where(arrangements.c.deleted_at < cutoff))
    )


def latest_valid_snapshots(*, session: Session) -> set[object]:
    """Each school's latest snapshot with a stored, applied or held run."""
    snapshot = metadata.tables["snapshot"]
    run = metadata.tables["sync_run"]
    keep: set[object] = set()
    for school_id in session.scalars(select(snapshot.c.school_id).distinct()):
        latest = session.scalar(
            select(snapshot.c.id)
            .join(
                run,
                and_(run.c.school_id == snapshot.c.school_id, run.c.snapshot_id == snapshot.c.id),
            )
            .where(
                snapshot.c.school_id == school_id, run.c.status.in_(("stored", "applied", "held"))
            )
            .order_by(snapshot.c.received_at.desc())
            .limit(1)
        )
        if latest is not None:
            keep.add(latest)
    return keep


def empty_snapshot_bodies(*, session: Session, cutoff: dt.datetime, keep: set[object]) -> int:
    """Empties the bodies received before `cutoff`, but those in `keep`; how many."""
    snapshot = metadata.tables["snapshot"]
    result = session.execute(
        update(snapshot)
        .where(
            snapshot.c.received_at < cutoff,
            snapshot.c.body != b"",
            snapshot.c.id.not_in(keep) if keep else snapshot.c.id.is_not(None),
        )
        .values(body=b"")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
