"""Secrets the service must read back (ESIS credentials, webhook signing secrets) are
encrypted at rest with Fernet; `ESIS_SYNC_SECRET_KEY` holds one or more keys (comma-separated:
the first encrypts, all decrypt, so keys can be rotated). The embedded quick start keeps a
generated key in `./var/secret.key` (mode 0600) beside its SQLite file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.config import Settings
from app.errors import DomainError

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet


class SecretKeyMissing(DomainError):
    status, slug, title = 503, "secret-key-missing", "Secrets cannot be stored"


class SecretUnreadable(DomainError):
    status, slug, title = 500, "secret-unreadable", "A stored secret cannot be decrypted"


def _keys(settings: Settings) -> list[bytes]:
    if settings.secret_key is not None:
        return [
            k.strip().encode()
            for k in settings.secret_key.get_secret_value().split(",")
            if k.strip()
        ]
    if not settings.is_sqlite:
        raise SecretKeyMissing(
            "ESIS_SYNC_SECRET_KEY is not set: generate one with `esis-sync generate-secret-key`"
        )
    path = Path(settings.database_url.split("///", 1)[-1]).parent / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        from cryptography.fernet import Fernet  # see box

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
    return [path.read_bytes().strip()]


def box(settings: Settings) -> MultiFernet:
    # cryptography (~6 MB) only when a secret is stored or read: a serving process may run
    # for days without (pushes that are not signed, no pulls, no webhooks).
    from cryptography.fernet import Fernet, MultiFernet

    return MultiFernet([Fernet(key) for key in _keys(settings)])


def rotate_all(*, session: Any, settings: Settings) -> int:
    """Re-encrypt every stored secret with the first key (MultiFernet.rotate)."""
    from cryptography.fernet import InvalidToken  # see box
    from sqlalchemy import select, update

    from app.db import metadata

    fernet = box(settings)
    done = 0
    for table, columns in (
        ("esis_connection", ("identity_encrypted", "secret_encrypted")),
        ("signing_secret", ("encrypted",)),
        ("webhook_endpoint", ("secret_encrypted",)),
    ):
        t = metadata.tables[table]
        for row in session.execute(select(t.c.id, *(t.c[c] for c in columns))).all():
            try:
                values = {c: fernet.rotate(row._mapping[c]) for c in columns}
            except InvalidToken:
                raise SecretUnreadable("a stored secret does not decrypt with any key") from None
            session.execute(update(t).where(t.c.id == row.id).values(**values))
            done += len(columns)
    return done


def encrypt(settings: Settings, plain: bytes) -> bytes:
    return box(settings).encrypt(plain)


def decrypt(settings: Settings, token: bytes) -> bytes:
    from cryptography.fernet import InvalidToken  # see box

    try:
        return box(settings).decrypt(token)
    except InvalidToken:
        raise SecretUnreadable(
            "a stored secret does not decrypt with ESIS_SYNC_SECRET_KEY (was the key changed "
            "without keeping the old one after it?)"
        ) from None
