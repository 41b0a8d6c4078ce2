"""The merge's state is the school's rows as the tables hold them (issue 18: on PostgreSQL it
is read through the driver's cursor, without SQLAlchemy's result processing)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import select

from app.schools.models import School
from app.sync import repository
from app.sync.plan import EntityState, LinkState
from tests.factories import auth, make_school
from tests.snapshots import school_snapshot


def test_load_state_reads_every_row_as_sqlalchemy_reads_it(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    keys = make_school(client, db)
    for path in ("esis/snapshots", "esis/activation"):
        body = school_snapshot() if path == "esis/snapshots" else None
        response = client.post(
            f"/api/v1/schools/{keys.key}/{path}",
            json=body,
            headers=auth(keys.esis if body else keys.admin),
        )
        assert response.status_code == 201, response.text
    with db.begin() as session:
        school_id = session.scalars(select(School.id).where(School.key == keys.key)).one()
        # Values of every kind: a datetime (set in another zone), JSON, a date, NULLs.
        t = repository.table("guardian")
        moment = dt.datetime(2026, 11, 5, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
        session.execute(
            update(t)
            .where(t.c.school_id == school_id)
            .values(missing_in_esis_since=moment, local_edits={"email": {"by": "x"}})
        )
    with db() as session:
        state = repository.load_state(session=session, school_id=school_id)
        tables: dict[str, EntityState | LinkState] = {
            "school_group": state.groups,
            "student": state.students,
            "guardian": state.guardians,
            "staff": state.staff,
            "student_group": state.student_groups,
            "student_guardian": state.student_guardians,
            "staff_group": state.staff_groups,
        }
        compared = 0
        for name, loaded in tables.items():
            t = repository.table(name)
            expected = {
                row["id"]: dict(row)
                for row in session.execute(t.select().where(t.c.school_id == school_id)).mappings()
            }
            rows: list[dict[str, Any]] = list(loaded.rows.values())
            assert len(rows) == len(expected) > 0, name
            for row in rows:
                want = {k: v for k, v in expected[row["id"]].items() if k in row}
                assert row == want, name
                assert set(expected[row["id"]]) - set(row) <= repository.UNREAD, name
                compared += 1
        guardian = next(iter(state.guardians.rows.values()))
        assert guardian["missing_in_esis_since"] == moment
        assert guardian["missing_in_esis_since"].utcoffset() == dt.timedelta(0)
        assert compared > 10


def test_a_json_column_is_decoded_in_one_call_or_value_by_value() -> None:
    """A column of JSON texts is one array to the decoder; a text orjson refuses (Infinity,
    which json.dumps writes and SQLite keeps) sends the column to `_json`, value by value."""
    texts = ['{"email": {"by": "x"}}', None, "{}", "[1, 2]"]
    assert repository._json_column(texts) == [{"email": {"by": "x"}}, None, {}, [1, 2]]
    assert repository._json_column(["null", "{}"]) == [None, {}]
    assert repository._json_column(['{"n": Infinity}', None, "{}"]) == [
        {"n": float("inf")},
        None,
        {},
    ]
