"""ESIS-side secrets of a school: push signing secrets (and the pull connection)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import LargeBinary
from sqlmodel import Field

from app.db import UTCDateTime, utcnow
from app.provenance import SchoolScoped


class SigningSecret(SchoolScoped, table=True):
    """A Standard Webhooks signing secret for pushes; several may be active (rotation)."""

    __tablename__ = "signing_secret"

    # Fernet-encrypted (app/crypto.py): HMAC needs the secret itself, so it cannot be hashed.
    encrypted: bytes = Field(sa_type=LargeBinary)
    prefix: str = Field(max_length=16)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: str = Field(max_length=64)
    revoked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
