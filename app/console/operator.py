"""The operator's page: every school's health, sortable and filterable, in pages of
PAGE_SIZE, linking into each.

Sorting by key or name without a filter needs no figures: the schools are searched, sorted
and cut to the page first, and only the page's health is read. Sorting or filtering by a
figure reads every matching school's health (`queries.health`, a few grouped queries), then
cuts the page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlencode

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
PAGE_SIZE = 50
T = TypeVar("T")

BY_SCHOOL: dict[str, Callable[[School], Any]] = {
    "key": lambda s: s.key,
    "name": lambda s: s.name.lower(),
}
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
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:
    operator_only(user)
    schools = _all_schools(request)
    needle = q.strip().lower()
    matching = [
        s for s in schools if not needle or needle in s.key.lower() or needle in s.name.lower()
    ]
    descending = order == "desc"
    with sessions_of(request)() as session:
        if sort in BY_SCHOOL and not only:
            matching.sort(key=BY_SCHOOL[sort], reverse=descending)
            count = len(matching)
            page = min(page, _pages(count))
            rows = queries.health(session=session, schools=_cut(matching, page))
        else:
            everything = queries.health(session=session, schools=matching)
            if only:
                everything = [h for h in everything if FILTERS[only](h)]
            everything.sort(key=KEYS[sort], reverse=descending)
            count = len(everything)
            page = min(page, _pages(count))
            rows = _cut(everything, page)
    state = {"sort": sort, "order": order, "q": q, "only": only}
    return render(
        request,
        "schools.html",
        {
            "rows": rows,
            "total": len(schools),
            "matching": count,
            "page_number": page,  # `page` is a school's scope in base.html
            "pages": _pages(count),
            "first": (page - 1) * PAGE_SIZE + 1 if rows else 0,
            "last": (page - 1) * PAGE_SIZE + len(rows),
            "previous_page": _link(state, page - 1) if page > 1 else None,
            "next_page": _link(state, page + 1) if page < _pages(count) else None,
            **state,
            "sorts": list(KEYS),
            "filters": ["", *FILTERS],
        },
        user=user,
    )


def _pages(count: int) -> int:
    return max(1, -(-count // PAGE_SIZE))


def _cut(items: list[T], page: int) -> list[T]:
    return items[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]


def _link(state: dict[str, str], page: int) -> str:
    return "/console/schools?" + urlencode({**state, "page": page})
