"""The package as installed from its wheel (as in the image), not the source tree.

A top-level `alembic/` folder used to be found "beside the package", which is the `alembic`
library once the package is installed non-editable: `migrate` failed and readiness never
turned ok. Here the wheel is built, installed with the locked dependencies into a fresh
virtual environment, and run from a directory that has no source tree in it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from app.migrations import head_revision
from bench.server import esis_sync_command, free_port

ROOT = Path(__file__).resolve().parent.parent
UV = Path(sys.executable).parent / "uv"


def _run(
    args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `bin` folder of a fresh venv holding the built wheel and the locked dependencies."""
    if not UV.exists():
        pytest.fail("uv is not in the environment: run `make install`")
    work = tmp_path_factory.mktemp("wheel")
    built = _run([str(UV), "build", "--wheel", "-q", "-o", str(work / "dist")], cwd=ROOT)
    assert built.returncode == 0, built.stderr
    wheel = next((work / "dist").glob("esis_sync-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert "app/migrations/env.py" in names
    assert "app/migrations/script.py.mako" in names
    assert any(n.startswith("app/migrations/versions/") and n.endswith(".py") for n in names)
    requirements = work / "requirements.txt"
    export = ["export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "-q"]
    exported = _run([str(UV), *export, "-o", str(requirements)], cwd=ROOT)
    assert exported.returncode == 0, exported.stderr
    venv = work / "venv"
    made = _run([str(UV), "venv", "-q", "--python", sys.executable, str(venv)], cwd=work)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    install = ["pip", "install", "-q", "--python", str(python), "-r", str(requirements)]
    done = _run([str(UV), *install, str(wheel)], cwd=work)
    assert done.returncode == 0, done.stderr
    return venv / "bin"


def _env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESIS_SYNC_")}
    env.pop("PYTHONPATH", None)
    env.update(ESIS_SYNC_DATABASE_URL=database_url, ESIS_SYNC_LOG_LEVEL="WARNING")
    return env


def test_the_installed_wheel_migrates_to_the_head(installed: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'installed.db'}"
    where = _run(
        [str(installed / "python"), "-c", "import app.migrations as m; print(m.__file__)"],
        cwd=tmp_path,
        env=_env(url),
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), where.stdout
    migrated = _run([str(installed / "esis-sync"), "migrate"], cwd=tmp_path, env=_env(url))
    assert migrated.returncode == 0, migrated.stderr
    check = (
        "import sqlalchemy, app.migrations as m; "
        f"e = sqlalchemy.create_engine({url!r}); "
        "print(m.current_revision(e), m.head_revision())"
    )
    heads = _run([str(installed / "python"), "-c", check], cwd=tmp_path, env=_env(url))
    assert heads.returncode == 0, heads.stderr
    current, head = heads.stdout.split()
    assert current == head == head_revision()


def _refuses_unmigrated(command: list[str], cwd: Path, url: str) -> None:
    done = _run(command, cwd=cwd, env=_env(url), timeout=120)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "not at the latest migration" in lines[0]
    assert "esis-sync migrate" in lines[0]


@pytest.mark.parametrize("what", ["serve", "worker"])
def test_serve_and_worker_refuse_an_unmigrated_database(what: str, tmp_path: Path) -> None:
    """A real process of the development environment: exit 2, one line, no traceback."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    args = ["serve", "--host", "127.0.0.1", "--port", str(free_port())] if what == "serve" else []
    _refuses_unmigrated([esis_sync_command(), *(args or [what])], tmp_path, url)


@pytest.mark.parametrize("what", ["serve", "worker"])
def test_the_installed_wheel_refuses_an_unmigrated_database(
    what: str, installed: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    args = ["serve", "--host", "127.0.0.1", "--port", str(free_port())] if what == "serve" else []
    _refuses_unmigrated([str(installed / "esis-sync"), *(args or [what])], tmp_path, url)
