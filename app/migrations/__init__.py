"""Run alembic programmatically: `esis-sync migrate`, readiness, and the tests.

The migrations are package data of `app` (this folder: `env.py`, `script.py.mako`,
`versions/`), so they are found wherever the package is installed, editable or not (a
top-level `alembic/` folder would be shadowed by the `alembic` library once installed).
The repository's `alembic.ini` points here too, for the `alembic` command of developers.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = Path(__file__).resolve().parent
VERSIONS = SCRIPT_LOCATION / "versions"
VERSION_TABLE = "alembic_version"  # alembic's default; env.py keeps it
# The files alembic reads revisions from (its `_only_source_rev_file`): not an editor's lock
# file (emacs: `.#name.py`, a link to nowhere), not `__init__.py`.
_REVISION_FILE = re.compile(r"(?!\.\#|__init__)(.*\.py)$")


def alembic_config(url: str) -> Config:
    # alembic (with mako, ~7 MB) only for the commands that migrate: the serving process
    # needs the head and the current revision alone, read below without it.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("path_separator", "os")
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False
    return config


def upgrade(url: str) -> None:
    from alembic import command  # see alembic_config

    command.upgrade(alembic_config(url), "head")


def head_revision() -> str | None:
    """The latest migration: the revision of `versions/` that no other names as its
    `down_revision`, read from the files as alembic's `ScriptDirectory.get_current_head`
    does (tests/test_lean_imports.py compares the two); more than one head is an error,
    as there."""
    revisions: dict[str, tuple[str, ...]] = {}
    for path in sorted(VERSIONS.glob("*.py")):
        if not _REVISION_FILE.match(path.name):
            continue
        values = _assignments(path)
        if isinstance(revision := values.get("revision"), str):
            down = values.get("down_revision")  # None, one revision, or a merge's tuple
            if isinstance(down, str):
                revisions[revision] = (down,)
            elif isinstance(down, tuple | list):
                revisions[revision] = tuple(map(str, down))
            else:
                revisions[revision] = ()
    named = {down for downs in revisions.values() for down in downs}
    heads = [revision for revision in revisions if revision not in named]
    if len(heads) > 1:
        raise RuntimeError(f"the migrations have more than one head: {', '.join(sorted(heads))}")
    return heads[0] if heads else None


def _assignments(path: Path) -> dict[str, object]:
    """A migration file's module-level constants (`revision: str = "..."` and the like)."""
    out: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            target, value = node.target.id, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            if not isinstance(node.targets[0], ast.Name):
                continue
            target, value = node.targets[0].id, node.value
        else:
            continue
        try:
            out[target] = ast.literal_eval(value)
        except ValueError:
            continue  # not a constant
    return out


def current_revision(engine: Engine) -> str | None:
    """The database's revision, as alembic's `MigrationContext.get_current_revision` reads it
    (None before the first migration); more than one is an error, as there."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        found = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    if len(found) > 1:
        raise RuntimeError(f"the database is at more than one revision: {', '.join(found)}")
    return found[0] if found else None
