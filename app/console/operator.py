"""The operator's page: every school's health, sortable and filterable, linking into each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.console import queries
from app.console.web import User, operator_only, render, sessions_of
from app.schools.models import School
from app.schools.service import list_schools

router = APIRouter()

Sort = Literal["key", "name", "last_success", "failing", "held", "drift", "cert"]
Only = Literal["", "failing", "held", "drift", "cert", "stale"]
STALE_DAYS = 2

KEYS: dict[str, Callable[[queries.Health], Any]] = {
    "key": lambda h: h.school.key,
    "name": lambda h: h.school.name.lower(),
    # Never synced sorts as the oldest.
    "last_success": lambda h: h.last_success.timestamp() if h.last_success else 0.0,
    "failing": lambda h: h.failing_pulls,
    "held": lambda h: h.held,
    "drift": lambda h: h.open_drift,
    "cert": lambda h: h.cert_not_after.timestamp() if h.cert_not_after else float("inf"),
}
FILTERS: dict[str, Callable[[queries.Health], bool]] = {
    "failing": lambda h: h.failing_pulls > 0,
    "held": lambda h: h.held > 0,
    "drift": lambda h: h.open_drift > 0,
    "cert": lambda h: h.cert_expiring,
    "stale": lambda h: h.age_days is None or h.age_days >= STALE_DAYS,
}


def _all_schools(request: Request) -> list[School]:
    out: list[School] = []
    cursor = None
    with sessions_of(request)() as session:
        while True:
            rows, cursor = list_schools(session=session, limit=1000, cursor=cursor)
            out.extend(rows)
            if cursor is None:
                return out


@router.get("/schools")
def schools_page(
    request: Request,
    user: User,
    sort: Sort = "key",
    order: Literal["asc", "desc"] = "asc",
    q: Annotated[str, Query(max_length=100)] = "",
    only: Only = "",
) -> Response:
    operator_only(user)
    schools = _all_schools(request)
    with sessions_of(request)() as session:
        rows = queries.health(session=session, schools=schools)
    needle = q.strip().lower()
    if needle:
        rows = [
            h for h in rows if needle in h.school.key.lower() or needle in h.school.name.lower()
        ]
    if only:
        rows = [h for h in rows if FILTERS[only](h)]
    rows.sort(key=KEYS[sort], reverse=order == "desc")
    return render(
        request,
        "schools.html",
        {
            "rows": rows,
            "total": len(schools),
            "sort": sort,
            "order": order,
            "q": q,
            "only": only,
            "sorts": list(KEYS),
            "filters": ["", *FILTERS],
        },
        user=user,
    )
