"""Workers on PostgreSQL (procrastinate): two worker processes share the due schools, a school
is pulled by one worker at a time, and a killed worker's pull is done by another."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.config import Settings
from app.main import create_app
from fake_esis.server import DEFAULT_AUTORISATIE, FakeEsis, FakeEsisKit
from tests.conftest import postgres_database
from tests.factories import SchoolKeys, auth, make_school
from tests.snapshots import school_snapshot

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def pg() -> Iterator[str]:
    with postgres_database() as url:
        yield url


def _env(url: str, key: str) -> dict[str, str]:
    return {
        **os.environ,
        "ESIS_SYNC_DATABASE_URL": url,
        "ESIS_SYNC_SECRET_KEY": key,
        "ESIS_SYNC_SCHEDULER_INTERVAL_SECONDS": "5",
        "ESIS_SYNC_JOB_STALLED_SECONDS": "3",
        "ESIS_SYNC_PULL_ATTEMPTS": "1",
        "ESIS_SYNC_LOG_LEVEL": "WARNING",
        "ESIS_SYNC_ALLOW_PRIVATE_ESIS_HOSTS": "true",  # the fake ESIS is on loopback
    }


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _schools(
    client: TestClient, esis: FakeEsis, kit: FakeEsisKit, n: int, **script: Any
) -> list[SchoolKeys]:
    made = []
    for i in range(n):
        brin = f"{40 + i:02d}JB"
        school = make_school(
            client,
            client.app.state.sessionmaker,  # type: ignore[attr-defined]
            brin=brin,
            daily_sync_time="00:00:00",
        )
        snap = school_snapshot(students=3)
        snap["school"]["brin"] = brin
        for member in snap["staff"]:
            member["roles"] = ["LRK"]  # EDEXml role codes
        esis.script(brin, "00", answer=snap)
        client.put(
            f"/api/v1/schools/{school.key}/esis/connection",
            headers=auth(school.admin),
            json={
                "url": esis.url,
                "ca_pem": kit.ca.cert.decode(),
                "certificate": {
                    "cert_pem": kit.client.cert.decode(),
                    "key_pem": kit.client.key.decode(),
                },
                **DEFAULT_AUTORISATIE,
            },
        ).raise_for_status()
        assert (
            client.post(
                f"/api/v1/schools/{school.key}/esis/pulls", headers=auth(school.admin)
            ).json()["status"]
            == "stored"
        )
        client.post(
            f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
        ).raise_for_status()
        with client.app.state.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.execute(text("UPDATE esis_connection SET last_pulled_on = NULL"))
        daily = {
            **snap,
            "students": [*snap["students"], {"key": "NEW1", "last_name": "Nieuw", "group": "G5A"}],
            "guardians": [
                *snap["guardians"],
                {
                    "key": "NV1",
                    "last_name": "Ouder",
                    "email": "nv1@example.nl",
                    "students": [{"student": "NEW1"}],
                },
            ],
        }
        esis.script(brin, "00", answer=daily, **script)  # the next day's data: one new student
        made.append(school)
    return made


@contextmanager
def _service(pg: str) -> Iterator[tuple[str, Any, list[subprocess.Popen[bytes]]]]:
    """The key for stored secrets, the app, and a list for the worker processes the test
    starts: killed at the end, as the app's engine is disposed."""
    key = Fernet.generate_key().decode()
    app = create_app(
        Settings(database_url=pg, secret_key=key, allow_private_esis_hosts=True, _env_file=None)
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        yield key, app, workers
    finally:
        for w in workers:
            w.kill()
            w.wait(10)
        app.state.engine.dispose()


def _scheduled_runs(url: str) -> list[tuple[str, str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [
                (str(r[0]), r[1])
                for r in conn.execute(
                    text(
                        "SELECT school_id, status FROM sync_run "
                        "WHERE origin = 'pull' AND actor = 'schedule'"
                    )
                )
            ]
    finally:
        engine.dispose()


def _wait(predicate: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_two_workers_share_the_schools_one_pull_each(pg: str, kit: FakeEsisKit) -> None:
    with _service(pg) as (key, app, workers), kit.serve() as esis, TestClient(app) as client:
        schools = _schools(client, esis, kit, 4, mode="stall", delay=1.0)
        env = _env(pg, key)
        workers.extend([_worker(env), _worker(env)])
        assert _wait(lambda: len(_scheduled_runs(pg)) >= 4, 60), _scheduled_runs(pg)
        time.sleep(6)  # another tick or two: nothing is pulled twice
        runs = _scheduled_runs(pg)
        assert len(runs) == 4
        assert len({school for school, _ in runs}) == 4
        for school in schools:
            assert esis.served(school.key[:4], "00") == 1  # the daily pull, once


def test_a_killed_workers_pull_is_done_by_another(pg: str, kit: FakeEsisKit) -> None:
    with _service(pg) as (key, app, workers), kit.serve() as esis, TestClient(app) as client:
        (school,) = _schools(client, esis, kit, 1, mode="stall", delay=4.0)
        env = _env(pg, key)
        first = _worker(env)
        workers.append(first)
        brin = school.key[:4]
        assert _wait(lambda: esis.served(brin, "00") >= 1, 60)  # the daily pull began
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert _scheduled_runs(pg) == []  # it died mid-pull: nothing recorded
        workers.append(_worker(env))
        done = _wait(lambda: [s for _, s in _scheduled_runs(pg)] == ["applied"], 60)
        assert done, f"the pull was not retried: {_scheduled_runs(pg)}"


def test_a_worker_runs_as_many_pulls_at_once_as_its_concurrency(pg: str, kit: FakeEsisKit) -> None:
    """Python's default thread pool (min(32, CPUs + 4) threads) would cap the pulls a worker
    runs at once below ESIS_SYNC_WORKER_CONCURRENCY: the worker sizes its own."""
    concurrency = min(32, (os.cpu_count() or 1) + 4) + 2  # more than the default pool's threads
    with _service(pg) as (key, app, workers), kit.serve() as esis, TestClient(app) as client:
        # ESIS answers after 30 s: every pull that has a thread is waiting for it at once.
        _schools(client, esis, kit, concurrency, mode="stall", delay=30.0)
        asked = len(esis.requests)
        env = {**_env(pg, key), "ESIS_SYNC_WORKER_CONCURRENCY": str(concurrency)}
        workers.append(_worker(env))
        assert _wait(lambda: len(esis.requests) > asked, 30)  # the first daily pull began
        began = time.monotonic()
        all_at_once = _wait(lambda: len(esis.requests) - asked >= concurrency, 10)
        waiting = len(esis.requests) - asked
        assert all_at_once, f"{waiting} of {concurrency} pulls at once"
        assert time.monotonic() - began < 30  # none of them was answered yet
        assert _scheduled_runs(pg) == []
