"""One scenario per rule R1-R6 and per decision where the source is silent, on both databases."""

from __future__ import annotations

import datetime as dt
import uuid

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.db import metadata, new_id, utcnow
from tests.factories import auth, make_school
from tests.merge_helpers import (
    activate,
    applied,
    counts,
    delete_locally,
    edit_locally,
    failing_insert,
    one,
    push,
    rows,
)
from tests.snapshots import changed, find, school_snapshot

# --- R1 readiness ---------------------------------------------------------------------------


def test_r1_readiness_lists_what_is_missing(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=3)
    snap["guardians"] = [g for g in snap["guardians"] if g["key"] != "V0002"]
    find(snap, "guardians", "V0003")["email"] = None
    push(client, school, snap)
    body = client.get(
        f"/api/v1/schools/{school.key}/esis/readiness", headers=auth(school.admin)
    ).json()
    assert body["ready"] is False
    assert body["students_without_guardian"] == {
        "count": 1,
        "items": [{"key": "S0002", "name": "Kind2 Leerling2"}],
    }
    assert body["guardians_without_email"]["count"] == 1
    assert body["guardians_without_email"]["items"][0]["key"] == "V0003"


def test_r1_no_snapshot_means_not_ready(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db)
    body = client.get(
        f"/api/v1/schools/{school.key}/esis/readiness", headers=auth(school.admin)
    ).json()
    assert body["ready"] is False
    assert body["snapshot_id"] is None


# --- R2 activation --------------------------------------------------------------------------


def test_r2_activation_refused_with_the_gaps_until_ready(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    refused = client.post(
        f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
    )
    assert refused.status_code == 409
    snap = school_snapshot(students=2)
    find(snap, "guardians", "V0001")["email"] = None
    push(client, school, snap)
    refused = client.post(
        f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
    )
    assert refused.status_code == 409
    assert refused.json()["guardians_without_email"] == [{"key": "V0001", "name": "A Ouder1"}]
    assert rows(db, "student") == []
    find(snap, "guardians", "V0001")["email"] = "ouder1@example.nl"
    run = activate(client, school, snap)
    assert run["kind"] == "activation"


def test_r2_activation_loads_the_snapshot(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db)
    run = activate(client, school, school_snapshot(students=4))
    assert counts(run, "student")["added"] == 4
    assert counts(run, "group")["added"] == 3
    assert counts(run, "guardian")["added"] == 4
    assert counts(run, "staff")["added"] == 2
    assert counts(run, "student_group")["added"] == 5  # four classes, one reading group
    assert counts(run, "staff_group")["added"] == 3
    assert {r["source"] for r in rows(db, "student")} == {"esis"}
    got = client.get(f"/api/v1/schools/{school.key}", headers=auth(school.reader)).json()
    assert got["coupling"] == "active"
    assert got["current_school_year"] == "2026-2027"
    again = client.post(f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin))
    assert again.status_code == 409


def _insert(db: sessionmaker[Session], name: str, **values: object) -> uuid.UUID:
    record_id = new_id()
    with db.begin() as session:
        session.execute(
            metadata.tables[name]
            .insert()
            .values(
                id=record_id, local_edits={}, created_at=utcnow(), updated_at=utcnow(), **values
            )
        )
    return record_id


