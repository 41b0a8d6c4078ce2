"""Drift items name the runs that first and last saw them (R5), on both databases."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import make_school
from tests.merge_helpers import activate, applied, counts, one, push
from tests.snapshots import changed, find, school_snapshot


def test_r5_drift_seen_again_names_the_run_that_saw_it(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=2)
    activate(client, school, snap)
    later = changed(snap)
    find(later, "guardians", "V0001")["phone"] = "+31687654321"
    opened = applied(push(client, school, later))
    assert counts(opened, "guardian")["drift_opened"] == 1
    item = one(db, "drift_item", field="phone")
    assert str(item["first_run_id"]) == opened["id"]
    assert str(item["last_run_id"]) == opened["id"]

    again = applied(push(client, school, later))  # the same drift, seen by a new run

    item = one(db, "drift_item", field="phone")
    assert str(item["first_run_id"]) == opened["id"]
    assert item["last_run_id"] is not None, "a re-seen drift item lost its run"
    assert str(item["last_run_id"]) == again["id"]
