"""Tables of the roster: groups, students, guardians, staff, their links, class arrangements.

Every table is keyed by (school_id, id) and every unique key and foreign key between them
includes school_id, so the schema can be distributed by school (docs/data-model.md).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKeyConstraint, Index, UniqueConstraint
from sqlmodel import Field

from app.db import UTCDateTime, utcnow
from app.provenance import LinkProvenance, RecordProvenance, SchoolScoped, source_check

GENDERS = ("unknown", "male", "female", "unspecified")
RELATIONS = ("father", "mother", "caregiver", "legal_guardian", "other")


def _fk(column: str, table: str) -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["school_id", column], [f"{table}.school_id", f"{table}.id"], ondelete="CASCADE"
    )


class Group(RecordProvenance, table=True):
    """An ESIS group (class or composite group) or a local one (R10)."""

    __tablename__ = "school_group"
    __table_args__ = (
        UniqueConstraint("school_id", "esis_key"),
        source_check(),
        CheckConstraint(
            "year_level IS NULL OR (year_level >= 0 AND year_level <= 99)", name="year_level"
        ),
    )

    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=500)
    year_level: int | None = Field(default=None)
    is_composite: bool = Field(default=False)
    school_year: str | None = Field(default=None, max_length=9)
    # R10: set at the year transition for local groups the school must remove by hand.
    review_reason: str | None = Field(default=None, max_length=200)


class Student(RecordProvenance, table=True):
    __tablename__ = "student"
    __table_args__ = (
        UniqueConstraint("school_id", "esis_key"),
        source_check(),
        CheckConstraint(
            "gender IS NULL OR gender IN ('unknown', 'male', 'female', 'unspecified')",
            name="gender",
        ),
        CheckConstraint(
            "year_level IS NULL OR (year_level >= 0 AND year_level <= 99)", name="year_level"
        ),
    )

    # Personal fields are nullable only so that purge can empty a tombstone.
    last_name: str | None = Field(default=None, max_length=200)
    name_prefix: str | None = Field(default=None, max_length=100)
    first_names: str | None = Field(default=None, max_length=200)
    initials: str | None = Field(default=None, max_length=100)
    given_name: str | None = Field(default=None, max_length=100)
    birth_date: dt.date | None = Field(default=None)
    gender: str | None = Field(default=None, max_length=16)
    year_level: int | None = Field(default=None)
    email: str | None = Field(default=None, max_length=320)


class Guardian(RecordProvenance, table=True):
    """A parent or caregiver ("ouder/verzorger"), linked to 1..n students."""

    __tablename__ = "guardian"
    __table_args__ = (UniqueConstraint("school_id", "esis_key"), source_check())

    last_name: str | None = Field(default=None, max_length=200)
    name_prefix: str | None = Field(default=None, max_length=100)
    initials: str | None = Field(default=None, max_length=100)
    given_name: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=50)


class Staff(RecordProvenance, table=True):
    __tablename__ = "staff"
    __table_args__ = (UniqueConstraint("school_id", "esis_key"), source_check())

    last_name: str | None = Field(default=None, max_length=200)
    name_prefix: str | None = Field(default=None, max_length=100)
    initials: str | None = Field(default=None, max_length=100)
    given_name: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=320)
    roles: list[str] = Field(default_factory=list, sa_type=JSON)
    # ESIS's own statement; a staff member absent from ESIS is not active either (R9).
    active: bool = Field(default=True)


class StudentGroup(LinkProvenance, table=True):
    """A student in a group; the key ESIS knows the link by is the pair of keys."""

    __tablename__ = "student_group"
    __table_args__ = (
        _fk("student_id", "student"),
        _fk("group_id", "school_group"),
        UniqueConstraint("school_id", "student_id", "group_id"),
        Index(None, "school_id", "group_id"),
        source_check(),
    )

    student_id: uuid.UUID
    group_id: uuid.UUID


class StudentGuardian(LinkProvenance, table=True):
    __tablename__ = "student_guardian"
    __table_args__ = (
        _fk("student_id", "student"),
        _fk("guardian_id", "guardian"),
        UniqueConstraint("school_id", "student_id", "guardian_id"),
        Index(None, "school_id", "guardian_id"),
        source_check(),
        CheckConstraint(
            "relation IS NULL OR relation IN "
            "('father', 'mother', 'caregiver', 'legal_guardian', 'other')",
            name="relation",
        ),
    )

    student_id: uuid.UUID
    guardian_id: uuid.UUID
    relation: str | None = Field(default=None, max_length=16)


class StaffGroup(LinkProvenance, table=True):
    __tablename__ = "staff_group"
    __table_args__ = (
        _fk("staff_id", "staff"),
        _fk("group_id", "school_group"),
        UniqueConstraint("school_id", "staff_id", "group_id"),
        Index(None, "school_id", "group_id"),
        source_check(),
    )

    staff_id: uuid.UUID
    group_id: uuid.UUID


class ClassArrangement(SchoolScoped, table=True):
    """R11: a division of students into classes made locally; never from ESIS."""

    __tablename__ = "class_arrangement"
    __table_args__ = (UniqueConstraint("school_id", "name", "school_year"),)

    name: str = Field(max_length=200)
    school_year: str | None = Field(default=None, max_length=9)
    description: str | None = Field(default=None, max_length=500)
    # R11: set at the year transition; the school checks the arrangement against the new year.
    review_reason: str | None = Field(default=None, max_length=200)
    created_by: str | None = Field(default=None, max_length=64)
    local_edits: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    deleted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    deleted_by: str | None = Field(default=None, max_length=64)
    version: int = Field(default=1)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ClassPlacement(SchoolScoped, table=True):
    """One student's class within a class arrangement."""

    __tablename__ = "class_placement"
    __table_args__ = (
        _fk("arrangement_id", "class_arrangement"),
        _fk("student_id", "student"),
        UniqueConstraint("school_id", "arrangement_id", "student_id"),
        Index(None, "school_id", "student_id"),
    )

    arrangement_id: uuid.UUID
    student_id: uuid.UUID
    class_name: str = Field(max_length=100)
