"""Feed retention: events older than the window are compacted away by `esis-sync purge`.

A follower that stored a cursor from before the oldest kept event has missed changes that no
longer exist; it is told so (410 Gone) instead of silently receiving a feed with a hole, and
where to resume after it has read the roster lists again. The newest event of each school is
always kept, so the feed knows where it stands even when a school has been quiet for longer
than the window.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import DomainError
from app.feed import repository
from app.pagination import encode_cursor

RESYNC_FROM = ["groups", "students", "guardians", "staff"]


class FeedCompacted(DomainError):
    status, slug, title = 410, "feed-compacted", "The change feed no longer reaches this cursor"


def compact(*, session: Session, retention_days: int, now: dt.datetime | None = None) -> int:
    """Delete events older than the window (all schools), keeping each school's newest."""
    cutoff = (now or utcnow()) - dt.timedelta(days=retention_days)
    return repository.delete_events_before(session=session, cutoff=cutoff)


def oldest_kept(*, session: Session, school_id: uuid.UUID) -> int | None:
    return repository.oldest_seq(session=session, school_id=school_id)


def check_reachable(*, session: Session, school_id: uuid.UUID, after: int) -> None:
    """410 when events after `after` were compacted away; says where to resume."""
    oldest = oldest_kept(session=session, school_id=school_id)
    if oldest is None or after >= oldest - 1:
        return
    resume = oldest - 1
    raise FeedCompacted(
        f"events {after + 1} to {resume} were removed after the feed's retention window: "
        "read the roster lists again (groups, students, guardians, staff), then follow the "
        f"feed with after=resume_cursor (event {resume})",
        oldest_seq=oldest,
        resume_after=resume,
        resume_cursor=encode_cursor(resume),
        resync=RESYNC_FROM,
    )
