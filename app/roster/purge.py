"""Retention (AVG/GDPR): after the window, soft-deleted records lose their personal data.

The row stays as a tombstone (its key and `tombstoned_at`), so the next ESIS snapshot still
does not bring the record back (R6). Its links, drift and placements are removed, the
personal values in its events are redacted, and raw snapshot bodies older than the window
are emptied (except each school's latest valid one, which readiness and activation read).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from sqlalchemy import and_, delete, select, update
from sqlalchemy.orm import Session

from app.db import metadata, utcnow

PERSONAL = {
    "student": (
        "last_name",
        "name_prefix",
        "first_names",
        "initials",
        "given_name",
        "birth_date",
        "gender",
        "email",
    ),
    "guardian": ("last_name", "name_prefix", "initials", "given_name", "email", "phone"),
    "staff": ("last_name", "name_prefix", "initials", "given_name", "email"),
    "school_group": (),
}
ENTITY = {"student": "student", "guardian": "guardian", "staff": "staff", "school_group": "group"}
LINKS = {
    "student": (
        ("student_group", "student_id"),
        ("student_guardian", "student_id"),
        ("class_placement", "student_id"),
    ),
    "guardian": (("student_guardian", "guardian_id"),),
    "staff": (("staff_group", "staff_id"),),
    "school_group": (("student_group", "group_id"), ("staff_group", "group_id")),
}
BATCH = 500


def purge(*, session: Session, retention_days: int, now: dt.datetime | None = None) -> Counter[str]:
    now = now or utcnow()
    cutoff = now - dt.timedelta(days=retention_days)
    counts: Counter[str] = Counter()
    event = metadata.tables["event"]
    drift = metadata.tables["drift_item"]
    for table_name, fields in PERSONAL.items():
        t = metadata.tables[table_name]
        due = list(
            session.execute(
                select(t.c.school_id, t.c.id).where(
                    t.c.deleted_at < cutoff, t.c.tombstoned_at.is_(None)
                )
            )
        )
        for start in range(0, len(due), BATCH):
            chunk = due[start : start + BATCH]
            ids = [row.id for row in chunk]
            session.execute(
                update(t)
                .where(t.c.id.in_(ids))
                .values(
                    **dict.fromkeys(fields), esis_values=None, local_edits={}, tombstoned_at=now
                )
            )
            for link, column in LINKS[table_name]:
                lt = metadata.tables[link]
                session.execute(delete(lt).where(lt.c[column].in_(ids)))
            session.execute(delete(drift).where(drift.c.record_id.in_(ids)))
            session.execute(
                update(event)
                .where(event.c.entity == ENTITY[table_name], event.c.entity_id.in_(ids))
                .values(changes={"redacted": "personal data purged after the retention window"})
            )
        counts[ENTITY[table_name]] += len(due)

    arrangements = metadata.tables["class_arrangement"]
    placements = metadata.tables["class_placement"]
    old = list(session.scalars(select(arrangements.c.id).where(arrangements.c.deleted_at < cutoff)))
    if old:
        session.execute(delete(placements).where(placements.c.arrangement_id.in_(old)))
        session.execute(delete(arrangements).where(arrangements.c.id.in_(old)))
    counts["class_arrangement"] += len(old)

    counts["snapshot_bodies"] += _empty_old_snapshots(session, cutoff)
    return counts


def _empty_old_snapshots(session: Session, cutoff: dt.datetime) -> int:
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
