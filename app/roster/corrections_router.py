"""The corrections-for-ESIS report (HTTP only): JSON, or CSV for a spreadsheet."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from app.errors import Forbidden, NotFound, Unauthorized, Unprocessable, problem_responses
from app.pagination import Cursor, Limit
from app.roster import corrections
from app.roster.corrections import CorrectionList
from app.schools.dependencies import ReadSchool, SessionDep

router = APIRouter(prefix="/api/v1/schools/{school}", tags=["roster"])


def _wants_csv(request: Request, format: str | None) -> bool:
    if format is not None:
        return format == "csv"
    accept = request.headers.get("accept", "").lower()
    return "text/csv" in accept and "application/json" not in accept


@router.get(
    "/reports/corrections",
    name="get_corrections_report",
    summary="Corrections for ESIS: local edits ESIS does not have",
    description="Every field edited here (by a user or a parent through the API) whose value "
    "differs from what ESIS sent in its latest snapshot: the list the school uses to correct "
    "ESIS, since the coupling is one-way (R5). An item disappears by itself once ESIS sends "
    "the same value. Paged by `cursor`; filter by `kind` and `field`. CSV with "
    "`Accept: text/csv` or `format=csv` (the next page's address in the `Link` header).",
    response_model=CorrectionList,
    responses={
        **problem_responses(Unauthorized, Forbidden, NotFound, Unprocessable),
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
    },
)
def corrections_report(
    ctx: ReadSchool,
    session: SessionDep,
    request: Request,
    limit: Limit = 100,
    cursor: Cursor = None,
    kind: Annotated[
        str | None,
        Query(
            max_length=32,
            description="`group`, `student`, `guardian`, `staff`, `student_guardian`.",
        ),
    ] = None,
    field: Annotated[
        str | None, Query(max_length=64, description="Only this field, e.g. `email`.")
    ] = None,
    format: Annotated[
        str | None,
        Query(max_length=4, pattern="^(json|csv)$", description="`json` (default) or `csv`."),
    ] = None,
) -> CorrectionList | Response:
    report = corrections.list_corrections(
        session=session,
        school_id=ctx.school.id,
        kind=kind,
        field=field,
        limit=limit,
        cursor=cursor,
    )
    if not _wants_csv(request, format):
        return report
    headers = {"Content-Disposition": 'attachment; filename="corrections.csv"'}
    if report.next_cursor is not None:
        params = {k: v for k, v in request.query_params.items() if k != "cursor"}
        params["cursor"] = report.next_cursor
        headers["Link"] = f'<{request.url.path}?{urlencode(params)}>; rel="next"'
    return Response(
        corrections.to_csv(report), media_type="text/csv; charset=utf-8", headers=headers
    )
