"""API shapes of the roster: what other systems read and write, provenance included."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.esis.schemas import Email, Gender, Phone, Relation, YearLevel
from app.provenance import Source

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Short = Annotated[str, StringConstraints(max_length=100, strip_whitespace=True)]
Text = Annotated[str, StringConstraints(max_length=500, strip_whitespace=True)]
# As the column holds it: an empty or longer key would reach the database (and fail there).
EsisKey = Annotated[str, StringConstraints(min_length=1, max_length=256, strip_whitespace=True)]


def _distinct(ids: list[uuid.UUID]) -> list[uuid.UUID]:
    if len(set(ids)) != len(ids):
        raise ValueError("an id is listed twice")
    return ids


# Ids of records to link: each once (a link is a row; the same one twice is no request).
DistinctIds = Annotated[list[uuid.UUID], AfterValidator(_distinct)]


class EditMark(BaseModel):
    by: str = Field(description="Who edited the field: `key:<api key id>`.")
    at: dt.datetime


class DriftSummary(BaseModel):
    id: uuid.UUID
    field: str
    our_value: Any
    esis_value: Any
    first_seen_at: dt.datetime


class Provenance(BaseModel):
    """Where the record came from and what happened to it (docs/data-model.md)."""

    source: Source = Field(description="`esis`, `edexml` (file import) or `local` (this API).")
    esis_key: str | None = Field(description="The LAS key, when ESIS or EDEXml knows the record.")
    local_edits: dict[str, EditMark] = Field(
        description="Fields changed through this API, by whom and when. R5: ESIS does not "
        "overwrite them."
    )
    drift: list[DriftSummary] = Field(description="R5: ESIS changes not applied to this record.")
    missing_in_esis_since: dt.datetime | None = Field(
        description="R6: ESIS stopped listing the record at this time; it stays."
    )
    deleted_at: dt.datetime | None = Field(description="Soft-deleted at; restorable for a while.")
    deleted_by: str | None
    tombstoned_at: dt.datetime | None = Field(
        description="Personal data purged after the retention window; only the key remains."
    )
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int = Field(description="Increases with every change; the `ETag` of the record.")


class LinkInfo(BaseModel):
    source: Source
    missing_in_esis_since: dt.datetime | None = Field(
        description="R6: ESIS stopped listing this link; it stays until the year transition."
    )


class GroupRef(LinkInfo):
    id: uuid.UUID
    name: str | None
    esis_key: str | None
    is_composite: bool


class StudentRef(LinkInfo):
    id: uuid.UUID
    name: str
    esis_key: str | None


class GuardianRef(StudentRef):
    relation: Relation | None


class StudentOfGuardian(StudentRef):
    relation: Relation | None


# --- students -------------------------------------------------------------------------------


class StudentFields(BaseModel):
    last_name: Name | None = None
    name_prefix: Short | None = None
    first_names: Name | None = None
    initials: Short | None = None
    given_name: Short | None = None
    birth_date: dt.date | None = None
    gender: Gender | None = None
    year_level: YearLevel | None = None
    email: Email | None = None


class StudentPublic(StudentFields):
    id: uuid.UUID
    groups: list[GroupRef]
    guardians: list[GuardianRef]
    provenance: Provenance


class StudentUpdate(StudentFields):
    """Fields absent from the request stay; each changed field is marked as edited locally."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"given_name": "Sanne", "email": "sanne@example.nl"}]},
    )

    esis_key: EsisKey | None = Field(
        default=None, description="Only before activation and only for records not from ESIS."
    )


