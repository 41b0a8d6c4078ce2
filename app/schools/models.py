from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import CheckConstraint, Time
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, new_id, utcnow


class CouplingState(StrEnum):
    INACTIVE = "inactive"
    ACTIVE = "active"


class UpdatePolicy(StrEnum):
    """R5: what happens to ESIS changes of existing persons after activation."""

    IGNORE = "ignore"
    APPLY_UNEDITED = "apply_unedited"


class School(SQLModel, table=True):
    __tablename__ = "school"
    __table_args__ = (
        CheckConstraint("coupling IN ('inactive', 'active')", name="coupling"),
        CheckConstraint("update_policy IN ('ignore', 'apply_unedited')", name="update_policy"),
        CheckConstraint(
            "removal_guard_share > 0 AND removal_guard_share <= 1", name="removal_guard_share"
        ),
        CheckConstraint(
            "change_guard_update_share > 0 AND change_guard_update_share <= 1",
            name="change_guard_update_share",
        ),
        CheckConstraint(
            "change_guard_missing_share > 0 AND change_guard_missing_share <= 1",
            name="change_guard_missing_share",
        ),
        CheckConstraint("length(brin) = 4", name="brin_length"),
        CheckConstraint("length(branch) = 2", name="branch_length"),
        CheckConstraint("event_seq >= 0", name="event_seq"),
        CheckConstraint(
            "(pause_start IS NULL) = (pause_end IS NULL) AND "
            "(pause_start IS NULL OR pause_start <= pause_end)",
            name="pause_window",
        ),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    key: str = Field(max_length=6, unique=True, description="BRIN + branch, e.g. 12AB00")
    brin: str = Field(max_length=4)
    branch: str = Field(max_length=2)
    name: str = Field(max_length=200)
    coupling: str = Field(default=CouplingState.INACTIVE.value, max_length=16)
    coupling_since: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    update_policy: str = Field(default=UpdatePolicy.IGNORE.value, max_length=16)
    # Given at creation: the request's, else the daily cut-off setting (R3).
    daily_sync_time: dt.time = Field(sa_type=Time)
    removal_guard_share: float = Field(default=0.30)
    # The change guard of every other snapshot (app/sync/guard.py): a snapshot that would
    # update more than this share of a kind's records, or mark more than this share of the
    # students missing in ESIS, is held for an admin.
    change_guard_update_share: float = Field(default=0.75)
    change_guard_missing_share: float = Field(default=0.10)
    current_school_year: str | None = Field(default=None, max_length=9)
    # The summer pause: inside it (school-local dates, inclusive) snapshots are stored but
    # held, and no year transition starts by itself (ESIS exports are often incomplete then).
    pause_start: dt.date | None = Field(default=None)
    pause_end: dt.date | None = Field(default=None)
    # Per-school event counter: taking the next number locks the school's row, which both
    # orders the change feed in commit order and serializes writers of one school.
    event_seq: int = Field(default=0)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
