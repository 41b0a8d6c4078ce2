from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.sync.models import RunKind, RunStatus


class EntityCounts(BaseModel):
    added: int = Field(description="New records or links from ESIS (R4).")
    updated: int = Field(description="ESIS values applied (groups; persons under apply_unedited).")
    unchanged: int
    matched: int = Field(description="Existing records paired with ESIS at activation (R2).")
    drift_opened: int = Field(description="ESIS changes not applied, now open as drift (R5).")
    drift_closed: int = Field(description="Drift that ESIS took back or that was applied.")
    missing: int = Field(description="Records ESIS stopped listing this run; they stay (R6).")
    reappeared: int = Field(description="Records ESIS lists again after being missing.")
    suppressed: int = Field(description="Records deleted locally that ESIS still lists (R6).")
    moved: int = Field(description="Students moved to another main group (apply_unedited).")
    removed: int = Field(
        default=0, description="Removed at the year transition (R7-R9), or links that ended."
    )


class SyncRunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: RunKind = Field(
        description="`merge` for a snapshot, `activation` for R2's initial load, "
        "`year_transition` for an admin's start or confirmation of one (R7-R11)."
    )
    origin: str = Field(description="`push` (ESIS sent it) or `pull` (fetched from ESIS).")
    status: RunStatus = Field(
        description="`applied`; `stored` (coupling inactive: kept for R1/R2); `held` (a new "
        "school year: waits for the year transition); `failed` (nothing changed); `received` "
        "(stored, being applied)."
    )
    snapshot_id: uuid.UUID | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    counts: dict[str, EntityCounts] = Field(
        description="Per entity (`group`, `student`, `guardian`, `staff`, `student_group`, "
        "`student_guardian`, `staff_group`)."
    )
    warnings: list[str]
    error: dict[str, Any] | None = Field(description="The problem that failed the run.")
    report: dict[str, Any] | None = Field(
        description="Activation only: `matched`, `created` and `unmatched` records (R2)."
    )


class SyncRunList(BaseModel):
    items: list[SyncRunPublic]
    next_cursor: str | None


class Gap(BaseModel):
    key: str
    name: str


class GapList(BaseModel):
    count: int
    items: list[Gap]


class ReadinessPublic(BaseModel):
    ready: bool = Field(description="True when activation (R2) would be accepted.")
    snapshot_id: uuid.UUID | None = Field(description="The snapshot checked: the latest valid one.")
    received_at: dt.datetime | None
    school_year: str | None
    students_without_guardian: GapList
    guardians_without_email: GapList


DriftEntity = Literal["group", "student", "guardian", "staff", "student_guardian"]


class DriftItemPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    entity: DriftEntity
    record_id: uuid.UUID
    field: str = Field(description="The field ESIS changed; `group` is a student's main group.")
    our_value: Any = Field(description="The value here (a local edit, or ESIS's earlier value).")
    esis_value: Any = Field(description="The value ESIS sends now.")
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime


class DriftList(BaseModel):
    items: list[DriftItemPublic]
    next_cursor: str | None


class DriftFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entity: DriftEntity | None = None
    field: str | None = Field(default=None, max_length=64)
    record_id: uuid.UUID | None = None


class DriftAccept(BaseModel):
    """Give `ids`, or a `filter` (all open drift matching it). Not both."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"filter": {"entity": "guardian", "field": "phone"}}]},
    )

    ids: list[uuid.UUID] | None = Field(default=None, max_length=10000)
    filter: DriftFilter | None = None


class DriftAccepted(BaseModel):
    accepted: int
    ids: list[uuid.UUID]
