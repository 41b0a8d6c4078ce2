"""Provenance columns shared by every person, group and link (see docs/data-model.md).

Where a record came from (`source`), the key ESIS knows it by, the last values ESIS sent,
which fields a user edited locally (by whom, when), since when ESIS no longer lists it, and
its soft-delete state. The merge (sync/service.py) reads and writes these; the roster API
shows them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, new_id, utcnow


class Source(StrEnum):
    ESIS = "esis"
    EDEXML = "edexml"
    LOCAL = "local"
    CONTACTS = "contacts"  # a guardian contact file uploaded by an admin


SOURCE_CHECK = "source IN ('esis', 'edexml', 'local', 'contacts')"


def source_check() -> CheckConstraint:
    return CheckConstraint(SOURCE_CHECK, name="source")


class SchoolScoped(SQLModel):
    """Every table of school data is keyed by (school_id, id): distributable by school."""

    school_id: uuid.UUID = Field(primary_key=True, foreign_key="school.id", ondelete="CASCADE")
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)


class LinkProvenance(SchoolScoped):
    # No foreign key of its own to the school: the link's keys to both ends include
    # school_id, and each end has its key to the school, so the school exists, and deleting
    # it removes the links through their ends. PostgreSQL checked that key once more for
    # every new link (about 4,000 of the 22,000 checks of a 1,000-student initial load).
    school_id: uuid.UUID = Field(primary_key=True)
    source: str = Field(max_length=16)
    # Last values ESIS sent for the link's own attributes (e.g. a guardian's relation).
    esis_values: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    # field -> {"by": actor, "at": ISO time}: fields a user changed through the API.
    local_edits: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    missing_in_esis_since: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    deleted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    deleted_by: str | None = Field(default=None, max_length=64)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RecordProvenance(LinkProvenance):
    school_id: uuid.UUID = Field(primary_key=True, foreign_key="school.id", ondelete="CASCADE")
    # The LAS key (EDEXml @key): unique per school, never reused (esis-protocol.md).
    esis_key: str | None = Field(default=None, max_length=256)
    # Set when purge removed the personal data after the retention window: the row stays as
    # a tombstone so that the next ESIS snapshot does not bring the record back (R6).
    tombstoned_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Incremented by every write; the API's ETag.
    version: int = Field(default=1)
    # Written by the merge only: a digest of the values ESIS sent and of `version`, set when
    # after the merge the record equals those values in every field ESIS sends (else NULL).
    # A later snapshot with the same values, at the same version, settles the record with
    # one comparison without its fields being read (sync/digests.py). Every other write of
    # a field ESIS sends bumps `version`, which is what makes the digest stale.
    esis_digest: str | None = Field(default=None, max_length=32)
