"""Webhook API shapes. The secret appears only in the answer to create and rotate."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

WebhookUrl = Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2000)]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"url": "https://mijnschoolinfo.example/hooks/esis", "description": "MSI"}]
        },
    )

    url: WebhookUrl = Field(
        description="Where to deliver: https (plain http only on loopback); a host that "
        "resolves to a private or link-local address is refused."
    )
    description: str | None = Field(default=None, max_length=500)


class WebhookPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    description: str | None
    created_at: dt.datetime
    created_by: str
    enabled: bool = Field(description="False once disabled after repeated failed deliveries.")
    disabled_at: dt.datetime | None
    disabled_reason: str | None
    delivered_seq: int = Field(description="The last event (`seq`) delivered.")
    failures: int = Field(description="Failed attempts since the last delivered event.")
    next_attempt_at: dt.datetime | None = Field(description="When a failed delivery is retried.")


class WebhookWithSecret(WebhookPublic):
    secret: str = Field(
        description="The signing secret (`whsec_...`), shown only now: verify the "
        "`webhook-signature` header with it (Standard Webhooks)."
    )


class WebhookList(BaseModel):
    items: list[WebhookPublic]


class DeliveryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    event_seq: int
    message_id: str = Field(description="The `webhook-id` sent: the same on every retry.")
    attempt: int
    attempted_at: dt.datetime
    outcome: str = Field(description="`delivered` (a 2xx answer) or `failed`.")
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryList(BaseModel):
    items: list[DeliveryPublic]
    next_cursor: str | None
