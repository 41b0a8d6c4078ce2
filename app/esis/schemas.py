"""The snapshot contract: one school's full ESIS data, as JSON or mapped from EDEXml XML."""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

Key = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256, strip_whitespace=True),
    Field(description="The LAS key: stable for a career, never reused (EDEXml `@key`)."),
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
ShortText = Annotated[str, StringConstraints(max_length=100, strip_whitespace=True)]
Email = Annotated[
    str,
    StringConstraints(max_length=320, strip_whitespace=True, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
    Field(examples=["anna.jansen@example.nl"]),
]
Phone = Annotated[
    str,
    StringConstraints(max_length=50, strip_whitespace=True, pattern=r"^[0-9+()\- ]{6,50}$"),
    Field(examples=["+31612345678"]),
]
YearLevel = Annotated[
    int,
    Field(
        ge=0,
        le=99,
        description="Jaargroep: 1-8, 0 for preschool, higher for special education levels.",
    ),
]

_SCHOOL_YEAR = re.compile(r"^(\d{4})-(\d{4})$")


def _school_year(value: str) -> str:
    match = _SCHOOL_YEAR.match(value)
    if match is None or int(match.group(2)) != int(match.group(1)) + 1:
        raise ValueError(
            "a school year is written YYYY-YYYY with consecutive years, e.g. 2026-2027"
        )
    return value


# A hard ceiling on any list in a snapshot, far above a school (the configured
# `max_snapshot_records` is the real limit); it bounds what one request can make us hold.
MAX_ITEMS = 1_000_000

SchoolYear = Annotated[
    str,
    AfterValidator(_school_year),
    Field(
        min_length=9,
        max_length=9,
        pattern=r"^\d{4}-\d{4}$",
        description="Runs 1 August - 31 July, written `2026-2027`.",
        examples=["2026-2027"],
    ),
]


class Gender(StrEnum):
    UNKNOWN = "unknown"
    MALE = "male"
    FEMALE = "female"
    UNSPECIFIED = "unspecified"


class Relation(StrEnum):
    FATHER = "father"
    MOTHER = "mother"
    CAREGIVER = "caregiver"
    LEGAL_GUARDIAN = "legal_guardian"
    OTHER = "other"


class Kind(StrEnum):
    """What a snapshot may carry: four kinds of records and three kinds of links."""

    GROUPS = "groups"
    STUDENTS = "students"
    GUARDIANS = "guardians"
    STAFF = "staff"
    STUDENT_GROUPS = "student_groups"
    STUDENT_GUARDIANS = "student_guardians"
    STAFF_GROUPS = "staff_groups"


# A link kind and the record kinds at its two ends (a link needs both ends carried).
LINK_ENDS: dict[Kind, tuple[Kind, Kind]] = {
    Kind.STUDENT_GROUPS: (Kind.STUDENTS, Kind.GROUPS),
    Kind.STUDENT_GUARDIANS: (Kind.STUDENTS, Kind.GUARDIANS),
    Kind.STAFF_GROUPS: (Kind.STAFF, Kind.GROUPS),
}
# The record list a link kind is written in (a student's groups, a guardian's students, ...).
LINK_OWNER = {
    Kind.STUDENT_GROUPS: Kind.STUDENTS,
    Kind.STUDENT_GUARDIANS: Kind.GUARDIANS,
    Kind.STAFF_GROUPS: Kind.STAFF,
}
RECORD_KINDS = (Kind.GROUPS, Kind.STUDENTS, Kind.GUARDIANS, Kind.STAFF)
ALL_KINDS = frozenset(Kind)


def derive_scope(present: set[str] | frozenset[str]) -> frozenset[Kind]:
    """The kinds a snapshot carries when it lists the record kinds in `present` (even empty):
    each of those, and each link kind whose list is carried and whose two ends are."""
    records = {kind for kind in RECORD_KINDS if kind.value in present}
    links = {
        link
        for link, (a, b) in LINK_ENDS.items()
        if LINK_OWNER[link] in records and a in records and b in records
    }
    return frozenset(records | links)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SnapshotSchool(_Strict):
    brin: Annotated[
        str,
        StringConstraints(
            min_length=4, max_length=4, pattern=r"^[0-9]{2}[A-Za-z]{2}$", to_upper=True
        ),
    ] = Field(description="BRIN code of the school.", examples=["12AB"])
    branch: Annotated[str, StringConstraints(min_length=2, max_length=2, pattern=r"^[0-9]{2}$")] = (
        Field(default="00", description="Branch (dependance) code; `00` is the main location.")
    )
    school_year: SchoolYear
    generated_at: dt.datetime | None = Field(
        default=None, description="When ESIS made the export (EDEXml `aanmaakdatum`)."
    )
    name: Name | None = Field(default=None, description="The school's name, if ESIS sends it.")


class SnapshotGroup(_Strict):
    key: Key
    name: Name = Field(examples=["Groep 5a"])
    year_level: YearLevel | None = Field(
        default=None, description="Year level of a class; composite groups have none."
    )
    is_composite: bool = Field(
        default=False,
        description="A composite group (samengestelde groep) across classes, e.g. a reading "
        "group. A student has one main (non-composite) group and any composite groups.",
    )
    description: Annotated[str, StringConstraints(max_length=500)] | None = None


class SnapshotStudent(_Strict):
    key: Key
    last_name: Name = Field(examples=["Jansen"])
    name_prefix: ShortText | None = Field(default=None, description="Voorvoegsel, e.g. `de`.")
    first_names: Name | None = None
    initials: ShortText | None = None
    given_name: ShortText | None = Field(default=None, description="Roepnaam.")
    birth_date: dt.date | None = None
    gender: Gender | None = None
    year_level: YearLevel | None = None
    email: Email | None = None
    group: Key | None = Field(default=None, description="Key of the student's main group.")
    composite_groups: list[Key] = Field(
        max_length=MAX_ITEMS,
        default_factory=list,
        description="Keys of the composite groups the student is in.",
    )


class GuardianOf(_Strict):
    student: Key = Field(description="Key of a student in this snapshot.")
    relation: Relation | None = None


class SnapshotGuardian(_Strict):
    key: Key
    last_name: Name
    name_prefix: ShortText | None = None
    initials: ShortText | None = None
    given_name: ShortText | None = None
    email: Email | None = Field(
        default=None, description="Required for activation (R1): every guardian needs one."
    )
    phone: Phone | None = None
    students: list[GuardianOf] = Field(
        min_length=1,
        max_length=MAX_ITEMS,
        description="The students this guardian is a parent or caregiver of.",
    )


class SnapshotStaff(_Strict):
    key: Key
    last_name: Name
    name_prefix: ShortText | None = None
    initials: ShortText | None = None
    given_name: ShortText | None = None
    email: Email | None = None
    roles: list[ShortText] = Field(
        default_factory=list, max_length=100, description="EDEXml `rol` values."
    )
    groups: list[Key] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Keys of the groups taught."
    )
    active: bool = Field(
        default=True,
        description="Whether ESIS lists the staff member as active; absent staff are not "
        "active either (R9 applies at the year transition).",
    )