class StudentCreate(StudentFields):
    """Only while the coupling is inactive (R4: afterwards ESIS leads for additions)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"last_name": "Jansen", "given_name": "Sanne", "birth_date": "2017-03-14"}]
        },
    )

    last_name: Name
    group_ids: DistinctIds = Field(default_factory=list, max_length=50)


class StudentList(BaseModel):
    items: list[StudentPublic]
    next_cursor: str | None


# --- guardians ------------------------------------------------------------------------------


class GuardianFields(BaseModel):
    last_name: Name | None = None
    name_prefix: Short | None = None
    initials: Short | None = None
    given_name: Short | None = None
    email: Email | None = None
    phone: Phone | None = None


class GuardianPublic(GuardianFields):
    id: uuid.UUID
    students: list[StudentOfGuardian]
    provenance: Provenance


class GuardianUpdate(GuardianFields):
    """A parent correcting their own e-mail: R5 keeps it when ESIS still sends the old one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"email": "anna.jansen@example.nl"}]},
    )

    esis_key: EsisKey | None = Field(
        default=None, description="Only before activation and only for records not from ESIS."
    )


class StudentLink(BaseModel):
    student_id: uuid.UUID
    relation: Relation | None = None


class GuardianCreate(GuardianFields):
    """Only while the coupling is inactive (R4)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "last_name": "Jansen",
                    "initials": "A",
                    "email": "anna.jansen@example.nl",
                    "students": [
                        {"student_id": "8f7e0a52-4c4c-4c39-9a57-1b0c2a1d4e11", "relation": "mother"}
                    ],
                }
            ]
        },
    )

    last_name: Name
    students: list[StudentLink] = Field(min_length=1, max_length=50)


class GuardianList(BaseModel):
    items: list[GuardianPublic]
    next_cursor: str | None


# --- staff ----------------------------------------------------------------------------------


class StaffFields(BaseModel):
    last_name: Name | None = None
    name_prefix: Short | None = None
    initials: Short | None = None
    given_name: Short | None = None
    email: Email | None = None
    roles: list[Short] | None = Field(default=None, max_length=100)


class StaffPublic(StaffFields):
    id: uuid.UUID
    active: bool = Field(description="Whether ESIS lists the staff member as active (R9).")
    groups: list[GroupRef]
    provenance: Provenance


class StaffUpdate(StaffFields):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"email": "p.bakker@school.example.nl"}]}
    )

    esis_key: EsisKey | None = Field(
        default=None, description="Only before activation and only for records not from ESIS."
    )


class StaffCreate(StaffFields):
    """Only while the coupling is inactive (R4)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"last_name": "Bakker", "initials": "P"}]},
    )

    last_name: Name
    group_ids: DistinctIds = Field(default_factory=list, max_length=50)


class StaffList(BaseModel):
    items: list[StaffPublic]
    next_cursor: str | None


# --- groups ---------------------------------------------------------------------------------


class GroupFields(BaseModel):
    name: Name | None = None
    description: Text | None = None
    year_level: YearLevel | None = None


class GroupPublic(GroupFields):
    id: uuid.UUID
    is_composite: bool
    school_year: str | None
    review_reason: str | None = Field(
        description="R10: why the school must check this local group (set at the year transition)."
    )
    members: list[StudentRef]
    staff: list[StudentRef]
    provenance: Provenance


class GroupUpdate(GroupFields):
    """Changes an ESIS group's attributes (kept against ESIS, as drift) or a local group."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "BSO maandag", "student_ids": []}]},
    )

    student_ids: DistinctIds | None = Field(
        default=None,
        max_length=2000,
        description="Local groups only: the members, replacing the current ones.",
    )


class GroupCreate(GroupFields):
    """A local group (mid-year entrants, after-school care): never removed automatically (R10)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Instromers januari", "year_level": 1}]},
    )

    name: Name
    is_composite: bool = False
    student_ids: DistinctIds = Field(default_factory=list, max_length=2000)


class GroupList(BaseModel):
    items: list[GroupPublic]
    next_cursor: str | None


ETAG = {
    "ETag": {
        "description": "The record's version (a strong ETag): send it as `If-Match` to change "
        "or delete it.",
        "schema": {"type": "string", "maxLength": 24, "pattern": '^"[0-9]+"$'},
    }
}


def with_etag(status_code: int, description: str) -> dict[int | str, dict[str, Any]]:
    return {status_code: {"description": description, "headers": ETAG}}
