from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from app.auth.models import Role
from app.schools.models import CouplingState, School, UpdatePolicy

Brin = Annotated[
    str,
    StringConstraints(min_length=4, max_length=4, pattern=r"^[0-9]{2}[A-Za-z]{2}$", to_upper=True),
    Field(description="BRIN code: two digits and two letters.", examples=["12AB"]),
]
Branch = Annotated[
    str,
    StringConstraints(min_length=2, max_length=2, pattern=r"^[0-9]{2}$"),
    Field(description="Branch (dependance) code; `00` is the main location.", examples=["00"]),
]
# A wall-clock time in the school's time zone: JSON Schema's `time` format demands an offset.
LocalTime = Annotated[
    dt.time,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$",
            "maxLength": 8,
            "examples": ["17:00:00"],
        }
    ),
]
GuardShare = Annotated[
    float,
    Field(
        gt=0,
        le=1,
        description="Share of students a year transition may remove before it "
        "is held for confirmation.",
        examples=[0.3],
    ),
]

UpdateGuardShare = Annotated[
    float,
    Field(
        gt=0,
        le=1,
        description="Share of one kind's records (at least 20 of them) a snapshot may update "
        "before it is held for confirmation (the change guard).",
        examples=[0.75],
    ),
]
MissingGuardShare = Annotated[
    float,
    Field(
        gt=0,
        le=1,
        description="Share of the school's students (at least 20) a snapshot may mark missing "
        "in ESIS before it is held for confirmation (the change guard).",
        examples=[0.1],
    ),
]


class SchoolPolicy(BaseModel):
    update_policy: UpdatePolicy = Field(
        default=UpdatePolicy.IGNORE,
        description="R5. `ignore`: ESIS changes to existing persons become drift. "
        "`apply_unedited`: fields never edited locally follow ESIS; edited ones become drift.",
    )
    removal_guard_share: GuardShare = 0.3
    change_guard_update_share: UpdateGuardShare = 0.75
    change_guard_missing_share: MissingGuardShare = 0.1


_SYNC_TIME = "Local time (school time zone) of the daily pull from ESIS (R3)."


class SchoolCreate(SchoolPolicy):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"brin": "12AB", "branch": "00", "name": "Basisschool De Regenboog"}]
        },
    )

    brin: Brin
    branch: Branch = "00"
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)] = (
        Field(examples=["Basisschool De Regenboog"])
    )
    daily_sync_time: LocalTime | None = Field(
        default=None,
        description=f"{_SYNC_TIME} Without one, the service's daily cut-off "
        "(ESIS_SYNC_DAILY_CUTOFF, 17:00 unless set).",
        examples=["17:00:00"],
    )


class SchoolUpdate(BaseModel):
    """Fields absent from the request stay as they are."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"update_policy": "apply_unedited", "daily_sync_time": "17:30:00"}]
        },
    )

    name: (
        Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
        | None
    ) = None
    update_policy: UpdatePolicy | None = None
    daily_sync_time: LocalTime | None = None
    removal_guard_share: GuardShare | None = None
    change_guard_update_share: UpdateGuardShare | None = None
    change_guard_missing_share: MissingGuardShare | None = None
    pause_start: dt.date | None = Field(
        default=None,
        description="First day (school-local) of the summer pause: snapshots are stored but "
        "held and no year transition starts by itself. Set both, or null both to clear.",
    )
    pause_end: dt.date | None = Field(default=None, description="Last day of the pause.")


class SchoolPublic(SchoolPolicy):
    key: str = Field(
        description="BRIN + branch: the `{school}` in every path.", examples=["12AB00"]
    )
    daily_sync_time: LocalTime = Field(description=_SYNC_TIME, examples=["17:00:00"])
    brin: str
    branch: str
    name: str
    coupling: CouplingState = Field(description="Whether the ESIS coupling is active (R2).")
    coupling_since: dt.datetime | None = Field(description="When the coupling last changed state.")
    current_school_year: str | None = Field(
        description="The school year of the applied ESIS data, e.g. `2026-2027`."
    )
    pause_start: dt.date | None = Field(description="Summer pause window: first day.")
    pause_end: dt.date | None = Field(description="Summer pause window: last day.")
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, school: School) -> SchoolPublic:
        return cls.model_validate(school, from_attributes=True)


class SchoolList(BaseModel):
    items: list[SchoolPublic]
    next_cursor: str | None = None


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"role": "esis", "name": "ESIS push client"}]},
    )

    role: Role = Field(
        description="`esis`, `reader` or `admin` (operator keys are made by the CLI)."
    )
    name: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)] = (
        Field(description="What the key is for.", examples=["ESIS push client"])
    )


class ApiKeyPublic(BaseModel):
    id: uuid.UUID
    role: Role
    name: str
    prefix: str = Field(description="The first characters of the key, to recognise it.")
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyPublic):
    secret: str = Field(description="The key itself. Shown only in this response; store it now.")


class ApiKeyList(BaseModel):
    items: list[ApiKeyPublic]
