"""UPDATE by primary key from arrays (PostgreSQL: one `UPDATE ... FROM unnest(...)` per set of
columns) writes what the executemany of one UPDATE per row wrote, value for value; on SQLite
both are the executemany."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col, select

from app.bulk import bulk_insert, bulk_update
from app.db import utcnow
from app.esis.parsing import parse_snapshot
from app.schools.models import School
from app.sync.repository import ORDER, TABLES
from bench import synthetic
from tests.factories import make_school
from tests.test_bulk_copy import SHAPE, _stored, initial_plan

# Values that an array literal must carry exactly: quotes, commas, braces, backslashes,
# NULL as a word, whitespace, other scripts and emoji.
ODD_TEXTS = ['o"brien, {x}', "back\\slash", "NULL", "  spaced  ", "Ümit 𝄞 😀", "a'b"]


def _schools(client: TestClient, db: sessionmaker[Session]) -> tuple[uuid.UUID, uuid.UUID]:
    """Two schools holding the same initial load (the same record ids in each)."""
    body = synthetic.with_header(synthetic.build_school(5, SHAPE), brin="14AD", push=0)
    parsed = parse_snapshot(synthetic.encode(body), "application/json")
    keys = [make_school(client, db, brin=brin).key for brin in ("14AD", "15AE")]
    with db() as session:
        ids = [
            session.scalars(select(col(School.id)).where(col(School.key) == k)).one() for k in keys
        ]
        plan = initial_plan(ids[0], parsed)
        for name in ORDER:
            rows = plan.tables[name].inserts
            for school_id in ids:
                bulk_insert(session, TABLES[name], [{**r, "school_id": school_id} for r in rows])
        session.commit()
    return ids[0], ids[1]


def _student_ids(session: Session, school_id: uuid.UUID) -> list[uuid.UUID]:
    t = TABLES["student"]
    return sorted(session.scalars(select(t.c.id).where(t.c.school_id == school_id)).all())


def _updates(session: Session, school_id: uuid.UUID) -> list[dict[str, Any]]:
    """Updates of every column type a merge writes, NULLs and odd texts among them, in four
    shapes (sets of columns), one of them all NULL."""
    ids = _student_ids(session, school_id)
    zone = dt.timezone(dt.timedelta(hours=1))
    out: list[dict[str, Any]] = []
    for i, record_id in enumerate(ids[:60]):
        text = ODD_TEXTS[i % len(ODD_TEXTS)]
        row: dict[str, Any] = {"school_id": school_id, "id": record_id}
        if i % 3 == 0:
            row.update(
                last_name=f"{text} {i}",
                name_prefix=None if i % 2 else text,
                birth_date=None if i % 4 == 0 else dt.date(2018, 1 + i % 12, 1 + i % 28),
                year_level=None if i % 5 == 0 else i % 9,
                esis_values={"last_name": text, "roles": [text, i], "n": None},
                updated_at=dt.datetime(2026, 12, 1, 9, i % 60, tzinfo=zone),
                version=i + 2,
            )
        elif i % 3 == 1:
            row.update(
                missing_in_esis_since=None if i % 2 else dt.datetime(2026, 11, 30, tzinfo=zone)
            )
        else:
            row.update(esis_values=None if i % 2 else [text], local_edits={"email": {"by": text}})
        out.append(row)
    for record_id in ids[60:70]:  # a shape whose arrays hold nothing but NULLs
        out.append(
            {"school_id": school_id, "id": record_id, "deleted_at": None, "year_level": None}
        )
    return out


def test_updates_from_arrays_write_what_an_update_per_row_wrote(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    by_arrays, by_rows = _schools(client, db)
    t = TABLES["student"]
    with db() as session:
        updates = _updates(session, by_arrays)
        cleared = [row["id"] for row in updates if "deleted_at" in row]
        for school_id in (by_arrays, by_rows):  # values for the all-NULL shape to clear
            session.execute(
                t.update()
                .where(t.c.school_id == school_id, t.c.id.in_(cleared))
                .values(deleted_at=utcnow(), year_level=7)
            )
        bulk_update(session, t, updates)  # PostgreSQL: four statements from arrays
        for row in updates:  # one row at a time: the executemany path on every database
            bulk_update(session, t, [{**row, "school_id": by_rows}])
        session.commit()
        arrays, rows = _stored(session, t, by_arrays), _stored(session, t, by_rows)
    assert len(arrays) == len(rows) == SHAPE.students
    assert arrays == rows
    changed = {row["id"]: row for row in updates}
    stored = {row["id"]: row for row in arrays}
    for record_id, update in changed.items():  # and the values are the ones given
        for name, value in update.items():
            if name in ("school_id", "esis_values", "local_edits"):
                continue
            if isinstance(value, dt.datetime):
                assert stored[record_id][name] == value.astimezone(dt.UTC), name
            else:
                assert stored[record_id][name] == value, name


def test_a_row_updated_twice_in_one_call_ends_as_an_update_per_row_leaves_it(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school_id, _ = _schools(client, db)
    t = TABLES["student"]
    with db() as session:
        first, second = _student_ids(session, school_id)[:2]
        bulk_update(
            session,
            t,
            [
                {"school_id": school_id, "id": first, "last_name": "Eerst"},
                {"school_id": school_id, "id": second, "last_name": "Ander"},
                {"school_id": school_id, "id": first, "last_name": "Laatst"},
            ],
        )
        session.commit()
        names: dict[uuid.UUID, str] = dict(
            session.execute(
                select(t.c.id, t.c.last_name).where(
                    t.c.school_id == school_id, t.c.id.in_([first, second])
                )
            ).all()
        )
    assert names == {first: "Laatst", second: "Ander"}


def _outcome(db: sessionmaker[Session], school_id: uuid.UUID, rows: list[dict[str, Any]]) -> str:
    """What `bulk_update` of `rows` left: refused (nothing stored), or the lengths it stored."""
    t = TABLES["student"]
    with db() as session:
        try:
            bulk_update(session, t, rows)
            session.commit()
        except (DBAPIError, StatementError):
            session.rollback()
            return "refused"
        ids = [row["id"] for row in rows]
        lengths = session.scalars(
            select(t.c.last_name).where(t.c.school_id == school_id, t.c.id.in_(ids))
        ).all()
    return f"stored {sorted(len(name) for name in lengths)}"


def test_a_value_too_long_for_its_column_fares_as_with_an_update_per_row(
    client: TestClient, db: sessionmaker[Session], backend: str
) -> None:
    """PostgreSQL refuses it either way, and the arrays cast to TEXT, not VARCHAR(200), which
    would cut it; SQLite keeps lengths to the application and stores it either way."""
    by_arrays, by_rows = _schools(client, db)
    with db() as session:
        ids = _student_ids(session, by_arrays)
    rows = [{"id": record_id, "last_name": "x" * 201} for record_id in ids[:3]]
    arrays = _outcome(db, by_arrays, [{**row, "school_id": by_arrays} for row in rows])
    one_by_one = {_outcome(db, by_rows, [{**row, "school_id": by_rows}]) for row in rows}
    expected = "refused" if backend == "postgresql" else "stored [201, 201, 201]"
    assert arrays == expected
    assert one_by_one == {"refused" if backend == "postgresql" else "stored [201]"}
