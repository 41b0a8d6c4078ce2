"""A school's data: `create-school`, `import-edexml`, `pull`, `purge`."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import cli, client_errors, database, find_school, load_settings, progress
from app.db import write_transaction


@cli.command("create-school")
def create_school(
    brin: Annotated[str, typer.Argument(help="BRIN code, e.g. 12AB.")],
    name: Annotated[str, typer.Argument(help="The school's name.")],
    branch: Annotated[str, typer.Option(help="Branch code.")] = "00",
) -> None:
    """Create a school (same rules as POST /api/v1/schools)."""
    from pydantic import ValidationError

    from app.schools.schemas import SchoolCreate
    from app.schools.service import create_school as create

    settings = load_settings()
    try:
        data = SchoolCreate(brin=brin, branch=branch, name=name)
    except ValidationError as exc:
        typer.echo(
            f"invalid school: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", err=True
        )
        raise typer.Exit(2) from None
    with (
        client_errors(title=False),
        database(settings) as db,
        write_transaction(db.sessions) as session,
    ):
        school = create(session=session, data=data, daily_cutoff=settings.daily_cutoff, actor="cli")
    typer.echo(school.key)


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

    settings = load_settings()
    with client_errors(), database(settings) as db:
        found = find_school(db.sessions, school)
        body = file.read()
        with progress(f"importing {len(body) / 1e6:.1f} MB of EDEXml"):
            run = run_import(
                sessions=db.sessions,
                school_id=found.id,
                body=body,
                remove_missing=remove_missing,
                actor="cli",
            )
    added = {entity: c["added"] for entity, c in run.counts.items() if c.get("added")}
    report = run.report or {}
    typer.echo(
        f"imported: run {run.id}; added {added or 'nothing'}; "
        f"{len(report.get('absent', []))} absent from the file, {report.get('removed', 0)} "
        "removed"
    )


@cli.command()
def pull(
    school: Annotated[str, typer.Argument(help="The school's key, e.g. 12AB00.")],
) -> None:
    """Fetch one school from ESIS now (same as POST .../esis/pulls). Exit 1 when it failed."""
    from app.coupling.pulls import pull as run_pull
    from app.worker import options

    settings = load_settings()
    with client_errors(), database(settings) as db:
        found = find_school(db.sessions, school)
        with progress(f"pulling {school.upper()} from ESIS"):
            run = run_pull(
                sessions=db.sessions,
                settings=settings,
                school_id=found.id,
                actor="cli",
                options=options(settings),
            )
    typer.echo(f"pull: run {run.id} {run.status}")
    if run.status == "failed":
        typer.echo(str((run.error or {}).get("detail", "")), err=True)
        raise typer.Exit(1)


@cli.command()
def purge() -> None:
    """Remove the personal data of records deleted longer ago than the retention window."""
    from app.feed.retention import compact as compact_feed
    from app.roster.purge import purge as run_purge
    from app.webhooks.retention import prune_deliveries

    settings = load_settings()
    with database(settings) as db, write_transaction(db.sessions) as session:
        counts = run_purge(session=session, retention_days=settings.retention_days)
        counts["events"] += compact_feed(
            session=session, retention_days=settings.feed_retention_days
        )
        counts["webhook_deliveries"] += prune_deliveries(
            session=session, retention_days=settings.feed_retention_days
        )
    done = ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "nothing"
    typer.echo(
        f"purged (retention {settings.retention_days} days, feed "
        f"{settings.feed_retention_days} days): {done}"
    )
