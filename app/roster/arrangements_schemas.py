"""API shapes of class arrangements (R11): the school's own divisions of students into classes."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.roster.schemas import Name, Text


class Placement(BaseModel):
    student_id: uuid.UUID
    class_name: Annotated[str, StringConstraints(min_length=1, max_length=100)]


class ClassArrangementFields(BaseModel):
    name: Name | None = None
    description: Text | None = None
    school_year: (
        Annotated[str, StringConstraints(min_length=9, max_length=9, pattern=r"^\d{4}-\d{4}$")]
        | None
    ) = None


class ClassArrangementCreate(ClassArrangementFields):
    """R11: made here, never from ESIS; flagged for review at the year transition."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Indeling 2027-2028",
                    "school_year": "2027-2028",
                    "placements": [
                        {"student_id": "8f7e0a52-4c4c-4c39-9a57-1b0c2a1d4e11", "class_name": "6b"}
                    ],
                }
            ]
        },
    )

    name: Name
    placements: list[Placement] = Field(default_factory=list, max_length=5000)


class ClassArrangementUpdate(ClassArrangementFields):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"description": "checked in June"}]}
    )

    placements: list[Placement] | None = Field(default=None, max_length=5000)


class ClassArrangementPublic(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    school_year: str | None
    review_reason: str | None = Field(description="R11: why the school must check it.")
    placements: list[Placement]
    created_by: str | None
    deleted_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int


class ClassArrangementList(BaseModel):
    items: list[ClassArrangementPublic]
    next_cursor: str | None
