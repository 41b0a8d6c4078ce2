"""A year transition: computed from a new school year's snapshot, held or applied."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKeyConstraint, Index
from sqlmodel import Field

from app.db import UTCDateTime, utcnow
from app.provenance import SchoolScoped


class TransitionStatus(StrEnum):
    HELD = "held"  # above the removal guard, or an empty snapshot: waits for an admin
    APPLIED = "applied"
    REJECTED = "rejected"


class YearTransition(SchoolScoped, table=True):
    __tablename__ = "year_transition"
    __table_args__ = (
        ForeignKeyConstraint(
            ["school_id", "snapshot_id"],
            ["snapshot.school_id", "snapshot.id"],
            ondelete="CASCADE",
        ),
        CheckConstraint("status IN ('held', 'applied', 'rejected')", name="status"),
        Index(None, "school_id", "created_at"),
    )

    snapshot_id: uuid.UUID
    run_id: uuid.UUID | None = Field(default=None)
    from_year: str | None = Field(default=None, max_length=9)
    to_year: str = Field(max_length=9)
    status: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=500)
    report: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    started_by: str = Field(max_length=64)
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
