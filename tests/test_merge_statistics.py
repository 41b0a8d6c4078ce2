"""An initial load into record tables without planner statistics (a fresh database).

Every link's foreign keys are checked by PostgreSQL with a query on (school_id, id) of the
record tables. Without statistics that check was planned on the (school_id, esis_key) index
and scanned the whole school per link: a 1,000-student initial load spent 0.6 s in the
guardian links' checks alone (issue 18). The merge now analyzes such a table before many
links go in (`app/sync/repository.py`, `_statistics_for_links`).
"""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from bench import synthetic
from tests.factories import auth, make_school

SHAPE = synthetic.Shape(students=240, classes=10, composites=2, guardians=420, staff=20)


def _reltuples(session: Session, table: str) -> float:
    return float(
        session.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
        ).scalar_one()
    )


def test_initial_load_gives_record_tables_statistics_before_the_links(
    client: TestClient, db: sessionmaker[Session], backend: str
) -> None:
    body = synthetic.build_school(7, SHAPE)
    summary = synthetic.summary(body)
    assert summary["student_guardian_links"] >= 200  # enough links to ask for statistics
    if backend == "postgresql":
        with db() as session:
            # The tables as a fresh database has them: analyzed empty (the fixture empties
            # them between tests), so their statistics say nothing.
            session.execute(text("ANALYZE student, guardian, staff, school_group"))
            session.commit()
            assert _reltuples(session, "student") == 0
    keys = make_school(client, db, brin="12AB")
    pushed = client.post(
        f"/api/v1/schools/{keys.key}/esis/snapshots",
        json=synthetic.with_header(body, brin="12AB", push=0),
        headers=auth(keys.esis),
    )
    assert pushed.status_code == 201, pushed.text
    activated = client.post(f"/api/v1/schools/{keys.key}/esis/activation", headers=auth(keys.admin))
    assert activated.status_code == 201, activated.text
    counts = activated.json()["counts"]
    assert counts["student"]["added"] == summary["students"]
    assert counts["student_guardian"]["added"] == summary["student_guardian_links"]
    if backend == "postgresql":
        with db() as session:
            assert _reltuples(session, "student") >= summary["students"]
            assert _reltuples(session, "guardian") >= summary["guardians"]
