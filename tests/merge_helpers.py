"""Helpers for merge tests: push through the API, pull from the fake ESIS, inspect through
plain SQL.

The fake-ESIS fixtures (`esis_kit`, `fake_esis_pulls`) are registered for every test module by
`pytest_plugins` in tests/conftest.py; ask for `fake_esis_pulls` to pull through it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import metadata, utcnow
from fake_esis.server import DEFAULT_AUTORISATIE, FakeEsis, FakeEsisKit
from tests.factories import SchoolKeys, auth
from tests.snapshots import Snapshot

_stamp = itertools.count()


def push(
    client: TestClient,
    school: SchoolKeys,
    snapshot: Snapshot,
    *,
    fresh: bool = True,
    headers: dict[str, str] | None = None,
) -> Response:
    """Push a snapshot; `fresh` gives it a new generated_at so the body is new."""
    if fresh:
        moment = dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=next(_stamp))
        snapshot = {
            **snapshot,
            "school": {**snapshot["school"], "generated_at": moment.isoformat()},
        }
    response: Response = client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        json=snapshot,
        headers={**auth(school.esis), **(headers or {})},
    )
    return response


def applied(response: Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    run: dict[str, Any] = response.json()
    assert run["status"] == "applied", run
    return run


def activate(client: TestClient, school: SchoolKeys, snapshot: Snapshot) -> dict[str, Any]:
    stored = push(client, school, snapshot)
    assert stored.json()["status"] == "stored", stored.text
    response = client.post(
        f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
    )
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


def rows(db: sessionmaker[Session], table_name: str, /, **where: Any) -> list[dict[str, Any]]:
    t = metadata.tables[table_name]
    query = select(t)
    for column, value in where.items():
        query = query.where(t.c[column] == value)
    with db() as session:
        return [dict(r) for r in session.execute(query).mappings()]


def one(db: sessionmaker[Session], table_name: str, /, **where: Any) -> dict[str, Any]:
    found = rows(db, table_name, **where)
    assert len(found) == 1, found
    return found[0]


def edit_locally(
    db: sessionmaker[Session], table_name: str, record_id: uuid.UUID, /, **values: Any
) -> None:
    """What a user's edit through the roster API does: new values, marked as edited locally."""
    t = metadata.tables[table_name]
    with db.begin() as session:
        row = session.execute(select(t).where(t.c.id == record_id)).mappings().one()
        edits = dict(row["local_edits"] or {})
        for field in values:
            edits[field] = {"by": "key:test", "at": utcnow().isoformat()}
        session.execute(
            update(t)
            .where(t.c.id == record_id)
            .values(**values, local_edits=edits, version=row["version"] + 1)
        )


def delete_locally(db: sessionmaker[Session], name: str, record_id: uuid.UUID) -> None:
    """What a user's DELETE through the roster API does: a soft delete."""
    t = metadata.tables[name]
    with db.begin() as session:
        session.execute(
            update(t).where(t.c.id == record_id).values(deleted_at=utcnow(), deleted_by="key:test")
        )


def counts(run: dict[str, Any], entity: str) -> dict[str, int]:
    result: dict[str, int] = run["counts"].get(entity, {})
    return result


@contextlib.contextmanager
def failing_insert(db: sessionmaker[Session], backend: str, *, key: str) -> Iterator[None]:
    """A database trigger fails the insert of the student with `key`: a constraint error
    injected half-way into a merge, without touching the service's code."""
    create = {
        "sqlite": [
            "CREATE TRIGGER boom BEFORE INSERT ON student "
            f"WHEN NEW.esis_key = '{key}' BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        ],
        "postgresql": [
            "CREATE OR REPLACE FUNCTION boom() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER boom BEFORE INSERT ON student FOR EACH ROW "
            f"WHEN (NEW.esis_key = '{key}') EXECUTE FUNCTION boom()",
        ],
    }[backend]
    drop = "DROP TRIGGER IF EXISTS boom" + (" ON student" if backend == "postgresql" else "")
    with db.begin() as session:
        for statement in create:
            session.connection().exec_driver_sql(statement)
    try:
        yield
    finally:
        with db.begin() as session:
            session.connection().exec_driver_sql(drop)


@dataclass(frozen=True)
class FakeEsisPulls:
    """The fake ESIS on loopback (`esis`, with the certificates of `kit`): `connect` points a
    school's coupling at it, `pull` scripts its answer for that school and pulls."""

    esis: FakeEsis
    kit: FakeEsisKit

    def connection(self) -> dict[str, Any]:
        """The body of PUT .../esis/connection that reaches this fake ESIS."""
        return {
            "url": self.esis.url,
            "certificate": {
                "cert_pem": self.kit.client.cert.decode(),
                "key_pem": self.kit.client.key.decode(),
            },
            "ca_pem": self.kit.ca.cert.decode(),
            **DEFAULT_AUTORISATIE,
        }

    def connect(self, client: TestClient, school: SchoolKeys) -> None:
        connected = client.put(
            f"/api/v1/schools/{school.key}/esis/connection",
            json=self.connection(),
            headers=auth(school.admin),
        )
        assert connected.status_code == 200, connected.text

    def pull(
        self, client: TestClient, school: SchoolKeys, answer: bytes | Mapping[str, Any]
    ) -> Response:
        """Script `answer` (an EDEXml document, other bytes, or a snapshot) for the school's
        BRIN and branch, then pull as its admin; the response of POST .../esis/pulls."""
        self.esis.script(school.key[:4], school.key[4:], answer=answer)
        response: Response = client.post(
            f"/api/v1/schools/{school.key}/esis/pulls", headers=auth(school.admin)
        )
        return response


@pytest.fixture(scope="session")
def esis_kit(tmp_path_factory: pytest.TempPathFactory) -> FakeEsisKit:
    """The fake ESIS's PKI (CA, server and client certificates), made once per run."""
    return FakeEsis.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def fake_esis_pulls(esis_kit: FakeEsisKit) -> Iterator[FakeEsisPulls]:
    """The fake ESIS serving on loopback for one test."""
    with esis_kit.serve() as server:
        yield FakeEsisPulls(server, esis_kit)
