"""The `esis-sync` command line. Exit codes: 0 ok, 1 failed, 2 bad usage or settings."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer

import app.models  # noqa: F401  (every table registered before any query)
from app.config import Settings, SettingsError, get_settings

cli = typer.Typer(
    name="esis-sync",
    help="One-way ESIS to Mijnschoolinfo sync service.",
    no_args_is_help=True,
    add_completion=False,
    # Rich tracebacks print local variables, which can hold personal data.
    pretty_exceptions_enable=False,
)


def _settings(*, needs_secret_key: bool = False) -> Settings:
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


def _school(sessions: Any, key: str) -> Any:
    """The school with this key, or exit 1 saying there is none."""
    from app.schools.repository import get_by_key

    with sessions() as session:
        found = get_by_key(session=session, key=key.upper())
    if found is None:
        typer.echo(f"no school {key}", err=True)
        raise typer.Exit(1)
    return found


@contextlib.contextmanager
def _progress(what: str) -> Iterator[None]:
    """A spinner with the elapsed time on a terminal (stderr); silent for scripts."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        progress.add_task(what, total=None)
        yield


@cli.command()
def migrate() -> None:
    """Bring the database schema to the latest migration (run before serving)."""
    from app.migrations import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    typer.echo("database schema is at the latest migration")


@cli.command("create-operator-key")
def create_operator_key(
    name: Annotated[str, typer.Option(help="What the key is for.")] = "operator",
) -> None:
    """Create a platform operator key and print it once."""
    from app.auth.models import Role
    from app.auth.service import create_key
    from app.db import make_engine, make_sessionmaker

    settings = _settings()
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine).begin() as session:
        key, secret = create_key(
            session=session, role=Role.OPERATOR, name=name, school_id=None, created_by="cli"
        )
    engine.dispose()
    typer.echo(secret)
    typer.echo(f"operator key {key.id} created; the secret above is not shown again", err=True)


@cli.command("create-school")
def create_school(
    brin: Annotated[str, typer.Argument(help="BRIN code, e.g. 12AB.")],
    name: Annotated[str, typer.Argument(help="The school's name.")],
    branch: Annotated[str, typer.Option(help="Branch code.")] = "00",
) -> None:
    """Create a school (same rules as POST /api/v1/schools)."""
    from pydantic import ValidationError

    from app.db import make_engine, make_sessionmaker
    from app.errors import ClientError
    from app.schools.schemas import SchoolCreate
    from app.schools.service import create_school as create

    settings = _settings()
    try:
        data = SchoolCreate(brin=brin, branch=branch, name=name)
    except ValidationError as exc:
        typer.echo(
            f"invalid school: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", err=True
        )
        raise typer.Exit(2) from None
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine).begin() as session:
            school = create(session=session, data=data, actor="cli")
            typer.echo(school.key)
    except ClientError as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()


