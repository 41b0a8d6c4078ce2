"""Corrections for ESIS: local edits whose value differs from what ESIS sends today."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import SchoolKeys, auth, make_school
from tests.merge_helpers import activate, applied, edit_locally, one, push
from tests.snapshots import changed, find, school_snapshot


def _report(client: TestClient, school: SchoolKeys, **params: Any) -> dict[str, Any]:
    response = client.get(
        f"/api/v1/schools/{school.key}/reports/corrections",
        params=params,
        headers=auth(school.reader),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_r5_a_parents_corrected_email_is_listed_until_esis_catches_up(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot()
    activate(client, school, snap)
    guardian = one(db, "guardian", esis_key="V0001")
    old_email = find(snap, "guardians", "V0001")["email"]
    edited = client.patch(
        f"/api/v1/schools/{school.key}/guardians/{guardian['id']}",
        json={"email": "anna.new@example.nl"},
        headers=auth(school.admin),
    )
    assert edited.status_code == 200, edited.text
    report = _report(client, school)
    assert report["next_cursor"] is None
    [item] = report["items"]
    assert item["kind"] == "guardian" and item["field"] == "email"
    assert (item["our_value"], item["esis_value"]) == ("anna.new@example.nl", old_email)
    assert item["esis_key"] == "V0001"
    assert item["edited_by"].startswith("key:")

    later = changed(snap)  # ESIS still sends the old value: still listed
    applied(push(client, school, later))
    assert len(_report(client, school)["items"]) == 1

    caught_up = changed(later)
    find(caught_up, "guardians", "V0001")["email"] = "anna.new@example.nl"
    applied(push(client, school, caught_up))
    assert _report(client, school)["items"] == []


def test_corrections_are_paged_filtered_and_served_as_csv(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    activate(client, school, school_snapshot(students=6))
    for i in range(1, 6):
        student = one(db, "student", esis_key=f"S{i:04d}")
        edit_locally(db, "student", student["id"], given_name=f"=Roep{i}", email=f"k{i}@x.nl")
    guardian = one(db, "guardian", esis_key="V0002")
    edit_locally(db, "guardian", guardian["id"], phone="+31600000000")
    group = one(db, "school_group", esis_key="G5A")
    edit_locally(db, "school_group", group["id"], name="Groep 5 Zon")

    seen: list[tuple[str, str, str]] = []
    cursor = None
    while True:
        page = _report(client, school, limit=3, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= 3
        seen += [(i["kind"], i["record_id"], i["field"]) for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    kinds = [k for k, _, _ in seen]
    assert kinds.count("group") == 1 and kinds.count("guardian") == 1
    assert kinds.count("student") >= 5
    assert kinds == sorted(kinds, key=["group", "student", "guardian", "staff"].index)

    names = _report(client, school, kind="student", field="given_name")["items"]
    assert len(names) == 5 and {i["field"] for i in names} == {"given_name"}
    assert _report(client, school, kind="staff")["items"] == []

    response = client.get(
        f"/api/v1/schools/{school.key}/reports/corrections",
        params={"kind": "student", "field": "given_name", "limit": 2},
        headers={**auth(school.reader), "Accept": "text/csv"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert 'rel="next"' in response.headers["link"]
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert len(table) == 2
    assert table[0]["our_value"].startswith("'=Roep")  # no formula in a spreadsheet
    as_param = client.get(
        f"/api/v1/schools/{school.key}/reports/corrections?format=csv&kind=group",
        headers=auth(school.reader),
    )
    assert as_param.headers["content-type"].startswith("text/csv")
    assert "Groep 5 Zon" in as_param.text and "link" not in as_param.headers

    bad = client.get(
        f"/api/v1/schools/{school.key}/reports/corrections",
        params={"kind": "pupil"},
        headers=auth(school.reader),
    )
    assert bad.status_code == 422 and "kind" in bad.json()["detail"]
    forged = client.get(
        f"/api/v1/schools/{school.key}/reports/corrections",
        params={"cursor": "bm9wZQ"},
        headers=auth(school.reader),
    )
    assert forged.status_code == 422
