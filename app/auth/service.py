"""API keys: random secrets, stored as SHA-256 only, shown once."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.auth import repository
from app.auth.models import ApiKey, Role
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
    row = repository.active_key_by_hash(session=session, secret_hash=hash_secret(secret))
    if row is None or not secrets.compare_digest(row.secret_hash, hash_secret(secret)):
        return None
    return Principal(key_id=row.id, role=Role(row.role), school_id=row.school_id)


def list_keys(*, session: Session, school_id: uuid.UUID) -> list[ApiKey]:
    return repository.keys_of_school(session=session, school_id=school_id)


def revoke_key(*, session: Session, school_id: uuid.UUID, key_id: uuid.UUID) -> None:
    if not repository.revoke(session=session, key_id=key_id, school_id=school_id):
        raise NotFound(f"no active API key {key_id} at this school")


def revoke_any_key(*, session: Session, key_id: uuid.UUID) -> bool:
    """Revoke a key of any school or role (the operator's command); False when none is active."""
    return repository.revoke(session=session, key_id=key_id)


def operator_key_exists(*, session: Session) -> bool:
    return repository.operator_key_exists(session=session)
