"""Many events at once (a merge's) go in by binary COPY of value tuples on PostgreSQL; they
must be the very rows that text COPY of row dicts wrote before, and those that the inserts of
a few events at a time write."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col, select

from app.bulk import COPY_FROM, bulk_insert
from app.db import utcnow
from app.events import repository
from app.events.models import Event
from app.events.service import Change, emit
from app.schools.models import School
from tests.factories import make_school

# Text COPY gives a meaning to backslash, tab, newline and carriage return; JSON escapes the
# last three itself, so its text holds backslashes. `\N` is COPY's NULL when unescaped.
AWKWARD = ["back\\slash", "tab\there", "new\nline", "carriage\rreturn", "\\N", "quote \" '"]


def _changes(count: int) -> list[Change]:
    out = []
    for i in range(count):
        value = AWKWARD[i % len(AWKWARD)] + f" {i} é 😀"
        out.append(
            Change(
                "student" if i % 3 else "student_guardian",
                None if i % 7 == 0 else uuid.uuid4(),
                "created" if i % 2 else "updated",
                {} if i % 11 == 0 else {"last_name": {"before": None, "after": value}, "n": i},
            )
        )
    return out


def _rows(session: Session, school_id: uuid.UUID, run_id: uuid.UUID) -> list[dict[str, Any]]:
    """The stored events of one run, with the JSON column as the database holds its text."""
    result = session.execute(
        text(
            "SELECT seq, occurred_at, entity, entity_id, kind, CAST(changes AS TEXT) AS changes, "
            "source, actor, sync_run_id FROM event "
            "WHERE school_id = :school AND sync_run_id = :run ORDER BY seq"
        ),
        {"school": school_id.hex if _sqlite(session) else school_id, "run": _id(session, run_id)},
    )
    return [dict(row._mapping) for row in result]


def _sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _id(session: Session, value: uuid.UUID) -> Any:
    return value.hex if _sqlite(session) else value


def test_many_events_are_the_rows_few_events_are(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    keys = make_school(client, db)
    changes = _changes(COPY_FROM + 50)
    by_copy, by_rows, by_insert = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    actor = "user:o'brien\t\\x"  # the shared columns are escaped as well
    with db() as session:
        school_id = session.scalars(select(School.id).where(col(School.key) == keys.key)).one()
        emit(
            session=session,
            school_id=school_id,
            changes=changes,
            source="esis",
            actor=actor,
            sync_run_id=by_copy,
        )
        # The rows as `emit` made them before, by text COPY.
        last = repository.take_event_numbers(
            session=session, school_id=school_id, count=len(changes)
        )
        now = utcnow()
        rows = [
            {
                "school_id": school_id,
                "seq": last - len(changes) + 1 + i,
                "occurred_at": now,
                "entity": c.entity,
                "entity_id": c.entity_id,
                "kind": c.kind,
                "changes": c.changes,
                "source": "esis",
                "actor": actor,
                "sync_run_id": by_rows,
            }
            for i, c in enumerate(changes)
        ]
        bulk_insert(session, Event.__table__, rows, binary=False)  # type: ignore[attr-defined]
        for start in range(0, len(changes), COPY_FROM // 2):  # below COPY_FROM: inserts
            emit(
                session=session,
                school_id=school_id,
                changes=changes[start : start + COPY_FROM // 2],
                source="esis",
                actor=actor,
                sync_run_id=by_insert,
            )
        session.commit()
        copied, written, inserted = (
            _rows(session, school_id, run) for run in (by_copy, by_rows, by_insert)
        )
        events = session.scalars(
            select(Event).where(col(Event.sync_run_id) == by_copy).order_by(col(Event.seq))
        ).all()
    assert len(copied) == len(written) == len(inserted) == len(changes)
    first = copied[0]["seq"]
    assert [r["seq"] for r in copied] == list(range(first, first + len(changes)))
    assert written[0]["seq"] == copied[-1]["seq"] + 1
    assert inserted[0]["seq"] == written[-1]["seq"] + 1
    assert len({r["occurred_at"] for r in copied}) == 1
    ignore = ("seq", "occurred_at", "sync_run_id")

    def same(rows: list[dict[str, Any]], parse: bool = False) -> list[dict[str, Any]]:
        return [
            {k: json.loads(v) if parse and k == "changes" else v for k, v in r.items()}
            for r in ({k: v for k, v in r.items() if k not in ignore} for r in rows)
        ]

    assert same(copied) == same(written)  # the same text, to the byte
    # Inserts through SQLAlchemy write the same JSON with the standard library's spacing.
    assert same(copied, parse=True) == same(inserted, parse=True)
    # And read back through the model, each event is the change it was given.
    assert [(e.entity, e.entity_id, e.kind, e.changes, e.actor) for e in events] == [
        (c.entity, c.entity_id, c.kind, c.changes, actor) for c in changes
    ]
