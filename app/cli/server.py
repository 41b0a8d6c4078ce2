"""Running the service: `migrate`, `serve` and `worker`."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import Engine

from app.cli.common import cli, database, load_settings
from app.config import Settings
from app.db import write_transaction


def _require_schema(engine: Engine) -> None:
    """Exit 2 with one line (no traceback) unless the database is reachable and at the head."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.migrations import current_revision, head_revision

    try:
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        typer.echo(
            f"the database cannot be reached ({type(exc).__name__}): check ESIS_SYNC_DATABASE_URL",
            err=True,
        )
        raise typer.Exit(2) from None
    head = head_revision()
    if current != head:
        typer.echo(
            f"the database schema is at {current or 'no migration'}, not at the latest "
            f"migration ({head}): run `esis-sync migrate` first",
            err=True,
        )
        raise typer.Exit(2)


@cli.command()
def migrate() -> None:
    """Bring the database schema to the latest migration (run before serving)."""
    from app.migrations import upgrade

    settings = load_settings()
    upgrade(settings.database_url)
    typer.echo("database schema is at the latest migration")


@cli.command()
def worker(
    once: Annotated[bool, typer.Option(help="One pass, then exit (for cron or tests).")] = False,
) -> None:
    """Run the scheduler: daily pulls at each school's sync time, and recovery.

    On PostgreSQL a procrastinate worker: start as many as you like, on any machines."""
    import threading

    from app.worker import run

    settings = load_settings(needs_secret_key=True)
    with database(settings) as db:
        _require_schema(db.engine)
    stop = threading.Event()
    typer.echo(
        f"worker: looking for due schools every {settings.scheduler_interval_seconds} s", err=True
    )
    if not settings.is_sqlite and not once:
        from app.jobs import run_worker

        with database(settings) as db:
            _recover(settings, db.engine)
        run_worker(settings)
        return
    try:
        pulled = run(settings, stop=stop, once=once)
    except KeyboardInterrupt:
        stop.set()
        return
    typer.echo(f"worker: {pulled} pull(s)")


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Overrides ESIS_SYNC_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides ESIS_SYNC_PORT.")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the API with uvicorn. The schema must be migrated first (`esis-sync migrate`)."""
    _tune_malloc()
    import uvicorn

    from app.auth.models import Role
    from app.auth.service import create_key, operator_key_exists

    settings = load_settings(needs_secret_key=True)
    bind_host = host or settings.host
    bind_port = port or settings.port
    base = f"http://{bind_host}:{bind_port}"
    with database(settings) as db:
        _require_schema(db.engine)
        if settings.should_bootstrap_operator_key:
            with write_transaction(db.sessions) as session:
                if not operator_key_exists(session=session):
                    _key, secret = create_key(
                        session=session,
                        role=Role.OPERATOR,
                        name="first operator key",
                        school_id=None,
                        created_by="first start",
                    )
                    typer.echo(f"\nFirst operator key (shown once, keep it): {secret}\n")
        _recover(settings, db.engine)
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


def _recover(settings: Settings, engine: Engine) -> None:
    """Snapshots stored but not applied when the last process died are applied now."""
    import datetime as dt

    from app.coupling.receive import recover_interrupted
    from app.db import make_sessionmaker

    done = recover_interrupted(
        sessions=make_sessionmaker(engine), today=dt.datetime.now(settings.tz).date()
    )
    if done:
        typer.echo(f"applied {len(done)} snapshot(s) interrupted by the last stop", err=True)


# glibc's mallopt parameters, the environment variables glibc reads them from at start, and
# the names of the same settings in `GLIBC_TUNABLES` (`glibc.malloc.arena_max=4:...`).
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8
MALLOC_SETTINGS = (
    ("MALLOC_ARENA_MAX", "glibc.malloc.arena_max", _M_ARENA_MAX, 2),
    ("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold", _M_MMAP_THRESHOLD, 128 * 1024),
)


def _tune_malloc() -> None:
    """glibc's allocator, set for a long-running server (docs/operator.md, "Memory").

    Two arenas instead of up to eight per CPU for the request threads; blocks from 128 KiB
    (request bodies, a merge's large lists) mapped on their own and given back when freed,
    where glibc would otherwise raise that threshold after the first such block is freed and
    keep later ones in a heap that does not shrink. About 5 MB of the peak of a 1,000-student
    merge (bench.merge). A value set in the environment (the variable, or the setting in
    `GLIBC_TUNABLES`) is left as it is; the variables are set for uvicorn's `--workers`
    processes too. Nothing happens without glibc (musl).
    """
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    tunables = {item.split("=", 1)[0] for item in os.environ.get("GLIBC_TUNABLES", "").split(":")}
    for name, tunable, parameter, value in MALLOC_SETTINGS:
        if name in os.environ or tunable in tunables:
            continue
        os.environ[name] = str(value)
        mallopt(parameter, value)
