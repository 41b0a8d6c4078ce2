"""The audit trail and change feed (HTTP only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.errors import Forbidden, NotFound, Unauthorized, Unprocessable, problem_responses
from app.feed import queries
from app.feed.retention import FeedCompacted
from app.feed.schemas import EventList, EventPublic
from app.pagination import Limit
from app.schools.dependencies import ReadSchool, SessionDep

router = APIRouter(prefix="/api/v1/schools/{school}", tags=["events"])

After = Annotated[
    str | None,
    Query(
        description="Opaque cursor: the `next_cursor` of the previous page. Absent: from the "
        "school's first event.",
        max_length=500,
    ),
]


@router.get(
    "/events",
    summary="Read the change feed",
    description="The audit trail and change feed: every change to the school's records, "
    "whichever path made it (ESIS snapshot, EDEXml import, API edit), with who, when, the "
    "source and each field's before and after. R5 and R6 outcomes appear as their own kinds "
    "(`drift-opened`, `drift-closed`, `missing-in-esis`, `reappeared-in-esis`, ...).\n\n"
    "Oldest first. Events are numbered per school (`seq`), gap-free and in commit order, so "
    "a follower polls with the last `next_cursor` it stored as `after` and, also after a "
    "restart, never misses or repeats an event. `next_cursor` is always present: on an "
    "empty page it is the `after` given.\n\n"
    "Filter by `entity` and `entity_id` for the audit trail of one record.\n\n"
    "Events older than the feed's retention (`ESIS_SYNC_FEED_RETENTION_DAYS`) are removed by "
    "`esis-sync purge`. A cursor from before the oldest kept event gets `410 Gone` "
    "(`/problems/feed-compacted`): read the roster lists again, then resume with "
    "`after=<resume_cursor>` from the problem.",
    responses=problem_responses(Unauthorized, Forbidden, NotFound, Unprocessable, FeedCompacted),
)
def list_events(
    ctx: ReadSchool,
    session: SessionDep,
    after: After = None,
    limit: Limit = 100,
    entity: Annotated[
        str | None,
        Query(max_length=32, description="Only this kind of record, e.g. `student`."),
    ] = None,
    entity_id: Annotated[
        uuid.UUID | None, Query(description="Only this record: its audit trail.")
    ] = None,
    kind: Annotated[
        str | None,
        Query(max_length=32, description="Only this kind of event, e.g. `drift-opened`."),
    ] = None,
) -> EventList:
    rows, next_cursor = queries.list_events(
        session=session,
        school_id=ctx.school.id,
        where=queries.EventFilter(entity=entity, entity_id=entity_id, kind=kind),
        limit=limit,
        after=after,
    )
    return EventList(items=[EventPublic.model_validate(r) for r in rows], next_cursor=next_cursor)
