"""The push endpoint: validation problems that name the key, limits, XML, concurrency."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.main import create_app
from tests.factories import auth, make_school
from tests.merge_helpers import activate, applied, counts, push, rows
from tests.snapshots import Snapshot, changed, find, school_snapshot

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "edexml"
OFFICIAL = Path(__file__).resolve().parent / "fixtures" / "edexml" / "official"


def _problem(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    return problem


def _mutate(kind: str) -> Snapshot:
    snap = school_snapshot(students=3)
    if kind == "unknown_group":
        find(snap, "students", "S0002")["group"] = "G9Z"
    elif kind == "duplicate_student":
        snap["students"].append(dict(find(snap, "students", "S0001")))
    elif kind == "other_school":
        snap["school"]["brin"] = "99ZZ"
    elif kind == "school_year_shape":
        snap["school"]["school_year"] = "2026/27"
    elif kind == "school_year_not_consecutive":
        snap["school"]["school_year"] = "2026-2028"
    elif kind == "unknown_student_of_guardian":
        find(snap, "guardians", "V0001")["students"].append({"student": "S9999"})
    elif kind == "composite_as_main_group":
        find(snap, "students", "S0003")["group"] = "LEES1"
    elif kind == "student_without_key":  # a bad value sets a record aside; no key refuses
        del find(snap, "students", "S0002")["key"]
    return snap


@pytest.mark.parametrize(
    ("kind", "named"),
    [
        ("unknown_group", "students (key S0002).group"),
        ("duplicate_student", "duplicate key 'S0001'"),
        ("other_school", "snapshot is for school 99ZZ00, not 12AB00"),
        ("school_year_shape", "school.school_year"),
        ("school_year_not_consecutive", "consecutive years"),
        ("unknown_student_of_guardian", "unknown student key 'S9999'"),
        ("composite_as_main_group", "main group 'LEES1' is a composite group"),
        ("student_without_key", "students[1].key"),
    ],
)
def test_invalid_snapshot_is_a_422_naming_the_key(
    client: TestClient, db: sessionmaker[Session], kind: str, named: str
) -> None:
    school = make_school(client, db)
    activate(client, school, school_snapshot(students=3))
    before = rows(db, "student")
    problem = _problem(push(client, school, _mutate(kind)))
    assert named in problem["detail"]
    assert problem["errors"]
    assert rows(db, "student") == before
    runs = client.get(f"/api/v1/schools/{school.key}/sync-runs", headers=auth(school.reader))
    assert runs.json()["items"][0]["status"] == "failed"


def test_the_same_invalid_body_gets_the_same_problem(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = _mutate("unknown_group")
    first = _problem(push(client, school, snap, fresh=False))
    second = _problem(push(client, school, snap, fresh=False))
    assert first["detail"] == second["detail"]
    assert len(rows(db, "sync_run")) == 1


def test_body_that_is_not_json_is_a_422(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db)
    response = client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=b'{"school": ',
        headers={**auth(school.esis), "content-type": "application/json"},
    )
    assert "not JSON" in _problem(response)["detail"]


def test_unsupported_media_type_is_a_415(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db)
    response = client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=b"a,b,c",
        headers={**auth(school.esis), "content-type": "text/csv"},
    )
    assert response.status_code == 415
    assert response.json()["type"] == "/problems/unsupported-media-type"


def test_oversized_push_is_a_413_and_nothing_is_stored(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    response = client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=b" " * (3 * 1024 * 1024),
        headers={**auth(school.esis), "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert rows(db, "snapshot") == []


def test_official_edexml_2_1_sample_loads(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db, brin="99ZZ")
    body = (OFFICIAL / "EDEXML-2.1" / "EDEXML.Voorbeeld.2.1.xml").read_bytes()
    response = client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=body,
        headers={**auth(school.esis), "content-type": "application/xml"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "stored"
    readiness = client.get(
        f"/api/v1/schools/{school.key}/esis/readiness", headers=auth(school.admin)
    ).json()
    assert readiness["school_year"] == "2014-2015"
    # The official sample carries no guardians, so no student is ready (R1).
    assert readiness["students_without_guardian"]["count"] > 0


def test_edexml_with_guardians_activates_like_json(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    body = (FIXTURES / "guardians-2.1.xml").read_bytes()
    response = client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=body,
        headers={**auth(school.esis), "content-type": "application/xml; charset=utf-8"},
    )
    assert response.status_code == 201, response.text
    refused = client.post(
        f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
    )
    assert refused.status_code == 409
    assert [g["key"] for g in refused.json()["guardians_without_email"]] == ["V0004"]
    fixed = body.replace(
        b"<voorletters>K</voorletters>",
        b"<voorletters>K</voorletters><emailadres>k@example.nl</emailadres>",
    )
    client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=fixed,
        headers={**auth(school.esis), "content-type": "application/xml"},
    )
    activated = client.post(
        f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
    )
    assert activated.status_code == 201, activated.text
    students = rows(db, "student")
    assert students
    assert {s["source"] for s in students} == {"esis"}
    assert rows(db, "guardian")
    assert not any("bsn" in str(s["esis_values"]) for s in students)


def test_concurrent_pushes_for_one_school_apply_one_after_another(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    """No interleaving: every push gets its own run and no record is duplicated."""
    school = make_school(client, db)
    base = school_snapshot(students=6)
    activate(client, school, base)
    bodies = []
    for i in range(6):
        snap = changed(base)
        snap["students"].append({"key": f"N{i}", "last_name": f"Nieuw{i}", "group": "G5A"})
        snap["guardians"].append(
            {
                "key": f"NV{i}",
                "last_name": "Ouder",
                "email": f"n{i}@example.nl",
                "students": [{"student": f"N{i}"}],
            }
        )
        find(snap, "students", "S0001")["last_name"] = f"Variant{i}"
        bodies.append(snap)
    results: list[int] = []

    def send(snap: Snapshot) -> None:
        # No generation time: which one comes last is the race's to decide (with one, a
        # push overtaken by a newer one is refused as stale, 409).
        results.append(push(client, school, snap, fresh=False).status_code)

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201] * 6
    keys = [s["esis_key"] for s in rows(db, "student")]
    assert len(keys) == len(set(keys)) == 12
    assert len(rows(db, "drift_item")) == 1  # one record, one field: one item
    runs = [r for r in rows(db, "sync_run") if r["kind"] == "merge" and r["status"] == "applied"]
    assert len(runs) == 6
    events = [e["seq"] for e in rows(db, "event")]
    assert sorted(events) == list(range(1, len(events) + 1))


def test_resync_after_changes_makes_no_duplicates(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    """A failure other roster syncs are known for: duplicates after a re-sync."""
    school = make_school(client, db)
    snap = school_snapshot(students=5)
    activate(client, school, snap)
    for _ in range(3):
        later = changed(snap)
        for student in later["students"]:
            student["last_name"] += "x"
        run = applied(push(client, school, later))
        assert counts(run, "student")["added"] == 0
    assert len(rows(db, "student")) == 5
    assert len(rows(db, "student_group")) == len(
        {(r["student_id"], r["group_id"]) for r in rows(db, "student_group")}
    )


def test_pushes_above_the_rate_limit_get_429_with_retry_after(
    settings: Settings, db: sessionmaker[Session]
) -> None:
    app = create_app(settings.model_copy(update={"push_rate_per_minute": 2}))
    try:
        with TestClient(app) as client:
            school = make_school(client, db)
            snap = school_snapshot(students=2)
            other = changed(snap)
            other["school"]["generated_at"] = "2026-11-27T17:00:00+01:00"
            assert push(client, school, snap, fresh=False).status_code == 201
            assert push(client, school, other, fresh=False).status_code == 201
            replay = push(client, school, other, fresh=False)  # the latest again: not counted
            limited = push(client, school, snap)
            assert limited.status_code == 429
            assert limited.headers["content-type"] == "application/problem+json"
            assert 1 <= int(limited.headers["retry-after"]) <= 60
            assert replay.status_code in (200, 201)
    finally:
        app.state.engine.dispose()


def test_snapshot_with_too_many_records_is_refused(
    settings: Settings, db: sessionmaker[Session]
) -> None:
    app = create_app(settings.model_copy(update={"max_snapshot_records": 5}))
    try:
        with TestClient(app) as client:
            school = make_school(client, db)
            response = push(client, school, school_snapshot(students=4))
            assert response.status_code == 422
            assert "more than the limit of 5" in response.json()["detail"]
    finally:
        app.state.engine.dispose()


def test_a_stored_body_reads_back_as_sent_and_is_lz4_on_postgresql(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    """The raw body is kept exactly; on PostgreSQL it is compressed with lz4 (issue 18: pglz
    took four times as long to store a school's snapshot). Its digest is what replays find."""
    keys = make_school(client, db)
    snapshot = school_snapshot(students=200)
    response = push(client, keys, snapshot)
    assert response.status_code == 201, response.text
    with db() as session:
        postgresql = session.get_bind().dialect.name == "postgresql"
        method = "pg_column_compression(body)" if postgresql else "NULL"
        body, digest, compression = session.execute(
            text(f"SELECT body, body_sha256, {method} FROM snapshot")
        ).one()
        # A server older than 14 or built without lz4 keeps its default (pglz).
        has_lz4 = postgresql and bool(
            session.execute(
                text(
                    "SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression' "
                    "AND 'lz4' = ANY(enumvals)"
                )
            ).scalar()
        )
    assert len(body) > 8_000  # above the size PostgreSQL compresses at
    assert json.loads(body)["students"] == snapshot["students"]
    assert hashlib.sha256(body).hexdigest() == digest  # nothing to scrub: stored as sent
    assert compression == ("lz4" if has_lz4 else "pglz" if postgresql else None)
    again = client.post(
        f"/api/v1/schools/{keys.key}/esis/snapshots",
        content=body,
        headers={**auth(keys.esis), "Content-Type": "application/json"},
    )
    assert again.status_code == 200, again.text  # the same body: found by its digest
    assert again.headers["Idempotent-Replayed"] == "true"
