"""R7-R11 one at a time: each test proves one rule of the year transition on its own.

The whole-year scenario in test_year_transition.py shows them together; these show each
alone, so a failure names the rule that broke.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import SchoolKeys, auth, make_school
from tests.merge_helpers import activate, one, push, rows
from tests.snapshots import Snapshot, changed, find, school_snapshot

NEXT = "2027-2028"


def _url(school: SchoolKeys, path: str) -> str:
    return f"/api/v1/schools/{school.key}/{path}"


def _school(client: TestClient, db: sessionmaker[Session]) -> tuple[SchoolKeys, Snapshot]:
    school = make_school(client, db)
    snap = school_snapshot(students=10)
    activate(client, school, snap)
    return school, snap


def _next_year(snap: Snapshot, *, leaving: tuple[str, ...] = ()) -> Snapshot:
    """The next year's snapshot without `leaving`; each guardian keeps the children who stay."""
    nxt = changed(snap)
    nxt["school"]["school_year"] = NEXT
    nxt["students"] = [s for s in nxt["students"] if s["key"] not in leaving]
    for guardian in nxt["guardians"]:
        guardian["students"] = [g for g in guardian["students"] if g["student"] not in leaving]
    nxt["guardians"] = [g for g in nxt["guardians"] if g["students"]]
    return nxt


def _transition(client: TestClient, school: SchoolKeys, nxt: Snapshot) -> dict[str, Any]:
    run = push(client, school, nxt).json()
    assert run["status"] == "applied", run
    transition = client.get(
        _url(school, f"year-transitions/{run['report']['year_transition_id']}"),
        headers=auth(school.admin),
    ).json()
    assert transition["status"] == "applied", transition
    report: dict[str, Any] = transition["report"]
    return report


def _deleted(db: sessionmaker[Session], table: str, key: str) -> bool:
    return one(db, table, esis_key=key)["deleted_at"] is not None


def test_r7_students_absent_from_the_new_year_are_removed(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _school(client, db)
    report = _transition(client, school, _next_year(snap, leaving=("S0001", "S0002")))
    assert {i["esis_key"] for i in report["students_removed"]["items"]} == {"S0001", "S0002"}
    assert _deleted(db, "student", "S0001") and _deleted(db, "student", "S0002")
    staying = [r for r in rows(db, "student") if r["esis_key"] not in ("S0001", "S0002")]
    assert len(staying) == 8 and all(r["deleted_at"] is None for r in staying)


def test_r8_guardians_are_removed_only_when_all_their_children_leave(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=10)
    # V0001 is the guardian of S0001 and of S0002 (siblings); only S0001 leaves.
    find(snap, "guardians", "V0001")["students"].append({"student": "S0002", "relation": "mother"})
    activate(client, school, snap)
    report = _transition(client, school, _next_year(snap, leaving=("S0001", "S0003")))
    assert {i["esis_key"] for i in report["guardians_removed"]["items"]} == {"V0003"}
    assert _deleted(db, "guardian", "V0003")
    assert not _deleted(db, "guardian", "V0001"), "a sibling stays: so does the guardian"


def test_r9_staff_no_longer_at_the_school_are_removed(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _school(client, db)
    nxt = _next_year(snap)
    nxt["staff"] = [s for s in nxt["staff"] if s["key"] != "LK02"]
    report = _transition(client, school, nxt)
    assert [i["esis_key"] for i in report["staff_removed"]["items"]] == ["LK02"]
    assert _deleted(db, "staff", "LK02")
    assert not _deleted(db, "staff", "LK01")
    assert report["students_removed"]["count"] == 0


def test_r10_local_groups_stay_and_are_flagged(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _school(client, db)
    bso = client.post(_url(school, "groups"), json={"name": "BSO"}, headers=auth(school.admin))
    assert bso.status_code == 201, bso.text
    nxt = _next_year(snap)
    nxt["groups"] = [g for g in nxt["groups"] if g["key"] != "LEES1"]  # an ESIS group ends
    for student in nxt["students"]:
        student["composite_groups"] = []
    nxt["staff"][1]["groups"] = ["G6A"]
    report = _transition(client, school, nxt)
    assert [i["id"] for i in report["local_groups_flagged"]["items"]] == [bso.json()["id"]]
    local = one(db, "school_group", name="BSO")
    assert local["deleted_at"] is None, "R10: never removed automatically"
    assert "R10" in local["review_reason"]
    assert _deleted(db, "school_group", "LEES1")  # the ESIS group did end
    review = client.get(_url(school, "reports/review"), headers=auth(school.admin)).json()
    assert [g["id"] for g in review["local_groups"]] == [bso.json()["id"]]


def test_r11_class_arrangements_are_flagged_at_the_transition(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _school(client, db)
    made = client.post(
        _url(school, "class-arrangements"),
        json={"name": "Indeling volgend jaar", "school_year": NEXT},
        headers=auth(school.admin),
    )
    assert made.status_code == 201, made.text
    review = client.get(_url(school, "reports/review"), headers=auth(school.admin)).json()
    assert review["class_arrangements"] == []  # nothing to check during the year
    report = _transition(client, school, _next_year(snap))
    assert [i["id"] for i in report["class_arrangements_flagged"]["items"]] == [made.json()["id"]]
    arrangement = one(db, "class_arrangement", name="Indeling volgend jaar")
    assert arrangement["deleted_at"] is None
    assert NEXT in arrangement["review_reason"]
    review = client.get(_url(school, "reports/review"), headers=auth(school.admin)).json()
    assert [a["id"] for a in review["class_arrangements"]] == [made.json()["id"]]