def _name_fields_first(*models: type[BaseModel]) -> None:
    """Each model's field names put in its class's table of instance attribute names, before
    any instance exists. CPython (3.11) shares one such table among the instances of a class
    and keeps their attributes in small arrays under it, but stops adding names to it once a
    few dozen instances have been made: pydantic's instances, whose `__dict__` it sets whole,
    add none, so without this a process that validated a JSON snapshot first would give the
    EDEXml reader's models (`edexml_nodes.assemble`) a dict each again."""
    for model in models:
        first = model.__new__(model)
        for name in model.model_fields:
            object.__setattr__(first, name, None)


_name_fields_first(SnapshotGroup, SnapshotStudent, GuardianOf, SnapshotGuardian, SnapshotStaff)


class EsisSnapshot(_Strict):
    """A full snapshot of one school in ESIS. Everything ESIS knows; absence means absence."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "school": {
                        "brin": "12AB",
                        "branch": "00",
                        "school_year": "2026-2027",
                        "generated_at": "2026-11-27T16:55:00+01:00",
                    },
                    "groups": [
                        {"key": "G5A", "name": "Groep 5a", "year_level": 5},
                        {"key": "LEES1", "name": "Leesgroep 1", "is_composite": True},
                    ],
                    "students": [
                        {
                            "key": "00001",
                            "last_name": "Jansen",
                            "name_prefix": "de",
                            "given_name": "Sanne",
                            "first_names": "Sanne Maria",
                            "birth_date": "2017-03-14",
                            "gender": "female",
                            "year_level": 5,
                            "group": "G5A",
                            "composite_groups": ["LEES1"],
                        }
                    ],
                    "guardians": [
                        {
                            "key": "V0001",
                            "last_name": "Jansen",
                            "name_prefix": "de",
                            "initials": "A",
                            "given_name": "Anna",
                            "email": "anna.dejansen@example.nl",
                            "phone": "+31612345678",
                            "students": [{"student": "00001", "relation": "mother"}],
                        }
                    ],
                    "staff": [
                        {
                            "key": "LK01",
                            "last_name": "Bakker",
                            "initials": "P",
                            "email": "p.bakker@school.example.nl",
                            "roles": ["leerkracht"],
                            "groups": ["G5A"],
                        }
                    ],
                }
            ]
        },
    )

    school: SnapshotSchool
    carries: list[Kind] | None = Field(
        default=None,
        max_length=20,
        description="The kinds this snapshot carries. Without it, the kinds whose list is "
        "present (even empty) are carried, with the links written in them whose two ends are "
        "carried. A kind not carried is left exactly as it is: nothing is marked missing in "
        "ESIS, changed or removed for it (ESIS leads for what ESIS sends).",
        examples=[["groups", "students", "student_groups", "staff", "staff_groups"]],
    )
    # `fail_fast`: a list stops at its first refused record. The record lists of a JSON body
    # are validated by `parsing` one by one, where it has no effect; it bounds the errors of a
    # body that `parsing._whole` validates whole (its records would each add theirs).
    groups: list[SnapshotGroup] = Field(default_factory=list, max_length=MAX_ITEMS, fail_fast=True)
    students: list[SnapshotStudent] = Field(
        default_factory=list, max_length=MAX_ITEMS, fail_fast=True
    )
    guardians: list[SnapshotGuardian] = Field(
        default_factory=list, max_length=MAX_ITEMS, fail_fast=True
    )
    staff: list[SnapshotStaff] = Field(default_factory=list, max_length=MAX_ITEMS, fail_fast=True)

    @model_validator(mode="after")
    def _carries_what_it_holds(self) -> EsisSnapshot:
        if self.carries is None:
            return self
        carried = set(self.carries)
        for link, ends in LINK_ENDS.items():
            missing = [end.value for end in ends if end not in carried]
            if link in carried and missing:
                raise ValueError(
                    f"carries {link.value} but not {' and '.join(missing)}: a link needs both "
                    "of its ends in the snapshot"
                )
        for kind in RECORD_KINDS:
            if kind not in carried and getattr(self, kind.value):
                raise ValueError(f"{kind.value} are listed but not in carries")
        return self

    @property
    def scope(self) -> frozenset[Kind]:
        """The kinds this snapshot carries (explicit `carries`, or derived from its lists)."""
        if self.carries is not None:
            return frozenset(self.carries)
        return derive_scope(self.model_fields_set)
