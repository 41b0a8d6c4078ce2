"""Registering, rotating and removing a school's webhook endpoints."""

from __future__ import annotations

import datetime as dt
import uuid
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from app.config import Settings
from app.crypto import decrypt, encrypt
from app.db import utcnow
from app.errors import Unprocessable
from app.events.service import Change, emit
from app.schools import repository as schools
from app.webhooks import repository, signing
from app.webhooks.addresses import UnsafeUrl, resolve
from app.webhooks.models import WebhookEndpoint
from app.webhooks.schemas import WebhookCreate, WebhookPublic, WebhookWithSecret

# How long the secret before a rotation keeps signing beside the new one.
ROTATION_GRACE = dt.timedelta(hours=24)


def _host(url: str) -> str | None:
    """Events name the host only: a URL's path or query may carry the receiver's token."""
    return urlsplit(url).hostname


def check_url(url: str) -> None:
    try:
        resolve(url)
    except UnsafeUrl as exc:
        raise Unprocessable(f"url: {exc}", errors=[{"field": "url", "message": str(exc)}]) from None


def public(row: WebhookEndpoint) -> WebhookPublic:
    return WebhookPublic.model_validate({**row.model_dump(), "enabled": row.disabled_at is None})


def _with_secret(row: WebhookEndpoint, secret: str) -> WebhookWithSecret:
    return WebhookWithSecret(**public(row).model_dump(), secret=secret)


def create(
    *, session: Session, settings: Settings, school_id: uuid.UUID, data: WebhookCreate, actor: str
) -> WebhookWithSecret:
    """Register an endpoint; it receives the events from its own creation on."""
    check_url(data.url)
    secret = signing.new_secret()
    row = WebhookEndpoint(
        school_id=school_id,
        url=data.url,
        description=data.description,
        secret_encrypted=encrypt(settings, secret.encode()),
        created_by=actor,
    )
    session.add(row)
    session.flush()
    emit(
        session=session,
        school_id=school_id,
        source="api",
        actor=actor,
        changes=[Change("webhook_endpoint", row.id, "created", {"host": _host(data.url)})],
    )
    # emit() holds the school's row lock: its counter now ends with the creation event,
    # which is the first one this endpoint receives.
    seq = repository.event_seq(session=session, school_id=school_id)
    row.delivered_seq = int(seq or 1) - 1
    session.flush()
    return _with_secret(row, secret)


def rotate_secret(
    *,
    session: Session,
    settings: Settings,
    school_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    actor: str,
) -> WebhookWithSecret:
    """A new secret; the old one keeps signing beside it for ROTATION_GRACE."""
    schools.lock(session=session, school_id=school_id)
    row = repository.get(session=session, school_id=school_id, endpoint_id=endpoint_id)
    secret = signing.new_secret()
    row.previous_secret_encrypted = row.secret_encrypted
    row.previous_secret_until = utcnow() + ROTATION_GRACE
    row.secret_encrypted = encrypt(settings, secret.encode())
    emit(
        session=session,
        school_id=school_id,
        source="api",
        actor=actor,
        changes=[Change("webhook_endpoint", row.id, "secret-rotated")],
    )
    session.flush()
    return _with_secret(row, secret)


def enable(
    *, session: Session, school_id: uuid.UUID, endpoint_id: uuid.UUID, actor: str
) -> WebhookEndpoint:
    """Turn a disabled endpoint on again; it resumes where it stopped."""
    schools.lock(session=session, school_id=school_id)
    row = repository.get(session=session, school_id=school_id, endpoint_id=endpoint_id)
    if row.disabled_at is not None:
        check_url(row.url)
        row.disabled_at, row.disabled_reason = None, None
        row.failures, row.next_attempt_at = 0, None
        emit(
            session=session,
            school_id=school_id,
            source="api",
            actor=actor,
            changes=[Change("webhook_endpoint", row.id, "enabled")],
        )
        session.flush()
    return row


def delete(*, session: Session, school_id: uuid.UUID, endpoint_id: uuid.UUID, actor: str) -> None:
    schools.lock(session=session, school_id=school_id)
    row = repository.get(session=session, school_id=school_id, endpoint_id=endpoint_id)
    repository.delete_endpoint(session=session, endpoint=row)
    emit(
        session=session,
        school_id=school_id,
        source="api",
        actor=actor,
        changes=[
            Change(
                "webhook_endpoint",
                endpoint_id,
                "removed",
                {"host": _host(row.url)},
            )
        ],
    )
    session.flush()


def signing_secrets(settings: Settings, row: WebhookEndpoint, now: dt.datetime) -> list[str]:
    current = [decrypt(settings, row.secret_encrypted).decode()]
    if (
        row.previous_secret_encrypted is not None
        and row.previous_secret_until is not None
        and row.previous_secret_until > now
    ):
        current.append(decrypt(settings, row.previous_secret_encrypted).decode())
    return current
