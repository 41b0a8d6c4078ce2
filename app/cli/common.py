"""What every command shares: the Typer app, settings, the database, errors and progress.

Exit codes: 0 ok, 1 failed (a domain error, a missing school, a failed pull), 2 bad usage or
settings. `database()` opens the engine and disposes of it however the command ends;
`client_errors()` turns what a client could have done wrong (`app.errors.ClientError`: a
domain error or an ESIS format error) into a message on stderr and exit 1, the same for every
command.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import typer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

import app.models  # noqa: F401  (every table registered before any query)
from app.config import Settings, SettingsError, get_settings
from app.db import make_engine, make_sessionmaker
from app.errors import ClientError

cli = typer.Typer(
    name="esis-sync",
    help="One-way ESIS to Mijnschoolinfo sync service.",
    no_args_is_help=True,
    add_completion=False,
    # Rich tracebacks print local variables, which can hold personal data.
    pretty_exceptions_enable=False,
)


def load_settings(*, needs_secret_key: bool = False) -> Settings:
    """The settings, with logging configured; exit 2 naming what is wrong with them."""
    try:
        settings = get_settings()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    from app.logging import configure_logging

    configure_logging(settings.log_level.value)  # JSON logs, as the API's
    if needs_secret_key and not settings.is_sqlite and settings.secret_key is None:
        typer.echo(
            "invalid settings:\n  ESIS_SYNC_SECRET_KEY: required on PostgreSQL (it encrypts "
            "stored ESIS credentials and signing secrets); make one with "
            "`esis-sync generate-secret-key`",
            err=True,
        )
        raise typer.Exit(2)
    return settings


@dataclass(frozen=True)
class Database:
    engine: Engine
    sessions: sessionmaker[Session]


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[Database]:
    """The configured database for one command; the engine is disposed of at the end."""
    engine = make_engine(settings.database_url)
    try:
        yield Database(engine, make_sessionmaker(engine))
    finally:
        engine.dispose()


@contextlib.contextmanager
def client_errors(*, title: bool = True) -> Iterator[None]:
    """A domain or format error ends the command with its message and exit 1."""
    try:
        yield
    except ClientError as exc:
        typer.echo(f"{exc.title}: {exc.detail}" if title else exc.detail, err=True)
        raise typer.Exit(1) from None


def find_school(sessions: sessionmaker[Session], key: str) -> Any:
    """The school with this key, or exit 1 saying there is none."""
    from app.schools.repository import get_by_key

    with sessions() as session:
        found = get_by_key(session=session, key=key.upper())
    if found is None:
        typer.echo(f"no school {key}", err=True)
        raise typer.Exit(1)
    return found


@contextlib.contextmanager
def progress(what: str) -> Iterator[None]:
    """A spinner with the elapsed time on a terminal (stderr); silent for scripts."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        bar.add_task(what, total=None)
        yield
