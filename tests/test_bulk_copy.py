"""An initial load's rows written by binary COPY (PostgreSQL) are the rows text COPY wrote
before, column by column; on SQLite (the driver's executemany of the values, `copy_rows`)
both are that one path. On both, they are what SQLAlchemy's insert writes, as stored."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import JSON, Table, Text, cast, insert, select
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from app.bulk import COPY_FROM, bulk_insert
from app.db import utcnow
from app.esis.parsing import Parsed, parse_snapshot
from app.schools.models import School, UpdatePolicy
from app.sync.plan import EntityState, LinkState, Plan, State
from app.sync.repository import ORDER, TABLES
from app.sync.service import plan_merge
from bench import synthetic
from tests.factories import make_school

SHAPE = synthetic.Shape(students=240, classes=10, composites=2, guardians=420, staff=20)


def _empty(school_id: uuid.UUID) -> State:
    return State(
        school_id=school_id,
        groups=EntityState(),
        students=EntityState(),
        guardians=EntityState(),
        staff=EntityState(),
        student_groups=LinkState(),
        student_guardians=LinkState(),
        staff_groups=LinkState(),
        drift={},
    )


def initial_plan(school_id: uuid.UUID, parsed: Parsed) -> Plan:
    """The initial load of `parsed` into an empty school: every row a plan inserts."""
    return plan_merge(
        state=_empty(school_id),
        snapshot=parsed.snapshot,
        policy=UpdatePolicy.IGNORE,
        activation=True,
        run_id=None,
        now=utcnow(),
    )


def _stored(session: Session, t: Table, school_id: uuid.UUID) -> list[dict[str, Any]]:
    """The school's rows of `t` without school_id, JSON as the database holds its text."""
    columns = [
        cast(c, Text).label(c.name) if isinstance(c.type, JSON) else c
        for c in t.columns
        if c.name != "school_id"
    ]
    rows = session.execute(select(*columns).where(t.c.school_id == school_id)).mappings()
    return sorted((dict(r) for r in rows), key=lambda r: str(r["id"]))


def _as_stored(session: Session, t: Table, school_id: uuid.UUID) -> list[tuple[Any, ...]]:
    """The school's rows of `t` without school_id, every column as its stored text (SQLite:
    the UUID's hex, the datetime's text as written)."""
    columns = [cast(c, Text) for c in t.columns if c.name != "school_id"]
    rows = session.execute(select(*columns).where(t.c.school_id == school_id)).all()
    return sorted(tuple(r) for r in rows)


def test_binary_copy_writes_the_rows_text_copy_wrote(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    body = synthetic.with_header(synthetic.build_school(11, SHAPE), brin="12AB", push=0)
    parsed = parse_snapshot(synthetic.encode(body), "application/json")
    schools = [make_school(client, db, brin=brin).key for brin in ("12AB", "13AC", "14AD")]
    with db() as session:
        ids = [
            session.scalars(select(col(School.id)).where(col(School.key) == k)).one()
            for k in schools
        ]
        binary, textual, by_orm = ids
        plan = initial_plan(binary, parsed)
        for name in ORDER:
            rows = plan.tables[name].inserts
            assert rows
            bulk_insert(session, TABLES[name], rows)
            again = [{**row, "school_id": textual} for row in rows]
            bulk_insert(session, TABLES[name], again, binary=False)
            # SQLAlchemy's own insert, an executemany of the row dicts.
            session.execute(insert(TABLES[name]), [{**row, "school_id": by_orm} for row in rows])
        session.commit()
        assert sum(len(plan.tables[name].inserts) >= COPY_FROM for name in ORDER) >= 4
        for name in ORDER:
            t = TABLES[name]
            assert _stored(session, t, binary) == _stored(session, t, textual), name
            assert _as_stored(session, t, binary) == _as_stored(session, t, by_orm), name


def test_the_orm_writes_a_json_column_as_copy_does(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    """The engines' JSON serializer is `app.db.json_value`: a value written through the ORM
    (a sync run's counts, report and warnings) is stored as the same text as the same value
    written by COPY, on both databases: compact, UTF-8 as it is, None as JSON `null`, a value
    orjson refuses by the standard library."""
    import datetime as dt

    from app.db import json_value
    from app.sync.models import SyncRun

    key = make_school(client, db).key
    with db() as session:
        school_id = session.scalars(select(col(School.id)).where(col(School.key) == key)).one()
    values: list[Any] = [
        {"student": {"added": 3}, "naam": "Zoë 't Hart"},
        None,
        ["a", {"b": [1, 2, None]}],
        {"at": dt.datetime(2027, 1, 2, 3, 4, tzinfo=dt.UTC)},
        {"big": 2**70},
    ]
    ids = []
    with db.begin() as session:
        for value in values:
            run = SyncRun(school_id=school_id, kind="merge", origin="push", report=value)
            session.add(run)
            session.flush()
            ids.append(run.id)
    t = SyncRun.__table__  # type: ignore[attr-defined]
    with db() as session:
        stored: dict[uuid.UUID, str] = dict(
            session.execute(select(t.c.id, cast(t.c.report, Text)).where(t.c.id.in_(ids))).all()
        )
    assert [stored[i] for i in ids] == [json_value(v) for v in values]
    assert stored[ids[0]] == '{"student":{"added":3},"naam":"Zoë \'t Hart"}'
    assert stored[ids[1]] == "null"
