"""Key changes: a record ESIS dropped and a new key for the same person in one snapshot are
proposed as one, never merged by themselves; an admin accepts or rejects the proposal."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import SchoolKeys, auth, make_school
from tests.merge_helpers import activate, applied, counts, edit_locally, one, push, rows
from tests.snapshots import Snapshot, changed, find, school_snapshot, with_new_key


def _url(school: SchoolKeys, path: str) -> str:
    return f"/api/v1/schools/{school.key}/{path}"


def _proposals(client: TestClient, school: SchoolKeys, **query: str) -> list[dict[str, Any]]:
    response = client.get(_url(school, "key-changes"), params=query, headers=auth(school.admin))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _setup(client: TestClient, db: sessionmaker[Session]) -> tuple[SchoolKeys, Snapshot]:
    school = make_school(client, db)
    snap = school_snapshot(students=4)
    activate(client, school, snap)
    return school, snap


def test_key_change_is_proposed_not_missing_and_new(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _setup(client, db)
    before = one(db, "student", esis_key="S0001")
    run = applied(push(client, school, with_new_key(snap, "S0001", "S0901")))
    assert counts(run, "student")["added"] == 0
    assert counts(run, "student")["missing"] == 0
    assert any("proposed as a key change" in w for w in run["warnings"])
    assert rows(db, "student", esis_key="S0901") == []
    assert one(db, "student", id=before["id"])["missing_in_esis_since"] is None
    # The student's links wait too: not marked missing, none added.
    links = rows(db, "student_guardian", student_id=before["id"])
    assert [link["missing_in_esis_since"] for link in links] == [None]
    [proposal] = _proposals(client, school)
    assert proposal["entity"] == "student" and proposal["record_id"] == str(before["id"])
    assert (proposal["old_key"], proposal["new_key"]) == ("S0001", "S0901")
    assert proposal["matched_by"] == "name_birth_date" and proposal["status"] == "proposed"
    assert proposal["run_id"] == run["id"]
    assert len([e for e in rows(db, "event") if e["kind"] == "key-change-proposed"]) == 1
    # The same snapshot again proposes nothing new.
    applied(push(client, school, with_new_key(snap, "S0001", "S0901")))
    assert len(_proposals(client, school)) == 1
    assert client.get(_url(school, "key-changes"), headers=auth(school.reader)).status_code == 403


def test_key_change_accepted_keeps_the_record_under_the_new_key(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _setup(client, db)
    record = one(db, "student", esis_key="S0001")
    edit_locally(db, "student", record["id"], email="hier@example.nl")
    rekeyed = with_new_key(snap, "S0001", "S0901")
    find(rekeyed, "students", "S0901")["email"] = "esis@example.nl"  # differs from the edit
    applied(push(client, school, rekeyed))
    [proposal] = _proposals(client, school)
    accepted = client.post(
        _url(school, f"key-changes/{proposal['id']}/accept"), headers=auth(school.admin)
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    after = one(db, "student", id=record["id"])
    assert after["esis_key"] == "S0901"
    assert after["email"] == "hier@example.nl" and "email" in after["local_edits"]  # kept
    [event] = [e for e in rows(db, "event") if e["kind"] == "key-changed"]
    assert event["entity_id"] == record["id"]
    assert event["changes"]["esis_key"] == {"before": "S0001", "after": "S0901"}
    # From now on ESIS's values apply as to any known record (R5: the edit is drift).
    run = applied(push(client, school, rekeyed))
    assert counts(run, "student")["added"] == 0 and counts(run, "student")["missing"] == 0
    drift = rows(db, "drift_item", record_id=record["id"], field="email")
    assert [d["esis_value"] for d in drift] == ["esis@example.nl"]
    assert len(rows(db, "student")) == 4
    twice = client.post(
        _url(school, f"key-changes/{proposal['id']}/accept"), headers=auth(school.admin)
    )
    assert twice.status_code == 409


def test_key_change_rejected_is_missing_and_new_from_then_on(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _setup(client, db)
    rekeyed = with_new_key(snap, "S0001", "S0901")
    applied(push(client, school, rekeyed))
    [proposal] = _proposals(client, school)
    rejected = client.post(
        _url(school, f"key-changes/{proposal['id']}/reject"), headers=auth(school.admin)
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert _proposals(client, school, status="proposed") == []
    run = applied(push(client, school, rekeyed))
    assert counts(run, "student")["added"] == 1 and counts(run, "student")["missing"] == 1
    assert one(db, "student", esis_key="S0001")["missing_in_esis_since"] is not None
    assert one(db, "student", esis_key="S0901")["missing_in_esis_since"] is None
    assert len(_proposals(client, school)) == 1  # not proposed again


def test_key_change_of_a_guardian_by_email_case_insensitive(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _setup(client, db)
    nxt = changed(snap)
    guardian = find(nxt, "guardians", "V0002")
    guardian["key"] = "V0902"
    guardian["email"] = guardian["email"].upper()
    run = applied(push(client, school, nxt))
    assert counts(run, "guardian")["added"] == 0 and counts(run, "guardian")["missing"] == 0
    [proposal] = _proposals(client, school)
    assert (proposal["entity"], proposal["matched_by"]) == ("guardian", "email")
    assert (proposal["old_key"], proposal["new_key"]) == ("V0002", "V0902")


def test_key_change_not_proposed_when_ambiguous_or_at_activation(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, snap = _setup(client, db)
    nxt = with_new_key(snap, "S0001", "S0901")
    twin = dict(find(nxt, "students", "S0901"), key="S0902")
    nxt["students"].append(twin)  # two new keys look like the one dropped: no guess
    run = applied(push(client, school, nxt))
    assert counts(run, "student")["added"] == 2 and counts(run, "student")["missing"] == 1
    assert _proposals(client, school) == []
    unknown = client.post(
        _url(school, "key-changes/00000000-0000-0000-0000-000000000000/accept"),
        headers=auth(school.admin),
    )
    assert unknown.status_code == 404
