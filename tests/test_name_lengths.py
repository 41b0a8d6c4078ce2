"""Name prefixes and initials hold what the schemas accept: 100 characters (the snapshot's
`ShortText`, the guardian block's `VerzorgerTekst100Type`, the roster's `Short`). The columns
held 50, so on PostgreSQL a guardian's 60-character initials passed validation and then made
the activation a 500; a local edit of that length did the same. Both databases."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

import app.models  # noqa: F401 (every table in the metadata)
from app.db import metadata
from app.esis.schemas import SnapshotGroup, SnapshotGuardian, SnapshotStaff, SnapshotStudent
from app.roster import schemas as roster
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


ACCEPTED: list[tuple[type[BaseModel], str]] = [
    (SnapshotGroup, "school_group"),
    (SnapshotStudent, "student"),
    (SnapshotGuardian, "guardian"),
    (SnapshotStaff, "staff"),
    (roster.GroupCreate, "school_group"),
    (roster.GroupUpdate, "school_group"),
    (roster.StudentCreate, "student"),
    (roster.StudentUpdate, "student"),
    (roster.GuardianCreate, "guardian"),
    (roster.GuardianUpdate, "guardian"),
    (roster.StaffCreate, "staff"),
    (roster.StaffUpdate, "staff"),
]


def _longest(prop: dict[str, Any], defs: dict[str, Any]) -> int | None:
    """The longest text a JSON schema property accepts: its maxLength, or its longest enum
    value; None when it sets no bound."""
    for alt in [prop, *prop.get("anyOf", [])]:
        if "$ref" in alt:
            alt = defs[alt["$ref"].rsplit("/", 1)[-1]]
        if "maxLength" in alt:
            return int(alt["maxLength"])
        if "enum" in alt:
            return max(len(str(v)) for v in alt["enum"])
    return None


@pytest.mark.parametrize(("model", "table"), ACCEPTED, ids=lambda v: getattr(v, "__name__", v))
def test_every_text_a_client_may_send_fits_its_column(model: type[BaseModel], table: str) -> None:
    """A value the schema accepts must fit the column it is stored in: a longer one would
    pass validation and fail in the database (a 500 on PostgreSQL, which enforces lengths)."""
    schema = model.model_json_schema()
    columns = metadata.tables[table].c
    checked = 0
    for name, prop in schema["properties"].items():
        length = getattr(columns[name].type, "length", None) if name in columns else None
        if length is None:
            continue
        longest = _longest(prop, schema.get("$defs", {}))
        assert longest is not None, (
            f"{model.__name__}.{name} is unbounded; {table}.{name} holds {length}"
        )
        assert longest <= length, f"{model.__name__}.{name} accepts {longest}; the column {length}"
        checked += 1
    assert checked > 0
