"""AVG/GDPR: no personal data in logs, secrets shown once, purge leaves only ids."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.logging import JsonFormatter
from tests.factories import auth, make_school
from tests.merge_helpers import activate, push
from tests.snapshots import changed, find, school_snapshot


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logs() -> Iterator[Collect]:
    handler = Collect()
    logger = logging.getLogger("esis_sync")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_no_personal_data_in_logs_during_a_full_sync(
    client: TestClient, db: sessionmaker[Session], logs: Collect
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=4)
    activate(client, school, snap)
    later = changed(snap)
    find(later, "guardians", "V0001")["email"] = "nieuw.adres@example.nl"
    push(client, school, later)
    broken = changed(later)
    find(broken, "students", "S0002")["group"] = "NOPE"
    assert push(client, school, broken).status_code == 422
    assert logs.lines, "the sync logs something: otherwise this test proves nothing"
    for line in logs.lines:
        json.loads(line)  # structured
    text = "\n".join(logs.lines)
    personal = [s["last_name"] for s in later["students"]]
    personal += [s["birth_date"] for s in later["students"]]
    personal += [g["email"] for g in later["guardians"]] + [
        g["last_name"] for g in later["guardians"]
    ]
    personal += [s["email"] for s in later["staff"]] + ["nieuw.adres@example.nl"]
    leaked = [value for value in personal if value and value in text]
    assert leaked == []
    assert "sync_run_id" in text


def test_secrets_are_never_shown_again(
    client: TestClient, db: sessionmaker[Session], logs: Collect
) -> None:
    school = make_school(client, db)
    secrets = [school.admin, school.reader, school.esis, school.operator]
    for path in (
        f"/api/v1/schools/{school.key}",
        f"/api/v1/schools/{school.key}/api-keys",
        f"/api/v1/schools/{school.key}/events",
    ):
        body = client.get(path, headers=auth(school.admin)).text
        assert not any(secret in body for secret in secrets)
    assert not any(secret in line for line in logs.lines for secret in secrets)
