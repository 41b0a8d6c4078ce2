"""Leniency per record in an EDEXml file, on both databases: a guardian whose value the schema
refuses is set aside on its own (with its links); its student, and the student's other
guardians, are read and applied as usual."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.esis.edexml import read_edexml
from fake_esis.server import edex_from_snapshot
from tests.factories import SchoolKeys, auth, make_school
from tests.merge_helpers import activate, one, rows
from tests.snapshots import Snapshot, changed, find, school_snapshot

BAD_PHONE = b"bel mij niet"  # letters: the guardian block's phone pattern refuses it


def _active(client: TestClient, db: sessionmaker[Session]) -> tuple[SchoolKeys, Snapshot]:
    # ESIS's changes to persons are applied (not drift) so that "applied" shows in the row.
    school = make_school(client, db, update_policy="apply_unedited")
    snap = school_snapshot(students=4)
    find(snap, "guardians", "V0002")["phone"] = "+31600000002"
    activate(client, school, snap)
    return school, snap


def _next_day(snap: Snapshot) -> bytes:
    """S0002 renamed, a second guardian V0022 for it, and V0002's phone unusable."""
    later = changed(snap)
    find(later, "students", "S0002")["given_name"] = "Nieuw"
    find(later, "guardians", "V0002")["last_name"] = "Nooit"
    later["guardians"].append(
        {
            "key": "V0022",
            "last_name": "Tweede",
            "students": [{"student": "S0002", "relation": "father"}],
        }
    )
    body = edex_from_snapshot(later)
    assert body.count(b"+31600000002") == 1
    return body.replace(b"+31600000002", BAD_PHONE)


def test_r4_a_bad_guardian_in_an_edexml_file_is_set_aside_alone_when_read() -> None:
    school = school_snapshot(students=4)
    find(school, "guardians", "V0002")["phone"] = "+31600000002"
    read = read_edexml(_next_day(school))
    kept = {(k.entity, k.key) for k in read.kept}
    assert kept == {("guardian", "V0002")}, read.kept
    assert next(k.field for k in read.kept) == "telefoonnummer"
    assert "S0002" in {s.key for s in read.snapshot.students}
    guardians = {g.key for g in read.snapshot.guardians}
    assert "V0002" not in guardians
    assert {"V0001", "V0022", "V0003", "V0004"} <= guardians


def test_r4_an_edexml_push_with_one_bad_guardian_keeps_its_student(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _active(client, db)
    guardian_before = one(db, "guardian", esis_key="V0002")
    response = client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=_next_day(snap),
        headers={**auth(school.esis), "content-type": "application/xml"},
    )
    assert response.status_code in (200, 201), response.text
    run: dict[str, Any] = response.json()
    assert run["status"] == "applied", run
    assert run["applied_with_warnings"] is True
    assert {(k["entity"], k["key"], k["field"]) for k in run["kept"]} == {
        ("guardian", "V0002", "telefoonnummer")
    }
    # The student is read and applied; so is its other, new guardian.
    assert one(db, "student", esis_key="S0002")["given_name"] == "Nieuw"
    assert one(db, "guardian", esis_key="V0022")["source"] == "esis"
    # The guardian set aside is left exactly as it was, and so are its links.
    assert one(db, "guardian", esis_key="V0002") == guardian_before
    assert all(r["missing_in_esis_since"] is None for r in rows(db, "student_guardian"))
    assert all(r["missing_in_esis_since"] is None for r in rows(db, "guardian"))


def test_r4_a_shared_guardian_bad_under_one_student_is_set_aside_and_both_students_read() -> None:
    school = school_snapshot(students=4)
    shared = find(school, "guardians", "V0001")
    shared["phone"] = "+31600000002"
    shared["students"].append({"student": "S0003", "relation": "mother"})
    body = edex_from_snapshot(school)
    # The guardian is written under each of its students: spoil the second occurrence only.
    first = body.index(b"+31600000002")
    second = body.index(b"+31600000002", first + 1)
    body = body[:second] + BAD_PHONE + body[second + len(b"+31600000002") :]
    read = read_edexml(body)
    assert {(k.entity, k.key) for k in read.kept} == {("guardian", "V0001")}
    assert {"S0001", "S0003"} <= {s.key for s in read.snapshot.students}
