from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import CheckConstraint
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, new_id, utcnow


class Role(StrEnum):
    ESIS = "esis"
    READER = "reader"
    ADMIN = "admin"
    OPERATOR = "operator"


class ApiKey(SQLModel, table=True):
    """A bearer key. Only the SHA-256 of its secret is stored; the secret is shown once."""

    __tablename__ = "api_key"
    __table_args__ = (
        CheckConstraint("role IN ('esis', 'reader', 'admin', 'operator')", name="role"),
        # Operator keys belong to the platform, every other key to exactly one school.
        CheckConstraint(
            "(role = 'operator' AND school_id IS NULL) OR "
            "(role <> 'operator' AND school_id IS NOT NULL)",
            name="operator_has_no_school",
        ),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    school_id: uuid.UUID | None = Field(
        default=None, foreign_key="school.id", ondelete="CASCADE", index=True
    )
    role: str = Field(max_length=16)
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=16, description="First characters, to recognise a key")
    secret_hash: str = Field(max_length=64, unique=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: str | None = Field(default=None, max_length=64)
    revoked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
