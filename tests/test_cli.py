"""The `esis-sync` commands against both databases, with the exit codes scripts rely on."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from app.cli import cli
from app.config import Settings, get_settings
from app.coupling import signing
from tests.factories import make_school
from tests.merge_helpers import one, rows

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "edexml" / "guardians-2.1.xml"


@pytest.fixture
def run(database_url: str, db: sessionmaker[Session]) -> Iterator[Callable[..., Result]]:
    runner = CliRunner()
    env = {
        "ESIS_SYNC_DATABASE_URL": database_url,
        "ESIS_SYNC_SECRET_KEY": Fernet.generate_key().decode(),
    }

    def invoke(*args: str) -> Result:
        get_settings.cache_clear()
        return runner.invoke(cli, list(args), env=env)

    yield invoke
    get_settings.cache_clear()


def test_cli_commands(run: Callable[..., Result], db: sessionmaker[Session]) -> None:
    invoke = run
    key = invoke("create-operator-key")
    assert key.exit_code == 0
    assert re.search(r"^esk_\S+$", key.stdout, re.MULTILINE)
    assert invoke("create-school", "12AB", "De Regenboog").exit_code == 0
    assert invoke("create-school", "12AB", "Nog eens").exit_code == 1
    assert invoke("create-school", "XXXX", "Fout").exit_code == 2
    assert one(db, "school", key="12AB00")["daily_sync_time"].isoformat() == "17:00:00"
    imported = invoke("import-edexml", "12AB00", str(FIXTURE))
    assert imported.exit_code == 0, imported.stdout
    assert {s["source"] for s in rows(db, "student")} == {"edexml"}
    assert invoke("import-edexml", "99ZZ00", str(FIXTURE)).exit_code == 1
    preview = invoke("year-transition", "preview", "12AB00")
    assert preview.exit_code == 1  # not active, no new year: says why
    assert "not active" in preview.output
    pull = invoke("pull", "12AB00")
    assert pull.exit_code == 1
    assert "no ESIS connection" in pull.output
    worker = invoke("worker", "--once")
    assert worker.exit_code == 0
    assert "0 pull(s)" in worker.stdout
    purge = invoke("purge")
    assert purge.exit_code == 0
    assert len(Fernet(invoke("generate-secret-key").stdout.strip().encode()).encrypt(b"x")) > 0
    assert one(db, "school", key="12AB00")["name"] == "De Regenboog"
    assert invoke("--help").exit_code == 0


def test_demo_runs_the_whole_coupling(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--no-serve", "--directory", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "activated (R2)" in result.output
    assert "drift (R5): guardian email: ours 'nieuw.adres@example.nl'" in result.output
    assert "curl -s" in result.output


def test_secret_rotation_and_key_revocation(
    database_url: str, db: sessionmaker[Session], client: TestClient
) -> None:
    old = Fernet.generate_key().decode()
    new = Fernet.generate_key().decode()
    runner = CliRunner()

    def invoke(key: str, *args: str) -> Result:
        get_settings.cache_clear()
        return runner.invoke(
            cli,
            list(args),
            env={"ESIS_SYNC_DATABASE_URL": database_url, "ESIS_SYNC_SECRET_KEY": key},
        )

    school = make_school(client, db)
    with db.begin() as session:
        signing.create(
            session=session,
            settings=Settings(database_url=database_url, secret_key=old, _env_file=None),
            school_id=one(db, "school", key=school.key)["id"],
            actor="test",
        )
    rotated = invoke(f"{new},{old}", "rotate-secrets")
    assert rotated.exit_code == 0, rotated.output
    assert "re-encrypted 1" in rotated.stdout
    stored = one(db, "signing_secret")["encrypted"]
    assert Fernet(new.encode()).decrypt(stored).startswith(b"whsec_")  # the old key can go
    key_id = rows(db, "api_key")[0]["id"]
    assert invoke(new, "revoke-key", str(key_id)).exit_code == 0
    assert invoke(new, "revoke-key", str(key_id)).exit_code == 1
    get_settings.cache_clear()


def test_serve_and_worker_need_a_secret_key_on_postgresql() -> None:
    get_settings.cache_clear()
    env = {
        "ESIS_SYNC_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
        "ESIS_SYNC_SECRET_KEY": "",
    }
    for command in ("serve", "worker"):
        result = CliRunner().invoke(cli, [command], env={**env})
        assert result.exit_code == 2
        assert "ESIS_SYNC_SECRET_KEY" in result.output
    get_settings.cache_clear()


def test_r3_create_school_takes_its_daily_sync_time_from_the_daily_cutoff(
    database_url: str, db: sessionmaker[Session]
) -> None:
    get_settings.cache_clear()
    env = {"ESIS_SYNC_DATABASE_URL": database_url, "ESIS_SYNC_DAILY_CUTOFF": "18:45"}
    try:
        created = CliRunner().invoke(cli, ["create-school", "56EF", "De Linde"], env=env)
    finally:
        get_settings.cache_clear()
    assert created.exit_code == 0, created.output
    assert one(db, "school", key="56EF00")["daily_sync_time"].isoformat() == "18:45:00"
