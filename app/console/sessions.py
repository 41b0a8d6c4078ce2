"""Signing in with an API key, the session it becomes, idle expiry, and the CSRF token."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.orm import Session
from sqlmodel import col, select

from app.auth.models import ApiKey, Role
from app.auth.service import Principal, authenticate, hash_secret
from app.console.models import ConsoleSession
from app.db import utcnow

COOKIE = "console_session"
# Writing last_seen_at on every page view is needless churn; a minute of slack is not.
TOUCH_AFTER = dt.timedelta(seconds=60)


class SignInRefused(Exception):
    """The key is unknown, revoked, or of a role that has no console (esis)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ConsoleUser:
    session_id: uuid.UUID
    principal: Principal
    csrf: str
    flash: dict[str, Any] | None

    @property
    def can_write(self) -> bool:
        return self.principal.role in (Role.ADMIN, Role.OPERATOR)

    @property
    def is_operator(self) -> bool:
        return self.principal.role == Role.OPERATOR


def csrf_token(token: str) -> str:
    """The synchronizer token of a session: derived from its secret token, so it is tied to
    the session without being stored, and unknowable without the HttpOnly cookie."""
    return hmac.new(token.encode(), b"console-csrf", hashlib.sha256).hexdigest()


def csrf_matches(expected: str, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(expected.encode(), given.encode())


def sign_in(*, session: Session, secret: str, idle: dt.timedelta) -> tuple[str, Principal]:
    """Exchange a key for a new session token (returned once, stored as a hash only)."""
    principal = authenticate(session=session, secret=secret.strip())
    if principal is None:
        raise SignInRefused("unknown")
    if principal.role == Role.ESIS:
        raise SignInRefused("esis")
    now = utcnow()
    # Expired sessions go on every sign-in: the table stays as small as the active users.
    session.execute(delete(ConsoleSession).where(col(ConsoleSession.last_seen_at) < now - idle))
    token = secrets.token_urlsafe(32)
    session.add(ConsoleSession(token_hash=hash_secret(token), key_id=principal.key_id))
    session.flush()
    return token, principal


def resolve(*, session: Session, token: str, idle: dt.timedelta) -> ConsoleUser | None:
    """The user behind a cookie; None (and the row gone) once idle too long or revoked."""
    row = session.execute(
        select(ConsoleSession, ApiKey)
        .join(ApiKey, col(ApiKey.id) == col(ConsoleSession.key_id))
        .where(ConsoleSession.token_hash == hash_secret(token))
    ).one_or_none()
    if row is None:
        return None
    console_session, key = row
    now = utcnow()
    if key.revoked_at is not None or console_session.last_seen_at + idle < now:
        session.execute(delete(ConsoleSession).where(col(ConsoleSession.id) == console_session.id))
        return None
    flash = console_session.flash
    values: dict[str, Any] = {}
    if flash is not None:
        values["flash"] = None
    if now - console_session.last_seen_at > TOUCH_AFTER:
        values["last_seen_at"] = now
    if values:
        session.execute(
            update(ConsoleSession)
            .where(col(ConsoleSession.id) == console_session.id)
            .values(**values)
        )
    principal = Principal(key_id=key.id, role=Role(key.role), school_id=key.school_id)
    return ConsoleUser(console_session.id, principal, csrf_token(token), flash)


def set_flash(*, session: Session, session_id: uuid.UUID, flash: dict[str, Any]) -> None:
    session.execute(
        update(ConsoleSession).where(col(ConsoleSession.id) == session_id).values(flash=flash)
    )


def sign_out(*, session: Session, session_id: uuid.UUID) -> None:
    session.execute(delete(ConsoleSession).where(col(ConsoleSession.id) == session_id))
