"""What connection health remembers beyond the pull history: certificate warnings given."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlmodel import Field, SQLModel

from app.db import UTCDateTime


class ConnectionHealth(SQLModel, table=True):
    __tablename__ = "connection_health"

    school_id: uuid.UUID = Field(primary_key=True, foreign_key="school.id", ondelete="CASCADE")
    # The certificate warned about (its expiry) and the smallest threshold already announced
    # for it (30, 7, 1 days), so each threshold is announced once per certificate.
    cert_not_after: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    cert_warned_days: int | None = Field(default=None)
    # The last successful fetch. A fetch whose answer equals the last snapshot makes no new
    # run (it is answered with the run that applied it), yet it proves the connection works.
    last_success_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
