"""Connection health and the test connection (HTTP only)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from app.coupling import connection_check, health
from app.coupling.health_schemas import ConnectionTestResult, HealthPublic
from app.coupling.pulls import PullOptions, get_connection
from app.coupling.receive import PushLimits
from app.errors import Forbidden, NotFound, Unauthorized, problem_responses
from app.schools.dependencies import SessionDep, WriteSchool

router = APIRouter(prefix="/api/v1/schools/{school}/esis", tags=["esis"])
AUTH = (Unauthorized, Forbidden, NotFound)


@router.get(
    "/health",
    name="get_esis_health",
    summary="The ESIS connection's health",
    description="Derived from the school's pull history: `healthy`, `failing` or "
    "`quarantined` (after ESIS_SYNC_PULL_QUARANTINE_FAILURES failed pulls in a row the "
    "scheduled pull backs off to every 2, 4, then 7 days; a manual pull still runs and a "
    "successful one ends it), and how long the client certificate has left.",
    responses=problem_responses(*AUTH),
)
def get_health(request: Request, ctx: WriteSchool, session: SessionDep) -> HealthPublic:
    connection = get_connection(session=session, school_id=ctx.school.id)
    return health.health_public(
        session=session, settings=request.app.state.settings, connection=connection
    )


@router.post(
    "/connection/test",
    name="test_esis_connection",
    summary="Test the ESIS connection",
    description="Fetches the school from ESIS now (one try) and answers with what a pull "
    "would do: records received, the merge's counts per kind planned against the school as "
    "it is (as a pull plans them), what the change guard would decide (`guard`), the "
    "key-change proposals the merge would make (`key_changes`), warnings and readiness (R1). "
    "Nothing is stored or changed: no snapshot, no sync run, no event, no proposal. A failed "
    "fetch is an answer (`reachable: false` and why), not an error.",
    responses=problem_responses(*AUTH),
)
async def test_connection(request: Request, ctx: WriteSchool) -> ConnectionTestResult:
    settings = request.app.state.settings
    options = PullOptions(
        limits=PushLimits(
            max_records=settings.max_snapshot_records, per_minute=settings.push_rate_per_minute
        ),
        attempts=1,
    )
    return await run_in_threadpool(
        connection_check.test_connection,
        sessions=request.app.state.sessionmaker,
        settings=settings,
        school_id=ctx.school.id,
        options=options,
    )