@cli.command("import-edexml")
def import_edexml(
    school: Annotated[str, typer.Argument(help="The school's key, e.g. 12AB00.")],
    file: Annotated[typer.FileBinaryRead, typer.Argument(help="The EDEXml file.")],
    remove_missing: Annotated[
        bool, typer.Option(help="Soft-delete EDEXml records the file no longer lists.")
    ] = False,
) -> None:
    """Import an EDEXml file before activation (same rules as POST .../imports/edexml)."""
    from app.coupling.imports import import_edexml as run_import
    from app.db import make_engine, make_sessionmaker
    from app.errors import ClientError

    settings = _settings()
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    try:
        found = _school(sessions, school)
        body = file.read()
        with _progress(f"importing {len(body) / 1e6:.1f} MB of EDEXml"):
            run = run_import(
                sessions=sessions,
                school_id=found.id,
                body=body,
                remove_missing=remove_missing,
                actor="cli",
            )
    except ClientError as exc:
        typer.echo(f"{exc.title}: {exc.detail}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    added = {entity: c["added"] for entity, c in run.counts.items() if c.get("added")}
    report = run.report or {}
    typer.echo(
        f"imported: run {run.id}; added {added or 'nothing'}; "
        f"{len(report.get('absent', []))} absent from the file, {report.get('removed', 0)} "
        "removed"
    )


@cli.command()
def worker(
    once: Annotated[bool, typer.Option(help="One pass, then exit (for cron or tests).")] = False,
) -> None:
    """Run the scheduler: daily pulls at each school's sync time, and recovery.

    On PostgreSQL a procrastinate worker: start as many as you like, on any machines."""
    import threading

    from app.db import make_engine
    from app.worker import run

    settings = _settings(needs_secret_key=True)
    stop = threading.Event()
    typer.echo(
        f"worker: looking for due schools every {settings.scheduler_interval_seconds} s", err=True
    )
    if not settings.is_sqlite and not once:
        from app.jobs import run_worker

        _recover(settings, make_engine(settings.database_url))
        run_worker(settings)
        return
    try:
        pulled = run(settings, stop=stop, once=once)
    except KeyboardInterrupt:
        stop.set()
        return
    typer.echo(f"worker: {pulled} pull(s)")


@cli.command()
def pull(
    school: Annotated[str, typer.Argument(help="The school's key, e.g. 12AB00.")],
) -> None:
    """Fetch one school from ESIS now (same as POST .../esis/pulls). Exit 1 when it failed."""
    from app.coupling.pulls import pull as run_pull
    from app.db import make_engine, make_sessionmaker
    from app.errors import ClientError
    from app.worker import options

    settings = _settings()
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    try:
        found = _school(sessions, school)
        with _progress(f"pulling {school.upper()} from ESIS"):
            run = run_pull(
                sessions=sessions,
                settings=settings,
                school_id=found.id,
                actor="cli",
                options=options(settings),
            )
    except ClientError as exc:
        typer.echo(f"{exc.title}: {exc.detail}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    typer.echo(f"pull: run {run.id} {run.status}")
    if run.status == "failed":
        typer.echo(str((run.error or {}).get("detail", "")), err=True)
        raise typer.Exit(1)


@cli.command()
def demo(
    port: Annotated[int | None, typer.Option(help="Port of the service (default: free).")] = None,
    directory: Annotated[str, typer.Option(help="Where the demo keeps its data.")] = "var/demo",
    serve: Annotated[bool, typer.Option(help="Keep serving after the demo.")] = True,
) -> None:
    """The whole coupling on the embedded default: fake ESIS, pull, activation, a local edit,
    a change in ESIS, drift, and the change feed."""
    from pathlib import Path

    from fake_esis.demo import run as run_demo

    run_demo(directory=Path(directory), port=port, keep_serving=serve, say=typer.echo)


transition_cli = typer.Typer(help="The year transition (R7-R11).", no_args_is_help=True)
cli.add_typer(transition_cli, name="year-transition")


@transition_cli.command("preview")
def transition_preview(
    school: Annotated[str, typer.Argument(help="The school's key, e.g. 12AB00.")],
    as_json: Annotated[bool, typer.Option("--json", help="The whole report as JSON.")] = False,
) -> None:
    """What the year transition would do with the latest new-year snapshot; changes nothing."""
    import json

    from app.db import make_engine, make_sessionmaker
    from app.errors import ClientError
    from app.schools.repository import get_by_key
    from app.year_transition.flow import preview

    settings = _settings()
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            found = get_by_key(session=session, key=school.upper())
            if found is None:
                typer.echo(f"no school {school}", err=True)
                raise typer.Exit(1)
            report, _cursor = preview(session=session, school_id=found.id, limit=1000, cursor=None)
    except ClientError as exc:
        typer.echo(f"{exc.title}: {exc.detail}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    typer.echo(
        f"{report['from_year']} -> {report['to_year']}"
        + (f"  HELD: {report['held_reason']}" if report["held_reason"] else "")
    )
    for name, value in report.items():
        if isinstance(value, dict) and "count" in value:
            typer.echo(f"  {name}: {value['count']}")


@cli.command("fake-esis")
def fake_esis(
    directory: Annotated[
        str, typer.Option(help="Where the certificates are written.")
    ] = "var/fake-esis",
    port: Annotated[int, typer.Option(help="HTTPS port on 127.0.0.1.")] = 8443,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
) -> None:
    """A fake ESIS UWLR service (HTTPS, client certificates) serving a synthetic school 12AB00."""
    import time
    from pathlib import Path

    from fake_esis.demo import roster
    from fake_esis.server import FakeEsis

    kit = FakeEsis.generate(Path(directory))
    with kit.serve(host=host, port=port) as esis:
        esis.script("12AB", "00", answer=roster())
        typer.echo(f"fake ESIS on {esis.url}; certificates in {directory}")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            return


@cli.command("revoke-key")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id (any role, operator keys too).")],
) -> None:
    """Revoke an API key at once, by id."""
    import uuid

    from sqlalchemy import update
    from sqlmodel import col

    from app.auth.models import ApiKey
    from app.db import make_engine, make_sessionmaker, utcnow

    settings = _settings()
    try:
        wanted = uuid.UUID(key_id)
    except ValueError:
        typer.echo(f"not a key id: {key_id}", err=True)
        raise typer.Exit(2) from None
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine).begin() as session:
        done = session.execute(
            update(ApiKey)
            .where(col(ApiKey.id) == wanted, col(ApiKey.revoked_at).is_(None))
            .values(revoked_at=utcnow())
        ).rowcount  # type: ignore[attr-defined]
    engine.dispose()
    if not done:
        typer.echo(f"no active key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"key {key_id} revoked")


@cli.command("rotate-secrets")
def rotate_secrets() -> None:
    """Re-encrypt every stored secret with the first key of ESIS_SYNC_SECRET_KEY (after
    putting a new key in front: NEW,OLD). Then the old key can be dropped."""
    from app.crypto import rotate_all
    from app.db import make_engine, make_sessionmaker

    settings = _settings()
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine).begin() as session:
        done = rotate_all(session=session, settings=settings)
    engine.dispose()
    typer.echo(f"re-encrypted {done} stored secret(s) with the first key")


