"""Snapshots as received, the runs that applied them, and open drift (R5)."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    UniqueConstraint,
)
from sqlmodel import Field

from app.db import UTCDateTime, utcnow
from app.provenance import SchoolScoped


class RunStatus(StrEnum):
    RECEIVED = "received"  # stored, not yet applied (a crash here is picked up on restart)
    STORED = "stored"  # coupling inactive: kept for readiness and activation (R1, R2)
    APPLIED = "applied"
    FAILED = "failed"
    HELD = "held"  # above a guard (year transition, change guard) or paused: for an admin
    REJECTED = "rejected"  # held by the change guard, rejected by an admin: nothing applied
    NO_CHANGES = "no_changes"  # ESIS answered that nothing changed (UWLR geenwijzigingen)


class RunKind(StrEnum):
    MERGE = "merge"
    ACTIVATION = "activation"
    YEAR_TRANSITION = "year_transition"  # an admin's start or confirmation of a transition
    IMPORT = "import"  # an EDEXml file imported before activation


class Snapshot(SchoolScoped, table=True):
    """A full ESIS snapshot exactly as received (the raw body), stored before it is applied."""

    __tablename__ = "snapshot"
    __table_args__ = (
        Index(None, "school_id", "body_sha256"),
        UniqueConstraint("school_id", "idempotency_key"),
        CheckConstraint("origin IN ('push', 'pull', 'import')", name="origin"),
        Index(None, "school_id", "received_at"),
    )

    origin: str = Field(max_length=8)
    content_type: str = Field(max_length=100)
    body: bytes = Field(sa_type=LargeBinary)
    body_sha256: str = Field(max_length=64)
    idempotency_key: str | None = Field(default=None, max_length=200)
    school_year: str | None = Field(default=None, max_length=9)
    generated_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    received_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    received_by: str | None = Field(default=None, max_length=64)


class SyncRun(SchoolScoped, table=True):
    """What one snapshot did: counts per entity, warnings, or the error that stopped it."""

    __tablename__ = "sync_run"
    __table_args__ = (
        ForeignKeyConstraint(
            ["school_id", "snapshot_id"],
            ["snapshot.school_id", "snapshot.id"],
            ondelete="CASCADE",
        ),
        CheckConstraint(
            "status IN ('received', 'stored', 'applied', 'failed', 'held', 'no_changes', "
            "'rejected')",
            name="status",
        ),
        CheckConstraint(
            "kind IN ('merge', 'activation', 'year_transition', 'import')", name="kind"
        ),
        Index(None, "school_id", "started_at"),
    )

    snapshot_id: uuid.UUID | None = Field(default=None)
    kind: str = Field(default=RunKind.MERGE.value, max_length=16)
    origin: str = Field(max_length=8)
    status: str = Field(default=RunStatus.RECEIVED.value, max_length=16)
    started_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    counts: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    warnings: list[Any] = Field(default_factory=list, sa_type=JSON)
    error: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    report: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    actor: str | None = Field(default=None, max_length=64)
    # Records the snapshot held with a value that cannot be used, left as they are: each
    # {entity, key, field, reason}. A run with any is "applied with warnings".
    kept: list[Any] = Field(default_factory=list, sa_type=JSON)


class DriftItem(SchoolScoped, table=True):
    """R5: an ESIS change not applied. Closed drift is deleted; the event feed keeps history."""

    __tablename__ = "drift_item"
    __table_args__ = (
        UniqueConstraint("school_id", "entity", "record_id", "field"),
        CheckConstraint(
            "entity IN ('group', 'student', 'guardian', 'staff', 'student_guardian')",
            name="entity",
        ),
    )

    entity: str = Field(max_length=32)
    record_id: uuid.UUID
    field: str = Field(max_length=64)
    our_value: Any = Field(default=None, sa_type=JSON, nullable=True)
    esis_value: Any = Field(default=None, sa_type=JSON, nullable=True)
    first_seen_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    first_run_id: uuid.UUID | None = Field(default=None)
    last_run_id: uuid.UUID | None = Field(default=None)


class KeyChangeStatus(StrEnum):
    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    REJECTED = "rejected"  # the next snapshot treats the two as missing + new
    SUPERSEDED = "superseded"  # another proposal for the record or the key was accepted


class KeyChange(SchoolScoped, table=True):
    """A proposal: ESIS dropped `old_key` and, in the same snapshot, sent `new_key` for what
    looks like the same person. Only an admin's acceptance moves the record to the new key."""

    __tablename__ = "key_change"
    __table_args__ = (
        UniqueConstraint("school_id", "entity", "record_id", "new_key"),
        CheckConstraint("entity IN ('student', 'guardian', 'staff')", name="entity"),
        CheckConstraint(
            "status IN ('proposed', 'accepted', 'rejected', 'superseded')", name="status"
        ),
        CheckConstraint("matched_by IN ('name_birth_date', 'email')", name="matched_by"),
        Index(None, "school_id", "status"),
    )

    entity: str = Field(max_length=16)
    record_id: uuid.UUID
    old_key: str = Field(max_length=256)
    new_key: str = Field(max_length=256)
    matched_by: str = Field(max_length=16)
    status: str = Field(default=KeyChangeStatus.PROPOSED.value, max_length=16)
    proposed_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    run_id: uuid.UUID | None = Field(default=None)  # the run that first proposed it
    decided_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by: str | None = Field(default=None, max_length=64)
