"""ESIS leads for what ESIS sends: a snapshot's scope (the kinds it carries), on both databases,
through a JSON push, an EDEXml push and daily pulls from the fake ESIS."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from fake_esis.server import edex_from_snapshot
from tests.factories import SchoolKeys, auth, make_school
from tests.merge_helpers import FakeEsisPulls, activate, applied, counts, one, push, rows
from tests.snapshots import Snapshot, changed, school_snapshot

GUARDIAN_KINDS = {"guardian", "student_guardian"}


def _active(client: TestClient, db: sessionmaker[Session]) -> tuple[SchoolKeys, Snapshot]:
    school = make_school(client, db)
    snap = school_snapshot(students=4)
    for member in snap["staff"]:
        member["roles"] = ["LRK"]  # EDEXml role codes, so the fake can write them as XML
    activate(client, school, snap)
    return school, snap


def _untouched_guardians(db: sessionmaker[Session], since_seq: int) -> None:
    for table in ("guardian", "student_guardian"):
        found = rows(db, table)
        assert found, table
        assert all(r["deleted_at"] is None for r in found), table
        assert all(r["missing_in_esis_since"] is None for r in found), table
    events = [e for e in rows(db, "event") if e["seq"] > since_seq]
    assert not [e for e in events if e["entity"] in GUARDIAN_KINDS], "guardian events"


def _last_seq(db: sessionmaker[Session]) -> int:
    return max((e["seq"] for e in rows(db, "event")), default=0)


def _without(snap: Snapshot, *kinds: str) -> Snapshot:
    out = changed(snap)
    for kind in kinds:
        del out[kind]
    return out


def test_r6_a_push_without_guardians_leaves_them_as_they_are(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _active(client, db)
    seq = _last_seq(db)
    later = _without(snap, "guardians")
    later["students"].append({"key": "S0100", "last_name": "Nieuw", "group": "G5A"})
    run = applied(push(client, school, later))
    assert counts(run, "student")["added"] == 1  # what ESIS sends still leads (R4)
    assert "guardian" not in run["counts"]
    _untouched_guardians(db, seq)


def test_r6_an_empty_guardian_list_is_carried_and_marks_them_missing(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _active(client, db)
    later = changed(snap)
    later["guardians"] = []
    run = applied(push(client, school, later))
    assert counts(run, "guardian")["missing"] == 4
    assert counts(run, "student_guardian")["missing"] == 4


def test_r6_explicit_carries_leaves_staff_and_their_groups_alone(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _active(client, db)
    later = _without(snap, "staff")
    later["carries"] = ["groups", "students", "student_groups", "guardians", "student_guardians"]
    run = applied(push(client, school, later))
    assert "staff" not in run["counts"] and "staff_group" not in run["counts"]
    assert all(r["missing_in_esis_since"] is None for r in rows(db, "staff"))
    # Students carried without their memberships: the memberships stay as they are.
    moved = changed(snap)
    moved["carries"] = ["groups", "students", "guardians", "student_guardians", "staff"]
    moved["students"][0]["group"] = "G6A"
    run = applied(push(client, school, moved))
    assert "student_group" not in run["counts"]
    assert all(r["missing_in_esis_since"] is None for r in rows(db, "student_group"))


@pytest.mark.parametrize(
    ("carries", "message"),
    [
        (["students", "student_guardians"], "a link needs both of its ends"),
        (["groups"], "students are listed but not in carries"),
        (["pupils"], "carries"),
    ],
)
def test_r6_a_carries_that_contradicts_the_snapshot_is_refused(
    client: TestClient, db: sessionmaker[Session], carries: list[str], message: str
) -> None:
    school, snap = _active(client, db)
    before = rows(db, "student")
    bad = changed(snap)
    bad["carries"] = carries
    response = push(client, school, bad)
    assert response.status_code == 422, response.text
    assert message in response.text
    assert rows(db, "student") == before


def test_r7_a_new_year_without_staff_removes_no_staff(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _active(client, db)
    nxt = _without(snap, "staff", "guardians")
    nxt["school"]["school_year"] = "2027-2028"
    nxt["students"] = nxt["students"][1:]  # S0001 leaves; her guardian V0001 goes with her
    run = push(client, school, nxt).json()
    assert run["status"] == "applied", run
    assert all(r["deleted_at"] is None for r in rows(db, "staff"))
    assert all(r["deleted_at"] is None for r in rows(db, "staff_group"))
    assert one(db, "student", esis_key="S0001")["deleted_at"] is not None
    gone = {r["esis_key"] for r in rows(db, "guardian") if r["deleted_at"] is not None}
    assert gone == {"V0001"}  # R8 still holds: all her children left


def test_r6_an_edexml_push_without_guardian_blocks_leaves_guardians_alone(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _active(client, db)
    seq = _last_seq(db)
    later = _without(snap, "guardians")
    later["students"][0]["last_name"] = "Anders"
    response = client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=edex_from_snapshot(later),
        headers={**auth(school.esis), "Content-Type": "application/xml"},
    )
    assert response.status_code in (200, 201), response.text
    assert response.json()["status"] == "applied"
    assert counts(response.json(), "student")["drift_opened"] == 1
    _untouched_guardians(db, seq)


def _daily(snap: Snapshot, day: int) -> dict[str, Any]:
    """What ESIS answers on `day`: no guardians; every day one more student."""
    out = copy.deepcopy(snap)
    del out["guardians"]
    out["students"] += [
        {"key": f"S{100 + d}", "last_name": f"Instromer{d}", "group": "G5A"} for d in range(day)
    ]
    return out


def test_r6_an_active_school_pulled_30_days_without_guardians_keeps_them(
    client: TestClient, db: sessionmaker[Session], fake_esis_pulls: FakeEsisPulls
) -> None:
    school, snap = _active(client, db)
    fake_esis_pulls.connect(client, school)
    guardians = {r["id"]: r for r in rows(db, "guardian")}
    links = {r["id"]: r for r in rows(db, "student_guardian")}
    seq = _last_seq(db)
    for day in range(1, 31):
        pulled = fake_esis_pulls.pull(client, school, _daily(snap, day))
        assert pulled.status_code == 201, pulled.text
        run = pulled.json()
        assert run["status"] == "applied", run
        assert counts(run, "student")["added"] == 1, (day, run["counts"])
        assert not GUARDIAN_KINDS & set(run["counts"]), (day, run["counts"])
    assert len(rows(db, "student")) == 4 + 30
    assert {r["id"]: r for r in rows(db, "guardian")} == guardians
    assert {r["id"]: r for r in rows(db, "student_guardian")} == links
    _untouched_guardians(db, seq)
