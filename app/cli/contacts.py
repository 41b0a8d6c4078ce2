"""`import-contacts`: a guardian contact file, as POST .../imports/contacts takes it."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import cli, database, find_school, load_settings
from app.errors import DomainError


@cli.command("import-contacts")
def import_contacts(
    school: Annotated[str, typer.Argument(help="The school's key, e.g. 12AB00.")],
    file: Annotated[typer.FileBinaryRead, typer.Argument(help="The CSV file of guardians.")],
    dry_run: Annotated[
        bool, typer.Option(help="Show what the file would do; change nothing.")
    ] = False,
) -> None:
    """Read a guardian contact file (docs/integrator.md): kept for activation before it,
    applied after it (only for schools whose ESIS sends no guardians)."""
    from app.coupling.contacts import import_contacts as run_import

    settings = load_settings()
    with database(settings) as db:
        found = find_school(db.sessions, school)
        try:
            result = run_import(
                sessions=db.sessions,
                school_id=found.id,
                body=file.read(),
                dry_run=dry_run,
                actor="cli",
            )
        except DomainError as exc:
            typer.echo(f"{exc.title}: {exc.detail}", err=True)
            for problem in exc.extra.get("errors", []):
                where = f"line {problem['line']}" if problem.get("line") else "file"
                if problem.get("column"):
                    where += f", column {problem['column']}"
                typer.echo(f"  {where}: {problem['message']}", err=True)
            raise typer.Exit(1) from None
    prefix = "dry run, nothing written: " if dry_run else ""
    if result["applied"]:
        counts = result["report"]["counts"]
        typer.echo(
            f"{prefix}{result['rows']} rows: {counts['matched']} guardians matched, "
            f"{counts['created']} created, {counts['updated']} corrected, "
            f"{counts['links_added']} links added"
        )
    else:
        typer.echo(
            f"{prefix}{result['rows']} rows kept for activation: {result['guardians']} "
            f"guardians of {result['students']} students"
        )
