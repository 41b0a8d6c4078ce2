"""Review 5: `bulk_update` from arrays against the executemany, for every table a merge writes
and every column of it but the keys, and the inserts by COPY from two rows on against the
executemany of one row at a time."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Table
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col, select

from app.bulk import bulk_insert, bulk_update
from app.db import utcnow
from app.schools.models import School
from app.sync.models import DriftItem
from app.sync.repository import ORDER, TABLES
from tests.factories import make_school
from tests.test_bulk_copy import _stored
from tests.test_bulk_update import ODD_TEXTS, _schools

# Columns not moved between rows: keys, references and what is unique per school.
FIXED = {"school_id", "id", "esis_key", "student_id", "group_id", "guardian_id", "staff_id"}


def _rows(session: Session, t: Table, school_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = session.execute(t.select().where(t.c.school_id == school_id)).mappings()
    return sorted((dict(r) for r in rows), key=lambda r: str(r["id"]))


def _moved(t: Table, rows: list[dict[str, Any]], school_id: uuid.UUID) -> list[dict[str, Any]]:
    """Each row given the values of the next one, every third one NULLs where allowed and odd
    texts in its strings: two shapes."""
    names = [c.name for c in t.columns if c.name not in FIXED]
    out = []
    for i, row in enumerate(rows):
        other = rows[(i + 1) % len(rows)]
        update: dict[str, Any] = {"school_id": school_id, "id": row["id"]}
        for name in names:
            value = other[name]
            length = getattr(t.c[name].type, "length", None)
            odd = ODD_TEXTS[i % len(ODD_TEXTS)]
            checked = name in ("source", "gender", "relation")  # values a CHECK allows
            if isinstance(value, str) and length is not None and len(odd) <= length and not checked:
                value = odd
            update[name] = value
        if i % 3 == 0:
            update = {
                k: v for k, v in update.items() if k in ("school_id", "id") or t.c[k].nullable
            }
            update.update({k: None for k in update if k not in ("school_id", "id")})
        out.append(update)
    return out


@pytest.mark.parametrize("name", ORDER)
def test_every_column_of_every_table_updates_from_arrays_as_row_by_row(
    client: TestClient, db: sessionmaker[Session], name: str
) -> None:
    by_arrays, by_rows = _schools(client, db)
    t = TABLES[name]
    with db() as session:
        rows = _rows(session, t, by_arrays)
        assert len(rows) > 3
        updates = _moved(t, rows, by_arrays)
        bulk_update(session, t, updates)
        for row in updates:
            bulk_update(session, t, [{**row, "school_id": by_rows}])
        session.commit()
        assert _stored(session, t, by_arrays) == _stored(session, t, by_rows)


def _parsed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON text parsed (orjson and json.dumps space it differently), SQL NULL kept apart."""
    return [
        {
            k: ("SQL NULL" if v is None else json.loads(v)) if k in JSON_NAMES else v
            for k, v in r.items()
        }
        for r in rows
    ]


JSON_NAMES = {"esis_values", "local_edits"}


@pytest.mark.parametrize("name", ORDER)
def test_inserts_by_copy_store_what_one_row_at_a_time_stored(
    client: TestClient, db: sessionmaker[Session], name: str
) -> None:
    """Rows with None in their nullable columns (JSON ones too), in a batch (COPY on
    PostgreSQL) and one at a time (an INSERT each).

    Found by this round's review: a JSON column's None went into COPY as SQL NULL, where
    SQLAlchemy's INSERT (and the UPDATE from arrays, through the bind processor) writes the
    JSON `null` (`JSON.none_as_null` is False). The application read None from both, but since
    COPY_FROM went from 200 to 2 nearly every insert of a merge stored the other form than the
    same row inserted alone or updated. COPY now writes a given None as `null`
    (`app.db.json_value`)."""
    source, _ = _schools(client, db)
    t = TABLES[name]
    keys = [make_school(client, db, brin=brin).key for brin in ("16AF", "17AG")]
    with db() as session:
        targets = [
            session.scalars(select(col(School.id)).where(col(School.key) == k)).one() for k in keys
        ]
        rows = _rows(session, t, source)[:6]
        for row in rows[::2]:
            for c in t.columns:
                if c.nullable and c.name not in FIXED:
                    row[c.name] = None
    with db() as session:
        for dependency in ORDER[: ORDER.index(name)]:  # the rows the links refer to
            d = TABLES[dependency]
            parents = _rows(session, d, source)
            for target in targets:
                bulk_insert(session, d, [{**r, "school_id": target} for r in parents])
        bulk_insert(session, t, [{**r, "school_id": targets[0]} for r in rows])
        for r in rows:
            bulk_insert(session, t, [{**r, "school_id": targets[1]}])
        session.commit()
        assert _parsed(_stored(session, t, targets[0])) == _parsed(_stored(session, t, targets[1]))


def test_drift_items_update_from_arrays_as_row_by_row(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    """A merge's drift updates: JSON values of every kind (texts, numbers, booleans, lists,
    dicts, None), datetimes in another zone, run ids or None."""
    by_arrays, by_rows = _schools(client, db)
    t = TABLES["student"]
    drift = cast(Table, DriftItem.__table__)  # type: ignore[attr-defined]
    zone = dt.timezone(dt.timedelta(hours=-5))
    values: list[Any] = [*ODD_TEXTS, 0, 7, True, False, None, [], ["a", 1], {"k": {"v": None}}]
    with db() as session:
        ids = sorted(session.scalars(select(t.c.id).where(t.c.school_id == by_arrays)).all())
        items = [
            {
                "id": uuid.uuid4(),
                "entity": "student",
                "record_id": r,
                "field": "last_name",
                "first_seen_at": utcnow(),
            }
            for r in ids[:40]
        ]
        for school_id in (by_arrays, by_rows):
            bulk_insert(session, drift, [{**item, "school_id": school_id} for item in items])
        updates = [
            {
                "school_id": by_arrays,
                "id": item["id"],
                "our_value": values[i % len(values)],
                "esis_value": values[(i + 3) % len(values)],
                "last_seen_at": dt.datetime(2026, 12, 1, 23, i, tzinfo=zone),
                "last_run_id": None if i % 2 else uuid.uuid4(),
            }
            for i, item in enumerate(items)
        ]
        bulk_update(session, drift, updates)
        for row in updates:
            bulk_update(session, drift, [{**row, "school_id": by_rows}])
        session.commit()
        assert _stored(session, drift, by_arrays) == _stored(session, drift, by_rows)
