"""R6's report of what ESIS no longer lists, and R10/R11's review of what the school checks."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.roster import arrangements_repository, reports_repository
from app.roster.reports_schemas import (
    MissingItem,
    MissingReport,
    MissingSection,
    ReviewItem,
    ReviewReport,
)
from app.roster.views import display_name


def missing_in_esis(*, session: Session, school_id: uuid.UUID, limit: int) -> MissingReport:
    def section(table_name: str) -> MissingSection:
        count = reports_repository.missing_count(
            session=session, school_id=school_id, table_name=table_name
        )
        rows = reports_repository.missing_rows(
            session=session, school_id=school_id, table_name=table_name, limit=limit
        )
        items = [
            MissingItem(
                id=r["id"],
                esis_key=r["esis_key"],
                name=r["name"] if table_name == "school_group" else display_name(r),
                missing_in_esis_since=r["missing_in_esis_since"],
            )
            for r in rows
        ]
        return MissingSection(count=count, items=items)

    links = {
        name: reports_repository.missing_count(
            session=session, school_id=school_id, table_name=name
        )
        for name in ("student_group", "student_guardian", "staff_group")
    }
    return MissingReport(
        groups=section("school_group"),
        students=section("student"),
        guardians=section("guardian"),
        staff=section("staff"),
        links=links,
    )


def review(*, session: Session, school_id: uuid.UUID) -> ReviewReport:
    groups = reports_repository.local_groups_to_review(session=session, school_id=school_id)
    arrangements = arrangements_repository.arrangements_to_review(
        session=session, school_id=school_id
    )
    return ReviewReport(
        local_groups=[
            ReviewItem(id=r["id"], name=r["name"], reason=r["review_reason"]) for r in groups
        ],
        class_arrangements=[
            ReviewItem(id=r["id"], name=r["name"], reason=r["review_reason"]) for r in arrangements
        ],
    )
