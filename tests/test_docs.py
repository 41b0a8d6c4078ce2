"""The documentation says what the code does."""

from __future__ import annotations

import re
from pathlib import Path

import typer
import yaml

from app.cli import cli
from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_settings_table_names_every_setting() -> None:
    text = (ROOT / "docs" / "settings.md").read_text()
    documented = set(re.findall(r"^\| `ESIS_SYNC_([A-Z_]+)`", text, flags=re.MULTILINE))
    assert documented == {name.upper() for name in Settings.model_fields}


def test_compose_sets_only_settings_the_app_knows() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    known = {f"ESIS_SYNC_{name.upper()}" for name in Settings.model_fields}
    commands = set(typer.main.get_command(cli).commands)  # type: ignore[attr-defined]
    app_services = 0
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        unknown = {k for k in env if k.startswith("ESIS_SYNC_")} - known
        assert not unknown, f"service {name} sets unknown settings {unknown}"
        command = service.get("command") or []
        if command[:1] != ["esis-sync"]:
            continue
        app_services += 1
        assert command[1] in commands, f"service {name} runs an unknown command {command[1]}"
        if command[1] in ("serve", "worker", "migrate"):
            # Required on PostgreSQL: the database, and the key that encrypts stored secrets.
            assert env["ESIS_SYNC_DATABASE_URL"].startswith("postgresql")
            assert "ESIS_SYNC_SECRET_KEY" in env
            assert service["depends_on"]
            # No key is written in the file: compose refuses to start without one.
            assert env["ESIS_SYNC_SECRET_KEY"].startswith("${ESIS_SYNC_SECRET_KEY:?")
    assert app_services == 4
    assert {"db", "migrate", "api", "worker", "fake-esis"} <= set(compose["services"])


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make run" in quick_start
    assert "make test" in quick_start
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_worker_concurrency_default_is_the_same_in_the_docs_and_the_pull_benchmark() -> None:
    from bench.pull_scale import DEFAULT_CONCURRENCY

    default = Settings.model_fields["worker_concurrency"].default
    assert default == DEFAULT_CONCURRENCY
    text = (ROOT / "docs" / "settings.md").read_text()
    assert f"| `ESIS_SYNC_WORKER_CONCURRENCY` | `{default}` |" in text
