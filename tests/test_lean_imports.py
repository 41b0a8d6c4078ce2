"""What the serving process imports, and the migration state it reads without alembic.

Issue 18 bounds the peak memory of `esis-sync serve`. Libraries only some commands or
requests use are imported when they are used (each such import says why where it is):
alembic with mako (`esis-sync migrate` and the tests), cryptography (storing or reading a
secret, loading a certificate), httpx with the rich and pygments its command line pulls in
(a pull, a webhook delivery), the console with jinja2 and babel (its first page). Checked in
a fresh interpreter, the way `esis-sync serve` starts: the command line, the schema check and
the app.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet
from sqlalchemy import Engine, create_engine

from app.migrations import VERSIONS, alembic_config, current_revision, head_revision

ROOT = Path(__file__).resolve().parent.parent
NOT_AT_START = ("alembic", "mako", "cryptography", "httpx", "rich", "pygments", "jinja2", "babel")

# What `esis-sync serve` does before uvicorn serves: the command line (every command group),
# the schema check, then the app factory.
SERVE_START = """
import json, sys
import sqlalchemy
import app.cli
from app.cli.server import _require_schema
from app.config import load_settings
from app.main import create_app

settings = load_settings()
engine = sqlalchemy.create_engine(settings.database_url)
_require_schema(engine)
create_app(settings)
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_serving_imports_no_migration_tool_crypto_or_http_client(database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESIS_SYNC_")}
    env["ESIS_SYNC_DATABASE_URL"] = database_url
    env["ESIS_SYNC_SECRET_KEY"] = Fernet.generate_key().decode()
    done = subprocess.run(
        [sys.executable, "-c", SERVE_START],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = set(json.loads(done.stdout.splitlines()[-1]))
    assert {"app", "fastapi", "sqlalchemy", "typer"} <= imported  # it did start
    assert imported.isdisjoint(NOT_AT_START), sorted(imported & set(NOT_AT_START))


def test_head_revision_is_alembics(database_url: str) -> None:
    script = ScriptDirectory.from_config(alembic_config(database_url))
    assert head_revision() == script.get_current_head()
    assert head_revision() is not None


def test_head_revision_ignores_what_alembic_ignores(database_url: str) -> None:
    """An editor's lock file in `versions/` (emacs: `.#name.py`, a link to nowhere while a
    migration is edited) is no migration to alembic; reading it made the app fail to start."""
    lock = VERSIONS / ".#20261201_editing.py"
    os.symlink("root@host.1234:1700000000", lock)
    try:
        script = ScriptDirectory.from_config(alembic_config(database_url))
        assert head_revision() == script.get_current_head() is not None
    finally:
        lock.unlink()


def test_current_revision_reads_what_alembic_reads(engine: Engine, tmp_path: Path) -> None:
    with engine.connect() as conn:
        theirs = MigrationContext.configure(conn).get_current_revision()
    assert current_revision(engine) == theirs == head_revision()
    empty = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with empty.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() is None
    assert current_revision(empty) is None
    empty.dispose()
