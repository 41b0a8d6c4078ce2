"""Keys and secrets: `create-operator-key`, `revoke-key`, `rotate-secrets`,
`generate-secret-key`."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from app.cli.common import cli, database, load_settings
from app.db import write_transaction


@cli.command("create-operator-key")
def create_operator_key(
    name: Annotated[str, typer.Option(help="What the key is for.")] = "operator",
) -> None:
    """Create a platform operator key and print it once."""
    from app.auth.models import Role
    from app.auth.service import create_key

    settings = load_settings()
    with database(settings) as db, write_transaction(db.sessions) as session:
        key, secret = create_key(
            session=session, role=Role.OPERATOR, name=name, school_id=None, created_by="cli"
        )
    typer.echo(secret)
    typer.echo(f"operator key {key.id} created; the secret above is not shown again", err=True)


@cli.command("revoke-key")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id (any role, operator keys too).")],
) -> None:
    """Revoke an API key at once, by id."""
    from app.auth.service import revoke_any_key

    settings = load_settings()
    try:
        wanted = uuid.UUID(key_id)
    except ValueError:
        typer.echo(f"not a key id: {key_id}", err=True)
        raise typer.Exit(2) from None
    with database(settings) as db, write_transaction(db.sessions) as session:
        done = revoke_any_key(session=session, key_id=wanted)
    if not done:
        typer.echo(f"no active key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"key {key_id} revoked")


@cli.command("rotate-secrets")
def rotate_secrets() -> None:
    """Re-encrypt every stored secret with the first key of ESIS_SYNC_SECRET_KEY (after
    putting a new key in front: NEW,OLD). Then the old key can be dropped."""
    from app.crypto import rotate_all

    settings = load_settings()
    with database(settings) as db, write_transaction(db.sessions) as session:
        done = rotate_all(session=session, settings=settings)
    typer.echo(f"re-encrypted {done} stored secret(s) with the first key")


@cli.command("generate-secret-key")
def generate_secret_key() -> None:
    """Print a new key for ESIS_SYNC_SECRET_KEY (to rotate: new,old)."""
    from cryptography.fernet import Fernet

    typer.echo(Fernet.generate_key().decode())
