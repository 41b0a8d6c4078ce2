"""The `esis-sync` command line (`esis-sync = "app.cli:main"`), one module per command group:
`server` (migrate, serve, worker), `keys`, `schools` (create, import, pull, purge),
`year_transition`, `demo`, `contacts` (import-contacts); `common` holds what they share.
Exit codes: 0 ok, 1 failed, 2 bad usage or settings."""

from __future__ import annotations

import sys

from app.cli import contacts, demo, keys, schools, server, year_transition
from app.cli.common import cli
from app.config import SettingsError

__all__ = ["cli", "main"]

# Importing a group registers its commands on `cli`.
_GROUPS = (server, keys, schools, year_transition, demo, contacts)


def main() -> None:
    try:
        cli()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
