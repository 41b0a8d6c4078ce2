"""The demonstration commands: `demo` and `fake-esis`. The only production modules that use
the test doubles of `fake_esis` (an import-linter contract allows exactly these)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import cli


@cli.command()
def demo(
    port: Annotated[int | None, typer.Option(help="Port of the service (default: free).")] = None,
    directory: Annotated[str, typer.Option(help="Where the demo keeps its data.")] = "var/demo",
    serve: Annotated[bool, typer.Option(help="Keep serving after the demo.")] = True,
) -> None:
    """The whole coupling on the embedded default: fake ESIS, pull, activation, a local edit,
    a change in ESIS, drift, and the change feed."""
    from fake_esis.demo import run as run_demo

    run_demo(directory=Path(directory), port=port, keep_serving=serve, say=typer.echo)


@cli.command("fake-esis")
def fake_esis(
    directory: Annotated[
        str, typer.Option(help="Where the certificates are written.")
    ] = "var/fake-esis",
    port: Annotated[int, typer.Option(help="HTTPS port on 127.0.0.1.")] = 8443,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    name: Annotated[
        list[str] | None,
        typer.Option(
            help="A host name the server certificate is valid for, besides 127.0.0.1 and "
            "localhost (such as the compose service name); may be repeated."
        ),
    ] = None,
) -> None:
    """A fake ESIS UWLR service (HTTPS, client certificates) serving a synthetic school 12AB00."""
    from fake_esis.demo import roster
    from fake_esis.server import FakeEsis

    kit = FakeEsis.generate(Path(directory), names=name or ())
    with kit.serve(host=host, port=port) as esis:
        esis.script("12AB", "00", answer=roster())
        typer.echo(f"fake ESIS on {esis.url}; certificates in {directory}")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            return
