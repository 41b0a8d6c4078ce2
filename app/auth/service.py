"""API keys: random secrets, stored as SHA-256 only, shown once."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlmodel import col, select

from app.auth.models import ApiKey, Role
from app.db import utcnow
from app.errors import NotFound

KEY_PREFIX = "esk_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, role and school (None for the operator)."""

    key_id: uuid.UUID
    role: Role
    school_id: uuid.UUID | None

    @property
    def actor(self) -> str:
        return f"key:{self.key_id}"


def hash_secret(secret: str) -> str:
    # Secrets carry 256 bits of randomness, so a fast hash is safe; no salt is needed.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    *,
    session: Session,
    role: Role,
    name: str,
    school_id: uuid.UUID | None,
    created_by: str | None,
) -> tuple[ApiKey, str]:
    """Make a key; returns the stored row and the secret, which is not kept anywhere."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        school_id=school_id,
        role=role.value,
        name=name,
        prefix=secret[:12],
        secret_hash=hash_secret(secret),
        created_by=created_by,
    )
    session.add(key)
    session.flush()
    return key, secret


def authenticate(*, session: Session, secret: str) -> Principal | None:
    if not secret.startswith(KEY_PREFIX):
        return None
    row = session.execute(
        select(ApiKey.id, ApiKey.role, ApiKey.school_id, ApiKey.secret_hash).where(
            ApiKey.secret_hash == hash_secret(secret),
            ApiKey.revoked_at.is_(None),  # type: ignore[union-attr]
        )
    ).one_or_none()
    if row is None or not secrets.compare_digest(row.secret_hash, hash_secret(secret)):
        return None
    return Principal(key_id=row.id, role=Role(row.role), school_id=row.school_id)


def list_keys(*, session: Session, school_id: uuid.UUID) -> list[ApiKey]:
    return list(
        session.scalars(
            select(ApiKey).where(ApiKey.school_id == school_id).order_by(col(ApiKey.created_at))
        )
    )


def revoke_key(*, session: Session, school_id: uuid.UUID, key_id: uuid.UUID) -> None:
    result = session.execute(
        update(ApiKey)
        .where(
            col(ApiKey.id) == key_id,
            col(ApiKey.school_id) == school_id,
            col(ApiKey.revoked_at).is_(None),
        )
        .values(revoked_at=utcnow())
    )
    if result.rowcount == 0:  # type: ignore[attr-defined,unused-ignore]
        raise NotFound(f"no active API key {key_id} at this school")


def operator_key_exists(*, session: Session) -> bool:
    return (
        session.scalar(select(ApiKey.id).where(ApiKey.role == Role.OPERATOR.value).limit(1))
        is not None
    )
