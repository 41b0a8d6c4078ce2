"""Retention (AVG/GDPR): after the window, soft-deleted records lose their personal data.

The row stays as a tombstone (its key and `tombstoned_at`), so the next ESIS snapshot still
does not bring the record back (R6). Its links, drift and placements are removed, the
personal values in its events are redacted, and raw snapshot bodies older than the window
are emptied (except each school's latest valid one, which readiness and activation read).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from sqlalchemy.orm import Session

from app.db import utcnow
from app.roster import purge_repository as repo

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
    for table_name, fields in PERSONAL.items():
        due = repo.due_for_tombstone(session=session, table_name=table_name, cutoff=cutoff)
        for start in range(0, len(due), BATCH):
            chunk = due[start : start + BATCH]
            ids = [row.id for row in chunk]
            repo.tombstone(session=session, table_name=table_name, ids=ids, fields=fields, now=now)
            for link, column in LINKS[table_name]:
                repo.delete_where_in(session=session, table_name=link, column=column, ids=ids)
            repo.delete_where_in(
                session=session, table_name="drift_item", column="record_id", ids=ids
            )
            repo.redact_events(
                session=session,
                entity=ENTITY[table_name],
                ids=ids,
                changes={"redacted": "personal data purged after the retention window"},
            )
        counts[ENTITY[table_name]] += len(due)

    old = repo.arrangements_deleted_before(session=session, cutoff=cutoff)
    if old:
        repo.delete_where_in(
            session=session, table_name="class_placement", column="arrangement_id", ids=old
        )
        repo.delete_where_in(session=session, table_name="class_arrangement", column="id", ids=old)
    counts["class_arrangement"] += len(old)

    keep = repo.latest_valid_snapshots(session=session)
    counts["snapshot_bodies"] += repo.empty_snapshot_bodies(
        session=session, cutoff=cutoff, keep=keep
    )
    return counts
