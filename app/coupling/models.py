"""ESIS-side secrets of a school: push signing secrets (and the pull connection)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, LargeBinary, Text, UniqueConstraint
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


class EsisConnection(SchoolScoped, table=True):
    """Where and how to fetch a school from ESIS's UWLR web service. Secrets are encrypted."""

    __tablename__ = "esis_connection"
    __table_args__ = (UniqueConstraint("school_id"),)

    url: str = Field(max_length=500)
    # Fernet-encrypted JSON: the client certificate and key (PEM), and the autorisatiesleutel.
    identity_encrypted: bytes = Field(sa_type=LargeBinary)
    secret_encrypted: bytes = Field(sa_type=LargeBinary)
    cert_subject: str = Field(max_length=500)
    cert_not_after: dt.datetime = Field(sa_type=UTCDateTime)
    ca_pem: str | None = Field(default=None, sa_type=Text)
    klantcode: str = Field(max_length=100)
    klantnaam: str = Field(max_length=200)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_by: str = Field(max_length=64)
    # The daily pull (R3): a worker leases a school until `claimed_until`; a finished pull
    # records the school-local day, so each school is pulled once a day by one worker, and a
    # worker that dies only delays the pull until its lease runs out.
    last_pulled_on: dt.date | None = Field(default=None)
    claimed_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class ContactFile(SchoolScoped, table=True):
    """The latest guardian contact file uploaded before activation, its rows resolved to
    student keys: it feeds readiness (R1) and is matched at activation (R2). Only for
    schools whose ESIS sends no guardians; after activation a file is applied at once."""

    __tablename__ = "contact_file"
    __table_args__ = (UniqueConstraint("school_id"),)

    # [{"line", "student_key", "relation", "last_name", ..., "email", "phone"}]
    rows: list[Any] = Field(default_factory=list, sa_type=JSON)
    uploaded_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    uploaded_by: str = Field(max_length=64)
