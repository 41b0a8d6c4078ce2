"""R6's report of what ESIS no longer lists, and R10/R11's review of what the school checks."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import metadata
from app.provenance import Source
from app.roster.schemas import MissingItem, MissingReport, MissingSection, ReviewItem, ReviewReport
from app.roster.views import display_name


def missing_in_esis(*, session: Session, school_id: uuid.UUID, limit: int) -> MissingReport:
    def section(table_name: str) -> MissingSection:
        t = metadata.tables[table_name]
        where = (
            t.c.school_id == school_id,
            t.c.missing_in_esis_since.is_not(None),
            t.c.deleted_at.is_(None),
        )
        count = session.scalar(select(func.count()).select_from(t).where(*where)) or 0
        rows = session.execute(
            select(t).where(*where).order_by(t.c.missing_in_esis_since, t.c.id).limit(limit)
        ).mappings()
        items = [
            MissingItem(
                id=r["id"],
                esis_key=r["esis_key"],
                name=r["name"] if table_name == "school_group" else display_name(dict(r)),
                missing_in_esis_since=r["missing_in_esis_since"],
            )
            for r in rows
        ]
        return MissingSection(count=count, items=items)

    links = {}
    for name in ("student_group", "student_guardian", "staff_group"):
        t = metadata.tables[name]
        links[name] = (
            session.scalar(
                select(func.count())
                .select_from(t)
                .where(
                    t.c.school_id == school_id,
                    t.c.missing_in_esis_since.is_not(None),
                    t.c.deleted_at.is_(None),
                )
            )
            or 0
        )
    return MissingReport(
        groups=section("school_group"),
        students=section("student"),
        guardians=section("guardian"),
        staff=section("staff"),
        links=links,
    )


def review(*, session: Session, school_id: uuid.UUID) -> ReviewReport:
    g = metadata.tables["school_group"]
    a = metadata.tables["class_arrangement"]
    groups = session.execute(
        select(g)
        .where(
            g.c.school_id == school_id,
            g.c.source == Source.LOCAL.value,
            g.c.deleted_at.is_(None),
            g.c.review_reason.is_not(None),
        )
        .order_by(g.c.name, g.c.id)
    ).mappings()
    arrangements = session.execute(
        select(a)
        .where(
            a.c.school_id == school_id,
            a.c.deleted_at.is_(None),
            a.c.review_reason.is_not(None),
        )
        .order_by(a.c.name, a.c.id)
    ).mappings()
    return ReviewReport(
        local_groups=[
            ReviewItem(id=r["id"], name=r["name"], reason=r["review_reason"]) for r in groups
        ],
        class_arrangements=[
            ReviewItem(id=r["id"], name=r["name"], reason=r["review_reason"]) for r in arrangements
        ],
    )
