"""The year transition's commands: `year-transition preview`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from app.cli.common import cli, client_errors, database, find_school, load_settings

transition_cli = typer.Typer(help="The year transition (R7-R11).", no_args_is_help=True)
cli.add_typer(transition_cli, name="year-transition")


@transition_cli.command("preview")
def transition_preview(
    school: Annotated[str, typer.Argument(help="The school's key, e.g. 12AB00.")],
    as_json: Annotated[bool, typer.Option("--json", help="The whole report as JSON.")] = False,
) -> None:
    """What the year transition would do with the latest new-year snapshot; changes nothing."""
    from app.year_transition.flow import preview

    settings = load_settings()
    with client_errors(), database(settings) as db:
        found = find_school(db.sessions, school)
        with db.sessions() as session:
            report, _cursor = preview(session=session, school_id=found.id, limit=1000, cursor=None)
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