def test_r2_activation_matches_edexml_and_local_records(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    school_id = one(db, "school", key=school.key)["id"]
    by_key = _insert(
        db,
        "student",
        school_id=school_id,
        source="edexml",
        esis_key="S0001",
        last_name="Leerling1",
        given_name="Kind1",
        version=1,
    )
    by_name = _insert(
        db,
        "student",
        school_id=school_id,
        source="local",
        last_name="leerling2",
        given_name="KIND2",
        birth_date=dt.date(2017, 3, 12),
        version=1,
    )
    by_email = _insert(
        db,
        "guardian",
        school_id=school_id,
        source="local",
        last_name="Ouder3",
        email="OUDER3@example.nl",
        version=1,
    )
    stray = _insert(
        db, "student", school_id=school_id, source="local", last_name="Nobody", version=1
    )
    edit_locally(db, "student", by_key, given_name="Kindje")

    run = activate(client, school, school_snapshot(students=4))

    students = rows(db, "student")
    assert len(students) == 5  # four from ESIS, one local that ESIS does not know
    assert counts(run, "student")["matched"] == 2
    assert counts(run, "student")["added"] == 2
    assert counts(run, "guardian")["matched"] == 1
    matched = {(m["entity"], m["id"], m["by"]) for m in run["report"]["matched"]}
    assert matched == {
        ("student", str(by_key), "key"),
        ("student", str(by_name), "name_birth_date"),
        ("guardian", str(by_email), "email"),
    }
    assert run["report"]["unmatched"] == [
        {"entity": "student", "id": str(stray), "source": "local", "esis_key": None}
    ]
    assert len(run["report"]["created"]) == 2 + 3 + 3 + 2  # students, guardians, groups, staff
    paired = one(db, "student", id=by_name)
    assert (paired["source"], paired["esis_key"], paired["last_name"]) == (
        "esis",
        "S0002",
        "Leerling2",
    )
    kept = one(db, "student", id=by_key)
    assert kept["given_name"] == "Kindje"  # a local edit survives activation as drift (R5)
    assert one(db, "drift_item", record_id=by_key)["esis_value"] == "Kind1"


def test_r2_deactivation_stops_the_merge_and_keeps_the_data(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=2)
    activate(client, school, snap)
    response = client.delete(
        f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
    )
    assert response.status_code == 200
    assert response.json()["coupling"] == "inactive"
    later = changed(snap)
    find(later, "students", "S0001")["last_name"] = "Anders"
    run = push(client, school, later).json()
    assert run["status"] == "stored"
    assert len(rows(db, "student")) == 2
    assert one(db, "student", esis_key="S0001")["last_name"] == "Leerling1"


# --- R3 push ----------------------------------------------------------------------------------


def test_r3_raw_body_is_stored_on_receipt(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db)
    response = push(client, school, school_snapshot(), fresh=False)
    stored = one(db, "snapshot")
    assert stored["body"] == response.request.content
    assert stored["school_year"] == "2026-2027"
    listed = client.get(
        f"/api/v1/schools/{school.key}/sync-runs", headers=auth(school.reader)
    ).json()
    assert [r["status"] for r in listed["items"]] == ["stored"]


# --- R4 additions ---------------------------------------------------------------------------


def test_r4_new_records_and_links_are_added(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=2)
    activate(client, school, snap)
    later = changed(snap)
    later["groups"].append({"key": "G7A", "name": "Groep 7a", "year_level": 7})
    later["students"].append(
        {"key": "S0100", "last_name": "Nieuw", "group": "G7A", "composite_groups": ["LEES1"]}
    )
    later["guardians"].append(
        {
            "key": "V0100",
            "last_name": "Nieuw",
            "email": "n@example.nl",
            "students": [{"student": "S0100", "relation": "father"}],
        }
    )
    find(later, "guardians", "V0001")["students"].append(
        {"student": "S0100", "relation": "caregiver"}
    )
    later["staff"][0]["groups"].append("G7A")
    run = applied(push(client, school, later))
    assert counts(run, "student")["added"] == 1
    assert counts(run, "group")["added"] == 1
    assert counts(run, "guardian")["added"] == 1
    assert counts(run, "student_group")["added"] == 2
    assert counts(run, "student_guardian")["added"] == 2
    assert counts(run, "staff_group")["added"] == 1
    new = one(db, "student", esis_key="S0100")
    assert new["source"] == "esis"
    assert new["esis_values"]["last_name"] == "Nieuw"
    relations = {r["relation"] for r in rows(db, "student_guardian", student_id=new["id"])}
    assert relations == {"father", "caregiver"}


# --- R5 local edits win ---------------------------------------------------------------------


def test_r5_esis_change_to_a_person_becomes_drift(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=2)
    activate(client, school, snap)
    later = changed(snap)
    find(later, "guardians", "V0001")["phone"] = "+31687654321"
    run = applied(push(client, school, later))
    assert counts(run, "guardian")["drift_opened"] == 1
    guardian = one(db, "guardian", esis_key="V0001")
    assert guardian["phone"] == "+31612345678"
    assert guardian["esis_values"]["phone"] == "+31687654321"
    drift = client.get(
        f"/api/v1/schools/{school.key}/drift?entity=guardian", headers=auth(school.admin)
    ).json()["items"]
    assert [(d["field"], d["our_value"], d["esis_value"]) for d in drift] == [
        ("phone", "+31612345678", "+31687654321")
    ]


def test_r5_local_email_edit_survives_esis_change(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=2)
    activate(client, school, snap)
    guardian_id = one(db, "guardian", esis_key="V0001")["id"]
    edit_locally(db, "guardian", guardian_id, email="anna.corrected@example.nl")
    later = changed(snap)
    find(later, "guardians", "V0001")["email"] = "old.outdated@example.nl"
    for _ in range(2):
        applied(push(client, school, later))
    assert one(db, "guardian", id=guardian_id)["email"] == "anna.corrected@example.nl"
    drift = one(db, "drift_item", record_id=guardian_id)
    assert (drift["our_value"], drift["esis_value"]) == (
        "anna.corrected@example.nl",
        "old.outdated@example.nl",
    )


def test_r5_drift_that_esis_takes_back_disappears(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=2)
    activate(client, school, snap)
    later = changed(snap)
    find(later, "students", "S0001")["last_name"] = "Typo"
    applied(push(client, school, later))
    assert len(rows(db, "drift_item")) == 1
    run = applied(push(client, school, snap))
    assert counts(run, "student")["drift_closed"] == 1
    assert rows(db, "drift_item") == []


def test_r5_apply_unedited_policy_follows_esis_for_unedited_fields(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db, update_policy="apply_unedited")
    snap = school_snapshot(students=2)
    activate(client, school, snap)
    guardian_id = one(db, "guardian", esis_key="V0001")["id"]
    edit_locally(db, "guardian", guardian_id, email="mine@example.nl")
    later = changed(snap)
    find(later, "guardians", "V0001")["email"] = "esis@example.nl"
    find(later, "guardians", "V0001")["phone"] = "+31600000000"
    run = applied(push(client, school, later))
    guardian = one(db, "guardian", id=guardian_id)
    assert guardian["phone"] == "+31600000000"  # never edited: follows ESIS
    assert guardian["email"] == "mine@example.nl"  # edited: stays, as drift
    assert counts(run, "guardian")["updated"] == 1
    assert one(db, "drift_item", record_id=guardian_id)["field"] == "email"


def test_r5_accepting_drift_applies_the_esis_value(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=3)
    activate(client, school, snap)
    guardian_id = one(db, "guardian", esis_key="V0001")["id"]
    edit_locally(db, "guardian", guardian_id, email="mine@example.nl")
    later = changed(snap)
    find(later, "guardians", "V0001")["email"] = "esis@example.nl"
    find(later, "students", "S0002")["birth_date"] = "2017-05-05"
    find(later, "students", "S0003")["last_name"] = "Anders"
    applied(push(client, school, later))
    items = client.get(f"/api/v1/schools/{school.key}/drift", headers=auth(school.admin)).json()[
        "items"
    ]
    assert len(items) == 3
    guardian_item = next(i for i in items if i["entity"] == "guardian")
    one_by_id = client.post(
        f"/api/v1/schools/{school.key}/drift/accept",
        json={"ids": [guardian_item["id"]]},
        headers=auth(school.admin),
    )
    assert one_by_id.json()["accepted"] == 1
    guardian = one(db, "guardian", id=guardian_id)
    assert guardian["email"] == "esis@example.nl"
    assert "email" not in guardian["local_edits"]
    by_filter = client.post(
        f"/api/v1/schools/{school.key}/drift/accept",
        json={"filter": {"entity": "student"}},
        headers=auth(school.admin),
    )
    assert by_filter.json()["accepted"] == 2
    assert str(one(db, "student", esis_key="S0002")["birth_date"]) == "2017-05-05"
    assert rows(db, "drift_item") == []
    run = applied(push(client, school, later))
    assert counts(run, "student")["drift_opened"] == 0
    assert counts(run, "guardian")["drift_opened"] == 0
    unknown = client.post(
        f"/api/v1/schools/{school.key}/drift/accept",
        json={"ids": [str(uuid.uuid4())]},
        headers=auth(school.admin),
    )
    assert unknown.status_code == 404
    both = client.post(
        f"/api/v1/schools/{school.key}/drift/accept",
        json={"ids": [], "filter": {}},
        headers=auth(school.admin),
    )
    assert both.status_code == 422


def test_decision_groups_follow_esis_unless_edited(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=2)
    activate(client, school, snap)
    later = changed(snap)
    find(later, "groups", "G5A")["name"] = "Groep 5 Zonnetjes"
    find(later, "groups", "G6A")["name"] = "Groep 6 Maantjes"
    edit_locally(
        db, "school_group", one(db, "school_group", esis_key="G6A")["id"], name="6 Sterren"
    )
    run = applied(push(client, school, later))
    assert one(db, "school_group", esis_key="G5A")["name"] == "Groep 5 Zonnetjes"
    assert one(db, "school_group", esis_key="G6A")["name"] == "6 Sterren"
    assert counts(run, "group")["updated"] == 1
    assert counts(run, "group")["drift_opened"] == 1


# --- R6 deletions are not propagated ------------------------------------------------------


def test_r6_absent_records_stay_marked_missing_and_clear_on_return(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=3)
    activate(client, school, snap)
    later = changed(snap)
    later["students"] = [s for s in later["students"] if s["key"] != "S0003"]
    later["guardians"] = [g for g in later["guardians"] if g["key"] != "V0003"]
    later["staff"] = later["staff"][:1]
    run = applied(push(client, school, later))
    assert counts(run, "student")["missing"] == 1
    assert counts(run, "guardian")["missing"] == 1
    assert counts(run, "staff")["missing"] == 1
    assert counts(run, "student_group")["missing"] == 2  # its class and its reading group
    assert len(rows(db, "student")) == 3
    assert one(db, "student", esis_key="S0003")["missing_in_esis_since"] is not None
    back = applied(push(client, school, snap))
    assert counts(back, "student")["reappeared"] == 1
    assert counts(back, "student_group")["reappeared"] == 2
    assert all(r["missing_in_esis_since"] is None for r in rows(db, "student"))
    assert all(r["missing_in_esis_since"] is None for r in rows(db, "student_group"))


def test_r6_locally_deleted_records_are_not_brought_back(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=2)
    activate(client, school, snap)
    student_id = one(db, "student", esis_key="S0001")["id"]
    delete_locally(db, "student", student_id)
    for _ in range(2):
        run = applied(push(client, school, snap))
        assert counts(run, "student")["suppressed"] == 1
        assert counts(run, "student")["added"] == 0
    assert len(rows(db, "student", esis_key="S0001")) == 1
    assert one(db, "student", id=student_id)["deleted_at"] is not None


def test_r6_locally_removed_membership_is_not_brought_back(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=3)
    activate(client, school, snap)
    student_id = one(db, "student", esis_key="S0003")["id"]
    reading = one(db, "school_group", esis_key="LEES1")["id"]
    link = one(db, "student_group", student_id=student_id, group_id=reading)
    delete_locally(db, "student_group", link["id"])
    run = applied(push(client, school, snap))
    assert counts(run, "student_group")["suppressed"] == 1
    assert len(rows(db, "student_group", student_id=student_id, group_id=reading)) == 1


# --- decisions ----------------------------------------------------------------------------------


def test_decision_student_group_move_is_drift_not_a_silent_move(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=2)
    activate(client, school, snap)
    student_id = one(db, "student", esis_key="S0001")["id"]
    g5a = one(db, "school_group", esis_key="G5A")["id"]
    g6a = one(db, "school_group", esis_key="G6A")["id"]
    later = changed(snap)
    find(later, "students", "S0001")["group"] = "G6A"
    run = applied(push(client, school, later))
    assert counts(run, "student")["drift_opened"] == 1
    assert {r["group_id"] for r in rows(db, "student_group", student_id=student_id)} == {g5a}
    drift = one(db, "drift_item", record_id=student_id)
    assert (drift["field"], drift["our_value"], drift["esis_value"]) == ("group", "G5A", "G6A")
    accepted = client.post(
        f"/api/v1/schools/{school.key}/drift/accept",
        json={"ids": [str(drift["id"])]},
        headers=auth(school.admin),
    )
    assert accepted.status_code == 200, accepted.text
    assert {r["group_id"] for r in rows(db, "student_group", student_id=student_id)} == {g6a}
    again = applied(push(client, school, later))
    assert counts(again, "student")["drift_opened"] == 0
    assert counts(again, "student_group")["added"] == 0


def test_decision_group_move_applies_under_apply_unedited(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db, update_policy="apply_unedited")
    snap = school_snapshot(students=2)
    activate(client, school, snap)
    student_id = one(db, "student", esis_key="S0001")["id"]
    later = changed(snap)
    find(later, "students", "S0001")["group"] = "G6A"
    run = applied(push(client, school, later))
    assert counts(run, "student_group")["moved"] == 1
    groups = {r["group_id"] for r in rows(db, "student_group", student_id=student_id)}
    assert groups == {one(db, "school_group", esis_key="G6A")["id"]}


def test_decision_same_snapshot_is_applied_once(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=2)
    activate(client, school, snap)
    later = changed(snap)
    later["students"].append({"key": "S0100", "last_name": "Nieuw", "group": "G5A"})
    later["guardians"].append(
        {
            "key": "V0100",
            "last_name": "Nieuw",
            "email": "n@example.nl",
            "students": [{"student": "S0100"}],
        }
    )
    first = push(client, school, later, fresh=False)
    second = push(client, school, later, fresh=False)
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert len(rows(db, "student", esis_key="S0100")) == 1
    assert len(rows(db, "sync_run")) == 3  # stored, activation, this one


def test_decision_idempotency_key_answers_with_the_first_run(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=2)
    first = push(client, school, snap, fresh=False, headers={"Idempotency-Key": "abc-1"})
    retry = push(client, school, snap, fresh=False, headers={"Idempotency-Key": "abc-1"})
    assert retry.json()["id"] == first.json()["id"]
    assert len(rows(db, "snapshot")) == 1
    other = changed(snap)
    other["students"] = other["students"][:1]
    other["guardians"] = other["guardians"][:1]
    reused = push(client, school, other, headers={"Idempotency-Key": "abc-1"})
    assert reused.status_code == 409


def test_decision_a_failing_snapshot_changes_nothing_and_is_recorded(
    client: TestClient, db: sessionmaker[Session], backend: str
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=2)
    activate(client, school, snap)
    before = {name: rows(db, name) for name in ("student", "school_group", "guardian", "event")}
    later = changed(snap)
    later["groups"].append({"key": "G8A", "name": "Groep 8a", "year_level": 8})
    later["students"].append({"key": "BOOM", "last_name": "Faalt", "group": "G8A"})
    later["guardians"].append(
        {
            "key": "V0100",
            "last_name": "X",
            "email": "x@example.nl",
            "students": [{"student": "BOOM"}],
        }
    )
    find(later, "guardians", "V0001")["phone"] = "+31699999999"
    with failing_insert(db, backend, key="BOOM"):
        response = push(client, school, later)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    after = {name: rows(db, name) for name in ("student", "school_group", "guardian", "event")}
    assert after == before
    runs = client.get(f"/api/v1/schools/{school.key}/sync-runs", headers=auth(school.reader)).json()
    failed = runs["items"][0]
    assert failed["status"] == "failed"
    assert "nothing was changed" in failed["error"]["detail"]
    # The cause gone, the same body is applied when sent again.
    assert push(client, school, later, fresh=False).json()["status"] == "applied"


def test_decision_an_earlier_school_year_is_refused_and_a_later_one_held(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=2)
    activate(client, school, snap)
    earlier = school_snapshot(students=2, year="2025-2026")
    refused = push(client, school, earlier)
    assert refused.status_code == 422
    assert "earlier" in refused.json()["detail"]
    later = school_snapshot(students=1, year="2027-2028")
    held = push(client, school, later)
    assert held.json()["status"] == "held"
    assert len(rows(db, "student")) == 2
    assert all(r["missing_in_esis_since"] is None for r in rows(db, "student"))


def test_r2_a_failing_activation_changes_nothing_and_is_recorded(
    client: TestClient, db: sessionmaker[Session], backend: str
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=2)
    snap["students"].append({"key": "BOOM", "last_name": "Faalt", "group": "G5A"})
    snap["guardians"].append(
        {
            "key": "V0100",
            "last_name": "X",
            "email": "x@example.nl",
            "students": [{"student": "BOOM"}],
        }
    )
    push(client, school, snap)
    with failing_insert(db, backend, key="BOOM"):
        response = client.post(
            f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
        )
    assert response.status_code == 500
    assert rows(db, "student") == []
    assert rows(db, "school_group") == []
    assert one(db, "school", key=school.key)["coupling"] == "inactive"
    runs = client.get(f"/api/v1/schools/{school.key}/sync-runs", headers=auth(school.reader))
    latest = runs.json()["items"][0]
    assert (latest["kind"], latest["status"]) == ("activation", "failed")


def test_decision_a_move_that_esis_takes_back_is_no_longer_drift(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    """Found by the property tests: the held move stayed open as drift after ESIS undid it."""
    school = make_school(client, db)
    snap = school_snapshot(students=2)
    activate(client, school, snap)
    later = changed(snap)
    find(later, "students", "S0001")["group"] = "G6A"
    applied(push(client, school, later))
    assert len(rows(db, "drift_item")) == 1
    back = applied(push(client, school, snap))
    assert counts(back, "student")["drift_closed"] == 1
    assert rows(db, "drift_item") == []


def test_decision_a_snapshot_stored_but_not_applied_is_applied_on_restart(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    """The process died between storing a snapshot and applying it: recovery applies it."""
    import hashlib
    import json

    from app.coupling import receive as runs

    school = make_school(client, db)
    snap = school_snapshot(students=2)
    activate(client, school, snap)
    later = changed(snap)
    later["students"].append({"key": "S0100", "last_name": "Nieuw", "group": "G5A"})
    later["guardians"].append(
        {
            "key": "V0100",
            "last_name": "Ouder",
            "email": "v@example.nl",
            "students": [{"student": "S0100"}],
        }
    )
    body = json.dumps(later).encode()
    school_id = one(db, "school", key=school.key)["id"]
    stored = runs._store(
        sessions=db,
        school_id=school_id,
        body=body,
        digest=hashlib.sha256(body).hexdigest(),
        content_type="application/json",
        idempotency_key=None,
        origin="push",
        actor="test",
        per_minute=100,
    )
    assert not isinstance(stored, runs.Received)
    assert one(db, "sync_run", id=stored[1].id)["status"] == "received"
    done = runs.recover_interrupted(sessions=db, today=dt.date(2026, 11, 28), grace=dt.timedelta(0))
    assert [r.id for r in done] == [stored[1].id]
    assert one(db, "sync_run", id=stored[1].id)["status"] == "applied"
    assert len(rows(db, "student", esis_key="S0100")) == 1
    assert (
        runs.recover_interrupted(sessions=db, today=dt.date(2026, 11, 28), grace=dt.timedelta(0))
        == []
    )
