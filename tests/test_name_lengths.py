"""Name prefixes and initials hold what the schemas accept: 100 characters (the snapshot's
`ShortText`, the guardian block's `VerzorgerTekst100Type`, the roster's `Short`). The columns
held 50, so on PostgreSQL a guardian's 60-character initials passed validation and then made
the activation a 500; a local edit of that length did the same. Both databases."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import auth, make_school
from tests.merge_helpers import activate, one
from tests.snapshots import find, school_snapshot

LONG = "J." * 50  # 100 characters


def test_initials_and_prefixes_of_100_characters_are_stored(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot()
    for kind in ("students", "guardians", "staff"):
        record = snap[kind][0]
        record["initials"] = LONG
        record["name_prefix"] = "van " * 24 + "de"  # 98 characters
    run = activate(client, school, snap)
    assert run["status"] == "applied", run
    for table, kind in (("student", "students"), ("guardian", "guardians"), ("staff", "staff")):
        key = snap[kind][0]["key"]
        stored = one(db, table, esis_key=key)
        assert stored["initials"] == LONG
        assert stored["name_prefix"] == find(snap, kind, key)["name_prefix"]


def test_a_local_edit_of_100_characters_is_stored(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot()
    activate(client, school, snap)
    guardian = one(db, "guardian", esis_key=snap["guardians"][0]["key"])
    edited = client.patch(
        f"/api/v1/schools/{school.key}/guardians/{guardian['id']}",
        json={"initials": LONG},
        headers=auth(school.admin),
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["initials"] == LONG
