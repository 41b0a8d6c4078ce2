"""The roster API: reads with provenance, edits (R5), deletions (R6), creation (R4), reports."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.db import metadata, utcnow
from app.roster.purge import purge
from tests.factories import SchoolKeys, auth, make_school
from tests.merge_helpers import activate, applied, counts, one, push, rows
from tests.snapshots import changed, find, school_snapshot


def _url(school: SchoolKeys, path: str) -> str:
    return f"/api/v1/schools/{school.key}/{path}"


def _active(
    client: TestClient, db: sessionmaker[Session], students: int = 4
) -> tuple[SchoolKeys, dict[str, Any]]:
    school = make_school(client, db)
    snap = school_snapshot(students=students)
    activate(client, school, snap)
    return school, snap


def test_student_read_shows_provenance_groups_and_guardians(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, _ = _active(client, db)
    student_id = one(db, "student", esis_key="S0003")["id"]
    response = client.get(_url(school, f"students/{student_id}"), headers=auth(school.reader))
    assert response.status_code == 200
    body = response.json()
    assert response.headers["etag"] == '"1"'
    assert body["provenance"]["source"] == "esis"
    assert body["provenance"]["esis_key"] == "S0003"
    assert body["provenance"]["local_edits"] == {}
    assert sorted(g["esis_key"] for g in body["groups"]) == ["G5A", "LEES1"]
    assert [(g["esis_key"], g["relation"]) for g in body["guardians"]] == [("V0003", "mother")]
    guardian = client.get(
        _url(school, f"guardians/{body['guardians'][0]['id']}"), headers=auth(school.reader)
    ).json()
    assert [s["esis_key"] for s in guardian["students"]] == ["S0003"]
    group_id = next(g["id"] for g in body["groups"] if g["esis_key"] == "G5A")
    group = client.get(_url(school, f"groups/{group_id}"), headers=auth(school.reader)).json()
    assert sorted(m["esis_key"] for m in group["members"]) == ["S0001", "S0003"]
    assert [s["esis_key"] for s in group["staff"]] == ["LK01"]


def test_r5_an_email_edited_through_the_api_survives_the_next_snapshot(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _active(client, db)
    guardian_id = one(db, "guardian", esis_key="V0001")["id"]
    edited = client.patch(
        _url(school, f"guardians/{guardian_id}"),
        json={"email": "anna.new@example.nl"},
        headers=auth(school.admin),
    )
    assert edited.status_code == 200, edited.text
    marks = edited.json()["provenance"]["local_edits"]
    assert list(marks) == ["email"]
    assert marks["email"]["by"].startswith("key:")
    later = changed(snap)
    find(later, "guardians", "V0001")["email"] = "old@example.nl"
    run = applied(push(client, school, later))
    assert counts(run, "guardian")["drift_opened"] == 1
    after = client.get(_url(school, f"guardians/{guardian_id}"), headers=auth(school.reader)).json()
    assert after["email"] == "anna.new@example.nl"
    assert [(d["field"], d["esis_value"]) for d in after["provenance"]["drift"]] == [
        ("email", "old@example.nl")
    ]
    events = sorted(
        (e for e in rows(db, "event") if e["entity_id"] == guardian_id), key=lambda e: e["seq"]
    )
    assert [e["kind"] for e in events][-2:] == ["updated", "drift-opened"]
    assert events[-2]["source"] == "api"


def test_if_match_prevents_lost_updates(client: TestClient, db: sessionmaker[Session]) -> None:
    school, _ = _active(client, db)
    student_id = one(db, "student", esis_key="S0001")["id"]
    tag = client.get(_url(school, f"students/{student_id}"), headers=auth(school.admin)).headers[
        "etag"
    ]
    first = client.patch(
        _url(school, f"students/{student_id}"),
        json={"given_name": "Saar"},
        headers={**auth(school.admin), "If-Match": tag},
    )
    assert first.status_code == 200
    assert first.headers["etag"] == '"2"'
    stale = client.patch(
        _url(school, f"students/{student_id}"),
        json={"given_name": "Sara"},
        headers={**auth(school.admin), "If-Match": tag},
    )
    assert stale.status_code == 412
    assert stale.json()["current_etag"] == '"2"'
    assert one(db, "student", id=student_id)["given_name"] == "Saar"


def test_identity_fields_cannot_be_changed_after_activation(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, _ = _active(client, db)
    student_id = one(db, "student", esis_key="S0001")["id"]
    key = client.patch(
        _url(school, f"students/{student_id}"), json={"esis_key": "X1"}, headers=auth(school.admin)
    )
    assert key.status_code == 409
    assert "ESIS" in key.json()["detail"]
    source = client.patch(
        _url(school, f"students/{student_id}"), json={"source": "local"}, headers=auth(school.admin)
    )
    assert source.status_code == 422
    assert source.json()["errors"][0]["field"] == "source"
    empty = client.patch(
        _url(school, f"students/{student_id}"), json={"last_name": None}, headers=auth(school.admin)
    )
    assert empty.status_code == 422


def test_r6_deleted_student_is_not_recreated_and_restore_brings_it_back(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _active(client, db)
    student_id = one(db, "student", esis_key="S0002")["id"]
    assert (
        client.delete(
            _url(school, f"students/{student_id}"), headers=auth(school.admin)
        ).status_code
        == 204
    )
    listed = client.get(_url(school, "students"), headers=auth(school.reader)).json()["items"]
    assert str(student_id) not in {s["id"] for s in listed}
    deleted = client.get(_url(school, "students?deleted=true"), headers=auth(school.reader)).json()
    assert [s["id"] for s in deleted["items"]] == [str(student_id)]
    run = applied(push(client, school, snap))
    assert counts(run, "student")["suppressed"] == 1
    assert len(rows(db, "student", esis_key="S0002")) == 1
    restored = client.post(
        _url(school, f"students/{student_id}/restore"), headers=auth(school.admin)
    )
    assert restored.status_code == 200
    assert restored.json()["provenance"]["deleted_at"] is None
    again = client.post(_url(school, f"students/{student_id}/restore"), headers=auth(school.admin))
    assert again.status_code == 409
    run = applied(push(client, school, snap))
    assert counts(run, "student")["suppressed"] == 0


def test_restore_is_refused_after_the_retention_window(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, _ = _active(client, db)
    guardian_id = one(db, "guardian", esis_key="V0001")["id"]
    client.delete(_url(school, f"guardians/{guardian_id}"), headers=auth(school.admin))
    _age_deletion(db, "guardian", guardian_id, days=31)
    response = client.post(
        _url(school, f"guardians/{guardian_id}/restore"), headers=auth(school.admin)
    )
    assert response.status_code == 409
    assert "retention window" in response.json()["detail"]


def _age_deletion(db: sessionmaker[Session], table: str, record_id: Any, *, days: int) -> None:
    t = metadata.tables[table]
    with db.begin() as session:
        session.execute(
            update(t)
            .where(t.c.id == record_id)
            .values(deleted_at=utcnow() - dt.timedelta(days=days))
        )


def test_purge_removes_personal_data_after_the_window_and_keeps_a_tombstone(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _active(client, db)
    student_id = one(db, "student", esis_key="S0001")["id"]
    client.delete(_url(school, f"students/{student_id}"), headers=auth(school.admin))
    _age_deletion(db, "student", student_id, days=31)
    with db.begin() as session:
        done = purge(session=session, retention_days=30)
    assert done["student"] == 1
    purged = one(db, "student", id=student_id)
    assert purged["tombstoned_at"] is not None
    assert (purged["last_name"], purged["birth_date"], purged["esis_values"]) == (None, None, None)
    assert purged["esis_key"] == "S0001"
    assert rows(db, "student_group", student_id=student_id) == []
    events = [e for e in rows(db, "event") if e["entity_id"] == student_id]
    assert events
    assert all("Leerling1" not in str(e["changes"]) for e in events)
    run = applied(push(client, school, snap))
    assert counts(run, "student")["suppressed"] == 1
    assert len(rows(db, "student", esis_key="S0001")) == 1


def test_r4_persons_are_created_locally_only_before_activation(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    group = client.post(
        _url(school, "groups"),
        json={"name": "Groep 1/2", "year_level": 1},
        headers=auth(school.admin),
    )
    assert group.status_code == 201, group.text
    student = client.post(
        _url(school, "students"),
        json={
            "last_name": "Leerling2",
            "given_name": "Kind2",
            "birth_date": "2017-03-12",
            "group_ids": [group.json()["id"]],
        },
        headers=auth(school.admin),
    )
    assert student.status_code == 201, student.text
    assert student.json()["provenance"]["source"] == "local"
    guardian = client.post(
        _url(school, "guardians"),
        json={
            "last_name": "Ouder",
            "email": "ouder2@example.nl",
            "students": [{"student_id": student.json()["id"], "relation": "father"}],
        },
        headers=auth(school.admin),
    )
    assert guardian.status_code == 201, guardian.text
    assert guardian.json()["students"][0]["relation"] == "father"
    run = activate(client, school, school_snapshot(students=2))
    assert counts(run, "student")["matched"] == 1  # by name and birth date (R2)
    refused = client.post(
        _url(school, "students"), json={"last_name": "Te laat"}, headers=auth(school.admin)
    )
    assert refused.status_code == 409
    assert "R4" in refused.json()["detail"]
    local_group = client.post(
        _url(school, "groups"),
        json={"name": "BSO maandag", "student_ids": [student.json()["id"]]},
        headers=auth(school.admin),
    )
    assert local_group.status_code == 201
    assert [m["id"] for m in local_group.json()["members"]] == [student.json()["id"]]


def test_members_of_esis_groups_are_not_set_by_hand(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, _ = _active(client, db)
    group_id = one(db, "school_group", esis_key="G5A")["id"]
    response = client.patch(
        _url(school, f"groups/{group_id}"), json={"student_ids": []}, headers=auth(school.admin)
    )
    assert response.status_code == 409


def test_list_filters(client: TestClient, db: sessionmaker[Session]) -> None:
    school, snap = _active(client, db, students=6)
    later = changed(snap)
    later["students"] = [s for s in later["students"] if s["key"] != "S0006"]
    later["guardians"] = [g for g in later["guardians"] if g["key"] != "V0006"]
    find(later, "students", "S0001")["last_name"] = "Anders"
    applied(push(client, school, later))

    def keys(query: str, collection: str = "students") -> list[str]:
        response = client.get(_url(school, f"{collection}?{query}"), headers=auth(school.reader))
        assert response.status_code == 200, response.text
        return sorted(s["provenance"]["esis_key"] for s in response.json()["items"])

    g6a = one(db, "school_group", esis_key="G6A")["id"]
    assert keys("missing_in_esis=true") == ["S0006"]
    assert keys("has_drift=true") == ["S0001"]
    assert keys(f"group_id={g6a}") == ["S0002", "S0004", "S0006"]
    assert keys("year_level=5") == ["S0001", "S0003", "S0005"]
    assert keys("q=leerling4") == ["S0004"]
    assert keys("q=OUDER2@example", "guardians") == ["V0002"]
    assert keys(f"group_id={g6a}", "guardians") == ["V0002", "V0004", "V0006"]
    assert keys("source=local") == []
    assert (
        client.get(_url(school, "students?source=bogus"), headers=auth(school.reader)).status_code
        == 422
    )


def test_list_costs_a_fixed_number_of_queries(
    client: TestClient, db: sessionmaker[Session], app: FastAPI
) -> None:
    engine: Engine = app.state.engine
    school, _ = _active(client, db, students=30)
    statements: list[str] = []

    def count(*_args: Any) -> None:
        statements.append("q")

    event.listen(engine, "before_cursor_execute", count)
    try:
        small = client.get(_url(school, "students?limit=3"), headers=auth(school.reader))
        n_small = len(statements)
        statements.clear()
        large = client.get(_url(school, "students?limit=30"), headers=auth(school.reader))
        n_large = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(small.json()["items"]) == 3
    assert len(large.json()["items"]) == 30
    assert n_small == n_large


def test_cursor_pagination_is_stable_under_concurrent_inserts(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    for i in range(12):
        client.post(
            _url(school, "students"), json={"last_name": f"Vooraf{i}"}, headers=auth(school.admin)
        )
    original = {str(s["id"]) for s in rows(db, "student")}
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 30:
            client.post(
                _url(school, "students"),
                json={"last_name": f"Tussendoor{i}"},
                headers=auth(school.admin),
            )
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    seen: list[str] = []
    cursor = None
    try:
        while True:
            query = "students?limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = client.get(_url(school, query), headers=auth(school.reader)).json()
            seen.extend(s["id"] for s in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
    finally:
        stop.set()
        thread.join()
    assert len(seen) == len(set(seen))
    assert original <= set(seen)


def test_r11_class_arrangements(client: TestClient, db: sessionmaker[Session]) -> None:
    school, _ = _active(client, db)
    ids = [str(r["id"]) for r in rows(db, "student")][:2]
    made = client.post(
        _url(school, "class-arrangements"),
        json={
            "name": "Indeling 2027-2028",
            "school_year": "2027-2028",
            "placements": [
                {"student_id": ids[0], "class_name": "6a"},
                {"student_id": ids[1], "class_name": "6b"},
            ],
        },
        headers=auth(school.admin),
    )
    assert made.status_code == 201, made.text
    arrangement = made.json()
    assert len(arrangement["placements"]) == 2
    changed_ = client.patch(
        _url(school, f"class-arrangements/{arrangement['id']}"),
        json={"placements": [{"student_id": ids[0], "class_name": "6c"}]},
        headers={**auth(school.admin), "If-Match": '"1"'},
    )
    assert changed_.status_code == 200, changed_.text
    assert changed_.json()["placements"] == [{"student_id": ids[0], "class_name": "6c"}]
    stale = client.patch(
        _url(school, f"class-arrangements/{arrangement['id']}"),
        json={"name": "x"},
        headers={**auth(school.admin), "If-Match": '"1"'},
    )
    assert stale.status_code == 412
    duplicate = client.post(
        _url(school, "class-arrangements"),
        json={"name": "Indeling 2027-2028", "school_year": "2027-2028"},
        headers=auth(school.admin),
    )
    assert duplicate.status_code == 409
    unknown = client.post(
        _url(school, "class-arrangements"),
        json={
            "name": "X",
            "placements": [
                {"student_id": "00000000-0000-0000-0000-000000000000", "class_name": "1"}
            ],
        },
        headers=auth(school.admin),
    )
    assert unknown.status_code == 422
    listed = client.get(_url(school, "class-arrangements"), headers=auth(school.reader)).json()
    assert [a["id"] for a in listed["items"]] == [arrangement["id"]]
    assert (
        client.delete(
            _url(school, f"class-arrangements/{arrangement['id']}"), headers=auth(school.admin)
        ).status_code
        == 204
    )
    assert (
        client.get(_url(school, "class-arrangements"), headers=auth(school.reader)).json()["items"]
        == []
    )
    back = client.post(
        _url(school, f"class-arrangements/{arrangement['id']}/restore"), headers=auth(school.admin)
    )
    assert back.status_code == 200


def test_r6_r10_reports(client: TestClient, db: sessionmaker[Session]) -> None:
    school, snap = _active(client, db)
    later = changed(snap)
    later["students"] = [s for s in later["students"] if s["key"] != "S0004"]
    later["guardians"] = [g for g in later["guardians"] if g["key"] != "V0004"]
    applied(push(client, school, later))
    report = client.get(_url(school, "reports/missing-in-esis"), headers=auth(school.admin)).json()
    assert report["students"]["count"] == 1
    assert report["students"]["items"][0]["esis_key"] == "S0004"
    assert report["guardians"]["count"] == 1
    assert report["links"]["student_group"] == 1
    local = client.post(
        _url(school, "groups"), json={"name": "BSO"}, headers=auth(school.admin)
    ).json()
    review = client.get(_url(school, "reports/review"), headers=auth(school.admin)).json()
    assert review == {"local_groups": [], "class_arrangements": []}
    t = metadata.tables["school_group"]
    with db.begin() as session:
        session.execute(
            update(t)
            .where(t.c.id == uuid.UUID(local["id"]))
            .values(review_reason="local group: remove by hand if no longer needed (R10)")
        )
    review = client.get(_url(school, "reports/review"), headers=auth(school.admin)).json()
    assert [g["name"] for g in review["local_groups"]] == ["BSO"]
