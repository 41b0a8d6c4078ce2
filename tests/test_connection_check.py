"""The connection test's dry run against the fake ESIS on loopback, on both databases: what
the change guard and the key-change proposals would do with the fetched answer, exactly as
the pull that follows does it, with nothing written by the test itself."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import SchoolKeys, auth, make_school
from tests.merge_helpers import FakeEsisPulls, one, rows
from tests.snapshots import Snapshot, changed, school_snapshot, with_new_key

STUDENTS = 20  # the change guard's floor: fewer and a kind is not judged
WRITTEN = ("snapshot", "sync_run", "event", "student", "drift_item", "key_change")


def _dry_run(client: TestClient, school: SchoolKeys) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/schools/{school.key}/esis/connection/test", headers=auth(school.admin)
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["reachable"] is True, result
    return result


def _written(db: sessionmaker[Session]) -> dict[str, list[dict[str, Any]]]:
    return {table: rows(db, table) for table in WRITTEN}


def _active(
    client: TestClient, db: sessionmaker[Session], pulls: FakeEsisPulls
) -> tuple[SchoolKeys, Snapshot]:
    """A school of 20 students, activated from a pull; its first dry run is not guarded."""
    school = make_school(client, db, update_policy="apply_unedited")
    pulls.connect(client, school)
    snap = school_snapshot(students=STUDENTS)
    for member in snap["staff"]:
        member["roles"] = ["LRK"]  # EDEXml role codes
    pulls.esis.script("12AB", "00", answer=snap)
    first = _dry_run(client, school)
    assert first["guard"] == {"applies": False, "would_hold": False, "reasons": [], "shares": None}
    assert first["key_changes"] == []
    assert pulls.pull(client, school, snap).json()["status"] == "stored"
    activated = client.post(
        f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
    )
    assert activated.status_code == 201, activated.text
    return school, snap


def test_the_dry_run_shows_the_key_change_a_pull_then_proposes(
    client: TestClient, db: sessionmaker[Session], fake_esis_pulls: FakeEsisPulls
) -> None:
    school, snap = _active(client, db, fake_esis_pulls)
    record = one(db, "student", esis_key="S0001")
    rekeyed = with_new_key(snap, "S0001", "S0901")
    fake_esis_pulls.esis.script("12AB", "00", answer=rekeyed)
    before = _written(db)
    result = _dry_run(client, school)
    assert _written(db) == before  # nothing proposed, stored or announced
    assert result["key_changes"] == [
        {
            "entity": "student",
            "record_id": str(record["id"]),
            "old_key": "S0001",
            "new_key": "S0901",
            "matched_by": "name_birth_date",
            "already_proposed": False,
        }
    ]
    assert result["guard"] == {
        "applies": True,
        "would_hold": False,
        "reasons": [],
        "shares": {"update": 0.75, "missing": 0.1},
    }

    pulled = fake_esis_pulls.pull(client, school, rekeyed).json()
    assert pulled["status"] == "applied", pulled
    assert pulled["counts"] == result["would"]  # paired, not missing + new
    proposals = client.get(
        f"/api/v1/schools/{school.key}/key-changes", headers=auth(school.admin)
    ).json()["items"]
    assert [(p["record_id"], p["old_key"], p["new_key"]) for p in proposals] == [
        (str(record["id"]), "S0001", "S0901")
    ]
    again = _dry_run(client, school)
    assert [k["already_proposed"] for k in again["key_changes"]] == [True]


def test_the_dry_run_says_the_change_guard_would_hold_the_pull(
    client: TestClient, db: sessionmaker[Session], fake_esis_pulls: FakeEsisPulls
) -> None:
    school, snap = _active(client, db, fake_esis_pulls)
    renamed = changed(snap)
    for student in renamed["students"][:16]:  # 80 %: above the guard's 75 %
        student["last_name"] += "-Nieuw"
    fake_esis_pulls.esis.script("12AB", "00", answer=renamed)
    before = _written(db)
    result = _dry_run(client, school)
    assert _written(db) == before
    guard = result["guard"]
    assert guard["applies"] is True and guard["would_hold"] is True
    assert guard["reasons"] == [
        "student: 16 of 20 records would be updated (80%), more than the change guard of 75%"
    ]
    assert any("change guard would hold" in w for w in result["warnings"])
    assert result["key_changes"] == []

    pulled = fake_esis_pulls.pull(client, school, renamed).json()
    assert pulled["status"] == "held", pulled
    assert pulled["report"]["guard"]["reasons"] == guard["reasons"]
    assert pulled["report"]["guard"]["would"] == result["would"]
