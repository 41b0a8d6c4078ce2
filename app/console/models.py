"""A signed-in console browser: only the hash of its session token is stored."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, new_id, utcnow


class ConsoleSession(SQLModel, table=True):
    """A session made from an API key; the key itself never reaches the browser."""

    __tablename__ = "console_session"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    # Role and school are read through the key on every request, so revoking the key ends
    # the session too.
    key_id: uuid.UUID = Field(foreign_key="api_key.id", ondelete="CASCADE", index=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    # A one-shot message for the page after a form's redirect (post/redirect/get).
    flash: dict[str, Any] | None = Field(default=None, sa_type=JSON, nullable=True)
