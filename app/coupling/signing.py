"""Signed pushes, Standard Webhooks 1.0: `webhook-id`, `webhook-timestamp` and
`webhook-signature` (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, several allowed).

When a school has an active signing secret, every push must be signed with one of them: an
unsigned, wrongly signed or stale push is a 401 saying which. The raw bytes are verified, in
constant time; `webhook-id` is the push's idempotency key, so a replay gets the first run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Mapping

from sqlalchemy.orm import Session

from app.config import Settings
from app.coupling import repository
from app.coupling.models import SigningSecret
from app.crypto import decrypt, encrypt
from app.db import utcnow
from app.errors import NotFound, Unauthorized
from app.events.service import Change, emit

PREFIX = "whsec_"
_TIMESTAMP = re.compile(r"[1-9][0-9]{0,11}")


def create(
    *, session: Session, settings: Settings, school_id: uuid.UUID, actor: str
) -> tuple[SigningSecret, str]:
    secret = PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    row = SigningSecret(
        school_id=school_id,
        encrypted=encrypt(settings, secret.encode()),
        prefix=secret[:12],
        created_by=actor,
    )
    session.add(row)
    session.flush()
    emit(
        session=session,
        school_id=school_id,
        source="api",
        actor=actor,
        changes=[Change("signing_secret", row.id, "created")],
    )
    return row, secret


def active(*, session: Session, school_id: uuid.UUID) -> list[SigningSecret]:
    return repository.active_signing_secrets(session=session, school_id=school_id)


def revoke(*, session: Session, school_id: uuid.UUID, secret_id: uuid.UUID, actor: str) -> None:
    row = session.get(SigningSecret, (school_id, secret_id))
    if row is None or row.revoked_at is not None:
        raise NotFound(f"no active signing secret {secret_id}")
    row.revoked_at = utcnow()
    emit(
        session=session,
        school_id=school_id,
        source="api",
        actor=actor,
        changes=[Change("signing_secret", secret_id, "revoked")],
    )


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(PREFIX))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class SignatureRefused(Unauthorized):
    slug, title = "signature", "Push signature refused"


def verify(
    *,
    session: Session,
    settings: Settings,
    school_id: uuid.UUID,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
) -> str | None:
    """The verified `webhook-id`, or None when the school does not require signatures."""
    keys = active(session=session, school_id=school_id)
    if not keys:
        return None
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        raise SignatureRefused(
            "this school requires signed pushes: send webhook-id, "
            "webhook-timestamp and webhook-signature (Standard Webhooks)"
        )
    # Digits only, as Standard Webhooks writes them: `int()` would also take `0017...`,
    # `1_796...` and ` 17...`, which signers disagree on (the reference library signs the
    # float it reads, so `...58.0` would be its `...58`).
    if not _TIMESTAMP.fullmatch(stamp):
        raise SignatureRefused("webhook-timestamp is not a number of seconds (digits only)")
    timestamp = int(stamp)
    drift = abs((now if now is not None else time.time()) - timestamp)
    if drift > settings.webhook_tolerance_seconds:
        raise SignatureRefused(
            f"webhook-timestamp is {int(drift)} s away from now; the "
            f"tolerance is {settings.webhook_tolerance_seconds} s"
        )
    offered = [s.split(",", 1)[1] for s in signatures.split() if s.startswith("v1,")]
    for key in keys:
        secret = decrypt(settings, key.encrypted).decode()
        try:
            expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1]
        except (binascii.Error, ValueError):
            continue
        if any(hmac.compare_digest(expected.encode(), o.encode()) for o in offered):
            return msg_id
    raise SignatureRefused("webhook-signature does not match any active signing secret")
