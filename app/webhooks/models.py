"""A school's webhook endpoints and the log of every delivery attempt."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, CheckConstraint, ForeignKeyConstraint, Index, LargeBinary
from sqlmodel import Field

from app.db import UTCDateTime, utcnow
from app.provenance import SchoolScoped


class WebhookEndpoint(SchoolScoped, table=True):
    __tablename__ = "webhook_endpoint"

    url: str = Field(max_length=2000)
    description: str | None = Field(default=None, max_length=500)
    # Fernet-encrypted (app/crypto.py): signing needs the secret itself, so it cannot be hashed.
    secret_encrypted: bytes = Field(sa_type=LargeBinary)
    # After a rotation the old secret signs too, for a grace period, so that a receiver can
    # switch without losing a delivery (Standard Webhooks allows several signatures).
    previous_secret_encrypted: bytes | None = Field(default=None, sa_type=LargeBinary)
    previous_secret_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: str = Field(max_length=64)
    disabled_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    disabled_reason: str | None = Field(default=None, max_length=300)
    # The school's last event delivered: events go out one at a time, in `seq` order.
    delivered_seq: int = Field(default=0, sa_type=BigInteger)
    failures: int = Field(default=0)
    next_attempt_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    # A worker leases the endpoint while it delivers, so two workers never deliver at once.
    claimed_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookDelivery(SchoolScoped, table=True):
    """One attempt to deliver one event to one endpoint."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        ForeignKeyConstraint(
            ["school_id", "endpoint_id"],
            ["webhook_endpoint.school_id", "webhook_endpoint.id"],
            ondelete="CASCADE",
        ),
        Index(None, "school_id", "endpoint_id", "attempted_at"),
        CheckConstraint("outcome IN ('delivered', 'failed')", name="outcome"),
    )

    endpoint_id: uuid.UUID
    event_seq: int = Field(sa_type=BigInteger)
    message_id: str = Field(max_length=100)
    attempt: int
    attempted_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    outcome: str = Field(max_length=16)
    status_code: int | None = Field(default=None)
    error: str | None = Field(default=None, max_length=300)
    duration_ms: int = Field(default=0)
