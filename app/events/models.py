"""The audit trail and change feed: one row per change, whichever path made it."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, Index
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow


class Event(SQLModel, table=True):
    __tablename__ = "event"
    __table_args__ = (Index(None, "school_id", "entity", "entity_id"),)

    # No foreign key to the school (migration b2c3d4e5f6a7): `take_event_numbers` proves the
    # school is there and keeps it there until the commit, and a trigger on the school
    # deletes its events with it.
    school_id: uuid.UUID = Field(primary_key=True)
    # Per-school sequence taken from school.event_seq: gap-free and in commit order.
    seq: int = Field(primary_key=True, sa_type=BigInteger)
    occurred_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    entity: str = Field(max_length=32)
    entity_id: uuid.UUID | None = Field(default=None)
    kind: str = Field(max_length=32)
    changes: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    source: str = Field(max_length=16)
    actor: str | None = Field(default=None, max_length=64)
    sync_run_id: uuid.UUID | None = Field(default=None)
