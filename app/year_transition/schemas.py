from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.year_transition.models import TransitionStatus


class YearTransitionStart(BaseModel):
    """Empty: start a transition against the latest snapshot. With `transition_id`: confirm
    (`confirm: true`) or reject (`confirm: false`) a held one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {},
                {"transition_id": "3f1c2b1e-8d4a-4c55-9a0e-6a1d2c3b4e5f", "confirm": True},
            ]
        },
    )

    transition_id: uuid.UUID | None = None
    confirm: bool | None = Field(
        default=None,
        description="With `transition_id`: true applies the held transition, false rejects it.",
    )


class YearTransitionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: TransitionStatus = Field(
        description="`applied`; `held` (above the removal guard or an empty snapshot: waits for "
        "an admin); `rejected`."
    )
    from_year: str | None
    to_year: str
    reason: str | None = Field(description="Why it was held.")
    snapshot_id: uuid.UUID
    run_id: uuid.UUID | None
    started_by: str
    decided_by: str | None
    decided_at: dt.datetime | None
    created_at: dt.datetime
    report: dict[str, Any] = Field(
        description="What it removes (R7-R9), ends, adds, flags (R10, R11) and the drift that "
        "stays (R5): counts and lists."
    )


class YearTransitionList(BaseModel):
    items: list[YearTransitionPublic]


class YearTransitionPreview(BaseModel):
    report: dict[str, Any] = Field(
        description="Counts and lists: `students_removed` (R7), `guardians_removed` (R8), "
        "`staff_removed` (R9), `groups_ended`, `groups_new`, `memberships_ended`, "
        "`memberships_new`, `local_groups_flagged` (R10), `class_arrangements_flagged` (R11), "
        "`drift_kept` (R5), and `held_reason` when the guard would hold it."
    )
    next_cursor: str | None = Field(description="The next page of every list.")
