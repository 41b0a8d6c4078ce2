"""API shapes of connection health and the test connection."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, Field


class CertificateHealth(BaseModel):
    not_after: dt.datetime
    days_left: float
    expiring_within_days: int | None = Field(
        description="30, 7 or 1 once the certificate expires within that many days; else null."
    )


class HealthPublic(BaseModel):
    state: str = Field(
        description="`healthy` (the last pull succeeded, or none yet), `failing` (the last "
        "pulls failed), `quarantined` (ESIS_SYNC_PULL_QUARANTINE_FAILURES or more in a row: the "
        "scheduled pull backs off; a manual pull still runs, and a successful one ends it)."
    )
    consecutive_failures: int
    last_success_at: dt.datetime | None
    last_failure_at: dt.datetime | None
    last_error: dict[str, Any] | None = Field(description="The last failed pull's problem.")
    next_scheduled_pull_on: dt.date | None = Field(
        description="While quarantined: the school-local day of the next scheduled pull."
    )
    certificate: CertificateHealth | None = None


class Gaps(BaseModel):
    count: int
    keys: list[str] = Field(description="The first 50 LAS keys.")


class ReadinessPreview(BaseModel):
    ready: bool = Field(description="R1 on the fetched data: what activation would need.")
    students_without_guardian: Gaps
    guardians_without_email: Gaps


class GuardPreview(BaseModel):
    applies: bool = Field(
        description="Whether a pull of this answer would meet the change guard: not before "
        "activation, not on the school's first load, not at a year transition, not inside the "
        "pause window."
    )
    would_hold: bool = Field(
        description="The guard would hold the pull for an admin's confirmation: nothing "
        "would be applied until then."
    )
    reasons: list[str] = Field(default_factory=list, description="Why it would hold.")
    shares: dict[str, float] | None = Field(
        default=None, description="The school's guard shares (`update`, `missing`)."
    )


class KeyChangePreview(BaseModel):
    entity: str = Field(description="`student`, `guardian` or `staff`.")
    record_id: uuid.UUID = Field(description="Our record that ESIS seems to send under a new key.")
    old_key: str
    new_key: str
    matched_by: str = Field(description="`name_birth_date` (students) or `email`.")
    already_proposed: bool = Field(
        description="A proposal for this record and new key is stored already: a pull would "
        "not propose it again."
    )


class ConnectionTestResult(BaseModel):
    reachable: bool = Field(description="ESIS answered with a usable snapshot.")
    duration_ms: int
    error: dict[str, Any] | None = Field(description="Why not, when not reachable.")
    school_year: str | None = None
    records: dict[str, int] = Field(
        default_factory=dict, description="What ESIS sent: groups, students, guardians, staff."
    )
    would: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="What a merge of this answer would do now, per kind (added, updated, "
        "drift_opened, missing, ...), planned against the school as it is: nothing is written.",
    )
    would_start_year_transition: bool = False
    guard: GuardPreview | None = Field(
        default=None, description="What the change guard would do with this answer."
    )
    key_changes: list[KeyChangePreview] = Field(
        default_factory=list,
        description="The key-change proposals a pull would make (or has made) with this answer: "
        "records ESIS dropped paired with a new key for the same person. Nothing is proposed "
        "by the test.",
    )
    warnings: list[str] = Field(default_factory=list)
    readiness: ReadinessPreview | None = None
