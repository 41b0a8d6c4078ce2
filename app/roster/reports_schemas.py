"""API shapes of the roster's reports: what ESIS no longer lists (R6), what to review (R10, R11)."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, Field


class MissingItem(BaseModel):
    id: uuid.UUID
    esis_key: str | None
    name: str | None
    missing_in_esis_since: dt.datetime


class MissingSection(BaseModel):
    count: int
    items: list[MissingItem]


class MissingReport(BaseModel):
    """R6: what ESIS no longer lists; it stays until the year transition or a user deletes it."""

    groups: MissingSection
    students: MissingSection
    guardians: MissingSection
    staff: MissingSection
    links: dict[str, int] = Field(
        description="Memberships and guardian links ESIS no longer lists, per kind."
    )


class ReviewItem(BaseModel):
    id: uuid.UUID
    name: str | None
    reason: str


class ReviewReport(BaseModel):
    """R10, R11: what the school must check by hand."""

    local_groups: list[ReviewItem]
    class_arrangements: list[ReviewItem]
