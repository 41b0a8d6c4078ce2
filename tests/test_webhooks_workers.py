"""Webhook deliveries from a real `esis-sync worker` process: procrastinate's periodic task on
PostgreSQL, the embedded loop's webhook thread on SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from app.config import Settings
from app.main import create_app
from tests.factories import auth, make_school
from tests.merge_helpers import activate
from tests.procs import fresh_database
from tests.snapshots import school_snapshot
from tests.webhook_receiver import receiver

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


def test_a_worker_process_delivers_the_feed_in_order(fresh_url: str) -> None:
    key = Fernet.generate_key().decode()
    settings = Settings(
        database_url=fresh_url, secret_key=key, bootstrap_operator_key=False, _env_file=None
    )
    env = {
        **os.environ,
        "ESIS_SYNC_DATABASE_URL": fresh_url,
        "ESIS_SYNC_SECRET_KEY": key,
        "ESIS_SYNC_WEBHOOK_INTERVAL_SECONDS": "1",
        "ESIS_SYNC_LOG_LEVEL": "WARNING",
    }
    app = create_app(settings)
    with receiver() as hook, TestClient(app) as client:
        db = app.state.sessionmaker
        school = make_school(client, db)
        made = client.post(
            f"/api/v1/schools/{school.key}/webhooks",
            json={"url": hook.url},
            headers=auth(school.admin),
        ).json()
        activate(client, school, school_snapshot(students=3))
        with app.state.engine.connect() as conn:
            total = conn.execute(text("SELECT max(seq) FROM event")).scalar_one()
        worker = subprocess.Popen(
            [sys.executable, "-m", "app", "worker"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(hook.delivered()) < total - 1:
                time.sleep(0.2)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        app.state.engine.dispose()
    seqs = [
        Webhook(made["secret"]).verify(r.body.decode(), r.headers)["data"]["seq"]
        for r in hook.delivered()
    ]
    assert seqs == list(range(seqs[0], total + 1)), seqs