@cli.command("generate-secret-key")
def generate_secret_key() -> None:
    """Print a new key for ESIS_SYNC_SECRET_KEY (to rotate: new,old)."""
    from cryptography.fernet import Fernet

    typer.echo(Fernet.generate_key().decode())


@cli.command()
def purge() -> None:
    """Remove the personal data of records deleted longer ago than the retention window."""
    from app.db import make_engine, make_sessionmaker
    from app.roster.purge import purge as run_purge

    settings = _settings()
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine).begin() as session:
        counts = run_purge(session=session, retention_days=settings.retention_days)
    engine.dispose()
    done = ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "nothing"
    typer.echo(f"purged (retention {settings.retention_days} days): {done}")


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Overrides ESIS_SYNC_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides ESIS_SYNC_PORT.")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the API with uvicorn. The schema must be migrated first (`esis-sync migrate`)."""
    import uvicorn

    from app.auth.models import Role
    from app.auth.service import create_key, operator_key_exists
    from app.db import make_engine, make_sessionmaker
    from app.migrations import current_revision, head_revision

    settings = _settings(needs_secret_key=True)
    engine = make_engine(settings.database_url)
    if current_revision(engine) != head_revision(settings.database_url):
        typer.echo(
            "the database schema is not at the latest migration: run `esis-sync migrate` first",
            err=True,
        )
        raise typer.Exit(1)
    bind_host = host or settings.host
    bind_port = port or settings.port
    base = f"http://{bind_host}:{bind_port}"
    if settings.should_bootstrap_operator_key:
        with make_sessionmaker(engine).begin() as session:
            if not operator_key_exists(session=session):
                _key, secret = create_key(
                    session=session,
                    role=Role.OPERATOR,
                    name="first operator key",
                    school_id=None,
                    created_by="first start",
                )
                typer.echo(f"\nFirst operator key (shown once, keep it): {secret}\n")
    _recover(settings, engine)
    engine.dispose()
    if settings.runs_embedded_worker and workers == 1:
        from app.worker import start_in_thread

        start_in_thread(settings)
        typer.echo("the scheduler runs in this process (ESIS_SYNC_EMBEDDED_WORKER)")
    typer.echo(f"esis-sync on {base}  docs: {base}/docs  health: {base}/healthz")
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=bind_host,
        port=bind_port,
        workers=workers,
        log_level=settings.log_level.value.lower(),
        access_log=False,
    )


def _recover(settings: Settings, engine: Any) -> None:
    """Snapshots stored but not applied when the last process died are applied now."""
    import datetime as dt

    from app.coupling.receive import recover_interrupted
    from app.db import make_sessionmaker

    done = recover_interrupted(
        sessions=make_sessionmaker(engine), today=dt.datetime.now(settings.tz).date()
    )
    if done:
        typer.echo(f"applied {len(done)} snapshot(s) interrupted by the last stop", err=True)


def main() -> None:
    try:
        cli()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
