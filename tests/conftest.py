"""Every database test runs on SQLite and on PostgreSQL, through the real ASGI app.

PostgreSQL is reached through ESIS_SYNC_TEST_POSTGRES_URL (a superuser connection to an
existing database; each run makes and drops its own database). Without it the PostgreSQL half
is skipped with the reason; with CI=true an unreachable PostgreSQL fails the run.

The browser tests share one `browser` fixture: Debian's Chromium (`/usr/bin/chromium`, which
`.ci/run` installs) driven by Playwright, whose own browser download is never used. Without
that Chromium they are skipped with the reason; with CI=true they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, sync_playwright
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import make_engine, make_sessionmaker, metadata
from app.main import create_app
from app.migrations import upgrade
from fake_esis.server import FakeEsis, FakeEsisKit

pytest_plugins = ["tests.merge_helpers"]  # the fake-ESIS pull fixtures

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BACKENDS = ["sqlite", "postgresql"]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's; never a browser Playwright downloads
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def unavailable(reason: str) -> NoReturn:
    """Skip the test for a missing prerequisite, or fail it under CI=true, where it must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def _postgres_admin_url() -> str:
    return os.environ.get("ESIS_SYNC_TEST_POSTGRES_URL", DEFAULT_PG)


def _create_postgres_database() -> tuple[str, Engine]:
    admin_url = make_url(_postgres_admin_url())
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            name = f"esis_sync_test_{uuid.uuid4().hex[:12]}"
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        unavailable(f"PostgreSQL not reachable at {admin_url.render_as_string()}: {exc.orig}")
    return admin_url.set(database=name).render_as_string(hide_password=False), admin


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, migrated PostgreSQL database of its own, dropped `WITH (FORCE)` afterwards
    (unreachable PostgreSQL: a skip with the reason, a failure under CI=true)."""
    url, admin = _create_postgres_database()
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("sqlite") / "esis-sync.db"
        url = f"sqlite:///{path}"
        upgrade(url)
        yield url
        return
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def backend(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgresql"


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


def _clean(engine: Engine) -> None:
    tables = [t.name for t in reversed(metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f'DELETE FROM "{table}"'))


@pytest.fixture
def db(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """A session factory on a clean database; the rows are removed after the test."""
    _clean(engine)
    yield make_sessionmaker(engine)
    _clean(engine)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        bootstrap_operator_key=False,
        max_upload_bytes=2 * 1024 * 1024,
        secret_key=Fernet.generate_key().decode(),
        allow_private_esis_hosts=True,  # the fake ESIS of the tests listens on loopback
        _env_file=None,
    )


@pytest.fixture(scope="session")
def app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    yield application
    application.state.engine.dispose()


@pytest.fixture
def client(app: FastAPI, db: sessionmaker[Session]) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, for one test module (`tests/test_browser.py`,
    `tests/test_console_browser.py`), closed when the module is done; each test opens its own
    pages or context."""
    if not CHROMIUM.is_file():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many tests ran on each database, so a skipped half cannot go unseen."""
    for backend in BACKENDS:
        counts = {}
        for outcome in ("passed", "failed", "skipped", "error"):
            reports = terminalreporter.stats.get(outcome, [])
            counts[outcome] = sum(
                1
                for r in reports
                if f"[{backend}" in getattr(r, "nodeid", "")
                and getattr(r, "when", "call") in ("call", "setup")
                and (outcome != "passed" or r.when == "call")
            )
        terminalreporter.write_line(
            f"database {backend}: {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped, {counts['error']} errors"
        )


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FakeEsisKit:
    """The fake ESIS's PKI (CA, server and client certificates), made once per test module."""
    return FakeEsis.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def esis(kit: FakeEsisKit) -> Iterator[FakeEsis]:
    """The fake ESIS on loopback (HTTPS, client certificates), for one test."""
    with kit.serve() as server:
        yield server
