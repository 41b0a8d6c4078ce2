"""The year transition, R7-R11: a school through a whole year, the guard, the pause window."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.db import metadata
from tests.factories import SchoolKeys, auth, make_school
from tests.merge_helpers import activate, applied, counts, edit_locally, one, push, rows
from tests.snapshots import Snapshot, changed, find, school_snapshot

NEXT = "2027-2028"


def _url(school: SchoolKeys, path: str) -> str:
    return f"/api/v1/schools/{school.key}/{path}"


def _next_year(snap: Snapshot, *, leaving: tuple[str, ...]) -> Snapshot:
    """The next year's snapshot: `leaving` students gone with guardians only they had."""
    nxt = changed(snap)
    nxt["school"]["school_year"] = NEXT
    nxt["students"] = [s for s in nxt["students"] if s["key"] not in leaving]
    present = {s["key"] for s in nxt["students"]}
    for guardian in nxt["guardians"]:
        guardian["students"] = [link for link in guardian["students"] if link["student"] in present]
    nxt["guardians"] = [g for g in nxt["guardians"] if g["students"]]
    return nxt


def _student(db: sessionmaker[Session], key: str) -> dict[str, Any]:
    return one(db, "student", esis_key=key)


def test_r4_to_r11_a_school_through_a_whole_year(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    september = school_snapshot(students=12)
    # Siblings S0001 and S0002 share guardian V0001.
    find(september, "guardians", "V0001")["students"].append(
        {"student": "S0002", "relation": "father"}
    )
    activation = activate(client, school, september)
    assert counts(activation, "student")["added"] == 12

    # During the year: ESIS adds (R4), changes (R5) and drops (R6); users edit and delete.
    daily = changed(september)
    daily["students"].append({"key": "S0100", "last_name": "Instromer", "group": "G5A"})
    daily["guardians"].append(
        {
            "key": "V0100",
            "last_name": "Ouder",
            "email": "v100@example.nl",
            "students": [{"student": "S0100"}],
        }
    )
    find(daily, "students", "S0003")["last_name"] = "Nieuwenhuis"
    daily["students"] = [s for s in daily["students"] if s["key"] != "S0004"]
    daily["guardians"] = [g for g in daily["guardians"] if g["key"] != "V0004"]
    run = applied(push(client, school, daily))
    assert counts(run, "student")["added"] == 1  # R4
    assert counts(run, "student")["drift_opened"] == 1  # R5
    assert counts(run, "student")["missing"] == 1  # R6
    guardian5 = one(db, "guardian", esis_key="V0005")["id"]
    edit_locally(db, "guardian", guardian5, email="corrected@example.nl")  # R5, a parent's fix
    deleted6 = _student(db, "S0006")["id"]
    assert (
        client.delete(_url(school, f"students/{deleted6}"), headers=auth(school.admin)).status_code
        == 204
    )
    run = applied(push(client, school, daily))
    assert counts(run, "student")["suppressed"] == 1  # R6: not brought back
    bso = client.post(
        _url(school, "groups"),
        json={"name": "BSO", "student_ids": [str(_student(db, "S0002")["id"])]},
        headers=auth(school.admin),
    ).json()
    arrangement = client.post(
        _url(school, "class-arrangements"),
        json={"name": "Indeling volgend jaar", "school_year": NEXT},
        headers=auth(school.admin),
    ).json()

    # The next school year: S0001 and S0007 leave, S0004 stays gone, LK02 leaves, G6A ends,
    # G7A starts, S0003 moves class; ESIS still sends the old e-mail of V0005.
    nxt = _next_year(daily, leaving=("S0001", "S0007"))
    nxt["staff"] = [s for s in nxt["staff"] if s["key"] != "LK02"]
    nxt["groups"] = [g for g in nxt["groups"] if g["key"] != "G6A"]
    nxt["groups"].append({"key": "G7A", "name": "Groep 7a", "year_level": 7})
    for student in nxt["students"]:
        if student["group"] == "G6A":
            student["group"] = "G7A"
    find(nxt, "students", "S0003")["group"] = "G7A"
    nxt["staff"][0]["groups"] = ["G5A", "G7A"]

    preview = client.post(_url(school, "year-transitions/preview"), headers=auth(school.admin))
    assert preview.status_code == 409  # no snapshot of a new year yet
    run = push(client, school, nxt).json()
    assert run["status"] == "applied", run
    transition_id = run["report"]["year_transition_id"]
    transition = client.get(
        _url(school, f"year-transitions/{transition_id}"), headers=auth(school.admin)
    ).json()
    assert transition["status"] == "applied"
    report = transition["report"]

    # R7: students not in the new year's data are removed (soft).
    removed = {i["esis_key"] for i in report["students_removed"]["items"]}
    assert removed == {"S0001", "S0004", "S0007"}
    for key in removed:
        assert _student(db, key)["deleted_at"] is not None
    assert counts(run, "student")["removed"] == 3
    # R8: the guardian of S0007 goes; V0001 stays, her other child S0002 stays.
    assert one(db, "guardian", esis_key="V0007")["deleted_at"] is not None
    assert one(db, "guardian", esis_key="V0001")["deleted_at"] is None
    assert {i["esis_key"] for i in report["guardians_removed"]["items"]} == {"V0004", "V0007"}
    # R9: staff no longer active are removed.
    assert one(db, "staff", esis_key="LK02")["deleted_at"] is not None
    # ESIS groups of the old year end; new ones and new memberships come.
    assert one(db, "school_group", esis_key="G6A")["deleted_at"] is not None
    assert report["groups_new"]["items"] == [{"esis_key": "G7A"}]
    g7a = one(db, "school_group", esis_key="G7A")["id"]
    s3 = _student(db, "S0003")
    lees1 = one(db, "school_group", esis_key="LEES1")["id"]
    assert {r["group_id"] for r in rows(db, "student_group", student_id=s3["id"])} == {g7a, lees1}
    # R5 holds across the transition: the name change and the parent's e-mail stay.
    assert s3["last_name"] == "Leerling3"
    assert one(db, "drift_item", record_id=s3["id"])["esis_value"] == "Nieuwenhuis"
    assert one(db, "guardian", id=guardian5)["email"] == "corrected@example.nl"
    # R6 deletions stay deleted; R10 local groups stay, flagged; R11 arrangements flagged.
    assert _student(db, "S0006")["deleted_at"] is not None
    assert one(db, "school_group", name="BSO")["deleted_at"] is None
    review = client.get(_url(school, "reports/review"), headers=auth(school.admin)).json()
    assert [g["id"] for g in review["local_groups"]] == [bso["id"]]
    assert [a["id"] for a in review["class_arrangements"]] == [arrangement["id"]]
    assert "R10" in review["local_groups"][0]["reason"]
    school_now = client.get(f"/api/v1/schools/{school.key}", headers=auth(school.reader)).json()
    assert school_now["current_school_year"] == NEXT
    kinds = [e["kind"] for e in rows(db, "event")]
    assert "year-transition-applied" in kinds
    assert "flagged-for-review" in kinds

    # A student removed by mistake comes back with the guardian removed because of it.
    s7 = _student(db, "S0007")["id"]
    restored = client.post(_url(school, f"students/{s7}/restore"), headers=auth(school.admin))
    assert restored.status_code == 200
    assert [g["esis_key"] for g in restored.json()["guardians"]] == ["V0007"]
    assert one(db, "guardian", esis_key="V0007")["deleted_at"] is None

    # The same new-year data again transitions nothing more.
    again = applied(push(client, school, nxt))
    assert counts(again, "student")["removed"] == 0
    assert len(rows(db, "year_transition")) == 1


def _active_school(
    client: TestClient, db: sessionmaker[Session], students: int = 10
) -> tuple[SchoolKeys, Snapshot]:
    school = make_school(client, db)
    snap = school_snapshot(students=students)
    activate(client, school, snap)
    return school, snap


def test_r7_guard_holds_an_empty_new_year_snapshot(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _active_school(client, db)
    empty = _next_year(snap, leaving=tuple(s["key"] for s in snap["students"]))
    empty["staff"] = []
    run = push(client, school, empty).json()
    assert run["status"] == "held"
    assert any("no students" in w for w in run["warnings"])
    assert all(s["deleted_at"] is None for s in rows(db, "student"))
    held = one(db, "year_transition")
    assert held["status"] == "held"
    events = [e for e in rows(db, "event") if e["kind"] == "year-transition-held"]
    assert len(events) == 1
    rejected = client.post(
        _url(school, "year-transitions"),
        json={"transition_id": str(held["id"]), "confirm": False},
        headers=auth(school.admin),
    )
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "rejected"
    assert all(s["deleted_at"] is None for s in rows(db, "student"))
    school_now = client.get(f"/api/v1/schools/{school.key}", headers=auth(school.reader)).json()
    assert school_now["current_school_year"] == "2026-2027"


def test_r7_guard_holds_a_half_empty_snapshot_until_confirmed(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _active_school(client, db)
    half = _next_year(snap, leaving=tuple(f"S{i:04d}" for i in range(1, 6)))
    preview = client.post(_url(school, "year-transitions/preview"), headers=auth(school.admin))
    assert preview.status_code == 409
    run = push(client, school, half).json()
    assert run["status"] == "held"
    preview = client.post(
        _url(school, "year-transitions/preview?limit=2"), headers=auth(school.admin)
    )
    assert preview.status_code == 200, preview.text
    report = preview.json()["report"]
    assert report["students_removed"]["count"] == 5
    assert len(report["students_removed"]["items"]) == 2
    assert "removal guard" in report["held_reason"]
    assert preview.json()["next_cursor"] is not None
    transition_id = run["report"]["year_transition_id"]
    assert (
        client.post(
            _url(school, "year-transitions"), json={}, headers=auth(school.admin)
        ).status_code
        == 409
    )
    confirmed = client.post(
        _url(school, "year-transitions"),
        json={"transition_id": transition_id, "confirm": True},
        headers=auth(school.admin),
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "applied"
    assert len([s for s in rows(db, "student") if s["deleted_at"] is not None]) == 5
    again = client.post(
        _url(school, "year-transitions"),
        json={"transition_id": transition_id, "confirm": True},
        headers=auth(school.admin),
    )
    assert again.status_code == 409


def test_r7_r9_an_admin_starts_the_transition_after_the_pause(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _active_school(client, db)
    paused = client.patch(
        f"/api/v1/schools/{school.key}",
        json={"pause_start": "2000-07-01", "pause_end": "2099-08-31"},
        headers=auth(school.admin),
    )
    assert paused.status_code == 200, paused.text
    nxt = _next_year(snap, leaving=("S0001",))
    run = push(client, school, nxt).json()
    assert run["status"] == "held"
    assert any("pause window" in w for w in run["warnings"])
    assert rows(db, "year_transition") == []
    everyday = changed(snap)
    find(everyday, "students", "S0002")["last_name"] = "Zomer"
    assert push(client, school, everyday).json()["status"] == "held"  # stored, not applied
    assert _student(db, "S0002")["last_name"] == "Leerling2"
    bad = client.patch(
        f"/api/v1/schools/{school.key}", json={"pause_start": None}, headers=auth(school.admin)
    )
    assert bad.status_code == 422
    started = client.post(_url(school, "year-transitions"), json={}, headers=auth(school.admin))
    assert started.status_code == 201, started.text
    assert started.json()["status"] == "applied"
    assert _student(db, "S0001")["deleted_at"] is not None
    listed = client.get(_url(school, "year-transitions"), headers=auth(school.admin)).json()
    assert [t["id"] for t in listed["items"]] == [started.json()["id"]]


def test_r5_a_transition_with_much_drift_costs_about_what_a_push_does(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    """Drift kept across the transition is found with one set, not one per drift item: with
    8,000 drift items a set per item made the new year's push over 20 times a daily push."""
    school = make_school(client, db)
    snap = school_snapshot(students=1000)
    activate(client, school, snap)
    mark = {"by": "key:test", "at": "2026-09-01T00:00:00+00:00"}
    student_fields = ("last_name", "given_name", "birth_date", "gender")
    with db.begin() as session:  # every person edited locally: 4 drift items each (R5)
        students, guardians = metadata.tables["student"], metadata.tables["guardian"]
        session.execute(
            update(students).values(
                last_name="Lokaal",
                given_name="Lokaal",
                birth_date=None,
                gender=None,
                local_edits=dict.fromkeys(student_fields, mark),
            )
        )
        session.execute(
            update(guardians).values(
                last_name="Lokaal",
                initials="L",
                email="lokaal@example.nl",
                phone="+31600000000",
                local_edits=dict.fromkeys(("last_name", "initials", "email", "phone"), mark),
            )
        )
    started = time.perf_counter()
    run = applied(push(client, school, changed(snap)))
    daily = time.perf_counter() - started
    assert counts(run, "student")["drift_opened"] == counts(run, "guardian")["drift_opened"] == 4000

    started = time.perf_counter()
    transition = applied(push(client, school, _next_year(snap, leaving=())))
    new_year = time.perf_counter() - started
    assert f"year transition to {NEXT} applied" in transition["warnings"]
    # The transition decides (one merge plan) and applies (another, and the writes): about
    # two to four daily pushes. Quadratic in the drift it was over twenty.
    assert new_year < 10 * daily, (new_year, daily)
