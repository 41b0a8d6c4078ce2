"""Leniency per record, strictness per snapshot, on both databases: a snapshot (JSON push,
EDEXml push, a pull from the fake ESIS) with one record holding an unusable value applies
everything else, leaves that record exactly as it is and lists it; what makes the whole
snapshot untrustworthy still refuses it with nothing applied."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session, sessionmaker

from fake_esis.server import edex_from_snapshot
from tests.factories import SchoolKeys, auth, make_school
from tests.merge_helpers import FakeEsisPulls, activate, counts, one, push, rows
from tests.snapshots import Snapshot, changed, find, school_snapshot


def _active(client: TestClient, db: sessionmaker[Session]) -> tuple[SchoolKeys, Snapshot]:
    # ESIS's changes to persons are applied (not drift) so that "applied" shows in the row.
    school = make_school(client, db, update_policy="apply_unedited")
    snap = school_snapshot(students=4)
    for member in snap["staff"]:
        member["roles"] = ["LRK"]
    activate(client, school, snap)
    return school, snap


def _next_day(snap: Snapshot) -> Snapshot:
    """A day's changes: S0001 renamed, a new student S0100; S0002 will hold a bad value."""
    later = changed(snap)
    find(later, "students", "S0001")["given_name"] = "Nieuw"
    find(later, "students", "S0002")["given_name"] = "Nooit"
    later["students"].append({"key": "S0100", "last_name": "Instromer", "group": "G5A"})
    return later


def _applied_with_warnings(response: Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    run: dict[str, Any] = response.json()
    assert run["status"] == "applied", run
    assert run["applied_with_warnings"] is True
    return run


def _everything_else_applied(db: sessionmaker[Session], before: dict[str, Any]) -> None:
    assert one(db, "student", esis_key="S0001")["given_name"] == "Nieuw"
    assert one(db, "student", esis_key="S0100")["source"] == "esis"
    bad = one(db, "student", esis_key="S0002")
    # Left exactly as it was: not updated, not marked missing; nor its guardian and links.
    assert bad == before
    assert all(r["missing_in_esis_since"] is None for r in rows(db, "student_group"))
    assert all(r["missing_in_esis_since"] is None for r in rows(db, "student_guardian"))
    assert all(r["missing_in_esis_since"] is None for r in rows(db, "guardian"))


def test_r4_a_json_push_with_one_bad_record_applies_the_rest_and_lists_it(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _active(client, db)
    before = one(db, "student", esis_key="S0002")
    later = _next_day(snap)
    find(later, "students", "S0002")["birth_date"] = "2019-02-30"
    later["students"].append({"key": "K" * 300, "last_name": "Te lang", "group": "G5A"})
    find(later, "groups", "G6A")["year_level"] = 150
    run = _applied_with_warnings(push(client, school, later))
    kept = {(k["entity"], k["key"][:8], k["field"]) for k in run["kept"]}
    assert ("student", "S0002", "birth_date") in kept
    assert ("student", "K" * 8, "key") in kept
    assert ("group", "G6A", "year_level") in kept
    # Students of the group set aside are left as they are with it; their guardians too.
    assert {k["key"] for k in run["kept"] if k["entity"] == "student"} >= {"S0002", "S0004"}
    assert all(k["reason"] for k in run["kept"])
    assert counts(run, "student")["added"] == 1  # S0100; the long key is not added
    assert any("left as it is" in w for w in run["warnings"])
    _everything_else_applied(db, before)
    assert one(db, "school_group", esis_key="G6A")["year_level"] == 6
    assert not [r for r in rows(db, "student") if (r["esis_key"] or "").startswith("KKK")]
    listed = client.get(f"/api/v1/schools/{school.key}/sync-runs", headers=auth(school.admin))
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"][0]["kept"] == run["kept"]


def test_r4_an_edexml_push_with_one_bad_record_applies_the_rest_and_lists_it(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _active(client, db)
    before = one(db, "student", esis_key="S0002")
    later = _next_day(snap)
    birth = find(later, "students", "S0002")["birth_date"]
    body = edex_from_snapshot(later).replace(birth.encode(), b"2019-02-30", 1)
    response = client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=body,
        headers={**auth(school.esis), "content-type": "application/xml"},
    )
    run = _applied_with_warnings(response)
    assert next((k["entity"], k["key"], k["field"]) for k in run["kept"]) == (
        "student",
        "S0002",
        "geboortedatum",
    )
    assert "not a date" in run["kept"][0]["reason"]
    _everything_else_applied(db, before)


def test_r3_a_pull_with_one_bad_record_applies_the_rest_and_lists_it(
    client: TestClient, db: sessionmaker[Session], fake_esis_pulls: FakeEsisPulls
) -> None:
    school, snap = _active(client, db)
    fake_esis_pulls.connect(client, school)
    before = one(db, "student", esis_key="S0002")
    later = _next_day(snap)
    birth = find(later, "students", "S0002")["birth_date"]
    edex = edex_from_snapshot(later).replace(birth.encode(), b"2019-02-30", 1)
    pulled = fake_esis_pulls.pull(client, school, edex)
    run = _applied_with_warnings(pulled)
    assert ("student", "S0002") in {(k["entity"], k["key"]) for k in run["kept"]}
    _everything_else_applied(db, before)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[1, 2]", "application/json"),  # not an object
        (
            b'{"school": {"brin": "12AB", "school_year": "2026-2027"}, "students": {}}',
            "application/json",
        ),
        (b"<EDEX><school>", "application/xml"),  # truncated
    ],
    ids=["json-array", "json-wrong-shape", "xml-truncated"],
)
def test_an_untrustworthy_snapshot_is_still_refused_whole(
    client: TestClient, db: sessionmaker[Session], body: bytes, content_type: str
) -> None:
    school, _ = _active(client, db)
    before = rows(db, "student")
    response = client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=body,
        headers={**auth(school.esis), "content-type": content_type},
    )
    assert response.status_code == 422, response.text
    assert rows(db, "student") == before


def test_a_clean_snapshot_is_applied_without_warnings(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _active(client, db)
    response = push(client, school, _next_day(snap))
    assert response.status_code in (200, 201), response.text
    run = response.json()
    assert run["status"] == "applied" and run["kept"] == []
    assert run["applied_with_warnings"] is False


def test_r7_a_student_set_aside_in_the_new_years_snapshot_is_not_removed(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    """Leniency at the year transition: a record with an unusable value counts as present,
    so a bad value in the first snapshot of a new year never removes anyone (R7-R9)."""
    school, snap = _active(client, db)
    before = one(db, "student", esis_key="S0002")
    new_year = changed(snap)
    new_year["school"]["school_year"] = "2027-2028"
    new_year.pop("generated_at", None)
    find(new_year, "students", "S0002")["birth_date"] = "2019-02-30"
    response = push(client, school, new_year)
    assert response.status_code in (200, 201), response.text
    run = response.json()
    assert run["status"] == "applied", run
    assert ("student", "S0002") in {(k["entity"], k["key"]) for k in run["kept"]}
    kept = one(db, "student", esis_key="S0002")
    assert kept["deleted_at"] is None
    assert kept == before
    assert all(r["deleted_at"] is None for r in rows(db, "student"))
