"""Issue 13 against the real service as a process: no personal data in its whole output
whatever error a request provokes (both databases), and exactly one run per snapshot when 20
identical pushes with one Idempotency-Key race on PostgreSQL with 2 uvicorn workers."""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db import make_engine
from app.sync.models import SyncRun
from tests import procs
from tests.snapshots import school_snapshot

# Distinctive values a log must never show, whatever goes wrong with the request carrying them.
PERSONAL = {
    "given": "Zebediah",
    "last": "Quennell-Vandermolen",
    "birth": "2016-02-29",
    "email": "zebediah.quennell@ouders.example.nl",
    "guardian": "Philippa Oudgenoeg",
}


def _personal_snapshot(brin: str) -> dict[str, object]:
    snap = school_snapshot(brin=brin, students=2)
    student = snap["students"][0]
    student.update(given_name=PERSONAL["given"], last_name=PERSONAL["last"])
    student["birth_date"] = PERSONAL["birth"]
    guardian = snap["guardians"][0]
    guardian.update(given_name=PERSONAL["guardian"], email=PERSONAL["email"])
    return snap


def _cursor(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    with procs.fresh_database(backend, tmp_path) as url:
        yield url


def test_no_personal_value_reaches_the_log_on_any_error_path(
    database_url: str, tmp_path: Path
) -> None:
    operator = procs.operator_key(database_url)
    env = {"ESIS_SYNC_LOG_LEVEL": "DEBUG"}
    with (
        procs.running(database_url, tmp_path / "logs", env=env) as service,
        procs.client(service.base_url) as http,
    ):
        school = procs.create_school(http, operator, "61QA")
        esis = procs.bearer(school.esis)
        admin = procs.bearer(school.admin)
        push = f"/api/v1/schools/{school.key}/esis/snapshots"
        snap = _personal_snapshot("61QA")
        body = json.dumps(snap).encode()
        nul = body.replace(PERSONAL["last"].encode(), PERSONAL["last"].encode() + b"\\u0000")
        answers = [
            http.post(push, content=nul, headers={**esis, "content-type": "APPLICATION/JSON"}),
            http.post(push, content=body, headers={**esis, "content-type": "application/json"}),
        ]
        stale = json.loads(body)
        stale["school"]["generated_at"] = "2020-01-01T00:00:00+00:00"
        stale["students"][1]["last_name"] = PERSONAL["last"] + "-Stale"
        answers.append(http.post(push, json=stale, headers=esis))  # applied: no time before
        newer = json.loads(body)
        newer["school"]["generated_at"] = "2026-11-01T00:00:00+00:00"
        answers.append(http.post(push, json=newer, headers=esis))
        answers.append(http.post(push, json=stale, headers=esis))  # stale now: 409
        wrong = json.loads(body)
        wrong["students"][0]["birth_date"] = PERSONAL["given"]  # a name where a date goes
        wrong["students"][0]["bsn"] = "999990019"
        answers.append(http.post(push, json=wrong, headers=esis))
        uwlr_type = {**esis, "content-type": "application/vnd.uwlr.leerlinggegevens+xml"}
        answers.append(http.post(push, content=body, headers=uwlr_type))
        made = http.post(
            f"/api/v1/schools/{school.key}/students",
            json={"last_name": PERSONAL["last"], "given_name": PERSONAL["given"]},
            headers=admin,
        )
        student = f"/api/v1/schools/{school.key}/students/{made.json().get('id')}"
        answers += [
            http.patch(student, json={"esis_key": PERSONAL["last"] * 20}, headers=admin),
            http.patch(student, json={"email": PERSONAL["email"] + "\u0000"}, headers=admin),
            http.patch(
                student,
                json={"given_name": PERSONAL["given"], "birth_date": PERSONAL["guardian"]},
                headers=admin,
            ),
            http.post(
                f"/api/v1/schools/{school.key}/groups",
                json={"name": PERSONAL["guardian"], "student_ids": [made.json().get("id")] * 2},
                headers=admin,
            ),
            http.get(
                f"/api/v1/schools/{school.key}/students?cursor="
                + _cursor([PERSONAL["birth"], PERSONAL["given"]]),
                headers=admin,
            ),
            http.get(
                "/api/v1/schools?cursor=" + _cursor(PERSONAL["last"] + "\u0000"),
                headers=procs.bearer(operator),
            ),
        ]
    statuses = [a.status_code for a in answers]
    assert all(s < 500 for s in statuses), statuses
    assert 409 in statuses and 422 in statuses and 415 in statuses
    logged = service.log_text()
    assert logged.strip(), "the service logged nothing: the test would prove nothing"
    for name, value in {**PERSONAL, "bsn": "999990019"}.items():
        assert value not in logged, f"{name} ({value}) is in the log"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_twenty_identical_pushes_with_one_key_give_one_run(
    database_url: str, tmp_path: Path
) -> None:
    operator = procs.operator_key(database_url)
    with procs.running(database_url, tmp_path / "logs", workers=2) as service:
        with procs.client(service.base_url) as http:
            school = procs.create_school(http, operator, "62QB")
        body = json.dumps(school_snapshot(brin="62QB", students=40)).encode()
        barrier = threading.Barrier(20)
        statuses: list[int] = []
        run_ids: list[str] = []

        def send() -> None:
            with procs.client(service.base_url) as own:
                barrier.wait()
                answer = own.post(
                    f"/api/v1/schools/{school.key}/esis/snapshots",
                    content=body,
                    headers={
                        **procs.bearer(school.esis),
                        "content-type": "application/json",
                        "idempotency-key": "one-key-for-all",
                    },
                )
            statuses.append(answer.status_code)
            run_ids.append(str(answer.json().get("id")))

        threads = [threading.Thread(target=send) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert Counter(statuses) == {201: 1, 200: 19}, Counter(statuses)
    assert len(set(run_ids)) == 1
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            runs = conn.scalar(select(func.count()).select_from(SyncRun))
    finally:
        engine.dispose()
    assert runs == 1
