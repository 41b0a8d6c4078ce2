"""The queries of API keys (stored as hashes; see `app.auth.service`)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlmodel import col, select

from app.auth.models import ApiKey, Role
from app.db import utcnow


def active_key_by_hash(*, session: Session, secret_hash: str) -> Any | None:
    """(id, role, school_id, secret_hash) of the unrevoked key with this hash, or None."""
    return session.execute(
        select(ApiKey.id, ApiKey.role, ApiKey.school_id, ApiKey.secret_hash).where(
            ApiKey.secret_hash == secret_hash,
            col(ApiKey.revoked_at).is_(None),
        )
    ).one_or_none()


def keys_of_school(*, session: Session, school_id: uuid.UUID) -> list[ApiKey]:
    return list(
        session.scalars(
            select(ApiKey).where(ApiKey.school_id == school_id).order_by(col(ApiKey.created_at))
        )
    )


def revoke(*, session: Session, key_id: uuid.UUID, school_id: uuid.UUID | None = None) -> bool:
    """Revoke the active key `key_id` (of `school_id`, when given); False when there is none."""
    conditions = [col(ApiKey.id) == key_id, col(ApiKey.revoked_at).is_(None)]
    if school_id is not None:
        conditions.append(col(ApiKey.school_id) == school_id)
    result = session.execute(update(ApiKey).where(*conditions).values(revoked_at=utcnow()))
    return bool(result.rowcount)  # type: ignore[attr-defined,unused-ignore]


def operator_key_exists(*, session: Session) -> bool:
    return (
        session.scalar(select(ApiKey.id).where(ApiKey.role == Role.OPERATOR.value).limit(1))
        is not None
    )
