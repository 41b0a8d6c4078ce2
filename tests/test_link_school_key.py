"""The link tables without a foreign key of their own to the school (migration
d5e8f1a2b3c4): the same integrity through their keys to both ends, on both databases, and
the migration keeps the rows both ways."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, MetaData, delete, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import make_engine
from app.migrations import alembic_config
from app.roster.models import Group, Student, StudentGroup
from app.schools.models import School
from tests import procs

LINKS = ("student_group", "student_guardian", "staff_group")
BEFORE = "a4b7c2d9e1f3"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with procs.fresh_database(str(request.param), tmp_path) as url:
        eng = make_engine(url)
        yield eng
        eng.dispose()


def _school(session: Session, key: str) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    school = School(
        key=key, brin=key[:4], branch=key[4:], name="De Regenboog", daily_sync_time=dt.time(17)
    )
    session.add(school)
    session.flush()
    student = Student(school_id=school.id, source="esis", esis_key="S1", last_name="Jansen")
    group = Group(school_id=school.id, source="esis", esis_key="G1", name="Groep 5")
    session.add_all([student, group])
    session.flush()
    return school.id, student.id, group.id


def _school_keys(engine: Engine) -> dict[str, bool]:
    """Per link table: whether it has a foreign key on school_id alone to the school."""
    found = inspect(engine)
    return {
        table: any(
            fk["referred_table"] == "school" and fk["constrained_columns"] == ["school_id"]
            for fk in found.get_foreign_keys(table)
        )
        for table in LINKS
    }


def _links(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(StudentGroup)) or 0)


def test_a_link_still_needs_both_ends_in_its_school_and_goes_with_it(engine: Engine) -> None:
    assert _school_keys(engine) == dict.fromkeys(LINKS, False)
    with Session(engine) as session, session.begin():
        school, student, group = _school(session, "12AB00")
        other, _, _ = _school(session, "34CD00")
        session.add(
            StudentGroup(school_id=school, source="esis", student_id=student, group_id=group)
        )
    for school_id, student_id in (
        (other, student),
        (uuid.uuid4(), student),
        (school, uuid.uuid4()),
    ):
        # The ends of another school, or of no school at all, are refused.
        with Session(engine) as session, pytest.raises(IntegrityError), session.begin():
            session.add(
                StudentGroup(
                    school_id=school_id, source="esis", student_id=student_id, group_id=group
                )
            )
    assert _links(engine) == 1
    with Session(engine) as session, session.begin():
        session.execute(delete(School).where(School.id == school))  # type: ignore[arg-type]
    assert _links(engine) == 0  # through the student and the group


def test_the_migration_keeps_the_links_down_and_up(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        school, student, group = _school(session, "12AB00")
        session.add(
            StudentGroup(school_id=school, source="esis", student_id=student, group_id=group)
        )
    config = alembic_config(str(engine.url.render_as_string(hide_password=False)))
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, BEFORE)
        conn.commit()
    assert _school_keys(engine) == dict.fromkeys(LINKS, True)
    assert _links(engine) == 1
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        conn.commit()
    assert _school_keys(engine) == dict.fromkeys(LINKS, False)
    assert _links(engine) == 1


# Before the first migration that rebuilds the group and person tables on SQLite (the
# `contacts` source: a changed CHECK constraint is a batch rebuild there).
BEFORE_REBUILDS = "b7e1c0a2f3d4"


def test_an_upgrade_across_the_table_rebuilds_keeps_every_link(engine: Engine) -> None:
    """A school's groups, persons and links written at an old revision are all there after
    the upgrade to head. On SQLite a batch migration rebuilds a table by dropping the old
    one; with foreign keys enforced that deleted every link of a rebuilt group or person
    table (ON DELETE CASCADE): an upgrade lost every student's groups and guardians. The
    migrations now run with the keys off, check them before the commit, and turn them on."""
    config = alembic_config(str(engine.url.render_as_string(hide_password=False)))
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, BEFORE_REBUILDS)
        conn.commit()
    old = MetaData()
    old.reflect(engine)
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    ids = {name: uuid.uuid4().hex for name in ("school", "student", "guardian", "group", "staff")}
    record = {"school_id": ids["school"], "source": "esis", "local_edits": {}, "version": 1}
    stamps = {"created_at": now, "updated_at": now}
    link = {"school_id": ids["school"], "source": "esis", "local_edits": {}, **stamps}
    rows = {
        "school": {
            "id": ids["school"],
            "key": "12AB00",
            "brin": "12AB",
            "branch": "00",
            "name": "De Regenboog",
            "coupling": "active",
            "update_policy": "ignore",
            "daily_sync_time": dt.time(17),
            "removal_guard_share": 0.5,
            "event_seq": 0,
            **stamps,
        },
        "student": {**record, **stamps, "id": ids["student"], "esis_key": "S1"},
        "guardian": {**record, **stamps, "id": ids["guardian"], "esis_key": "V1"},
        "school_group": {
            **record,
            **stamps,
            "id": ids["group"],
            "esis_key": "G1",
            "is_composite": False,
        },
        "staff": {
            **record,
            **stamps,
            "id": ids["staff"],
            "esis_key": "LK1",
            "roles": [],
            "active": True,
        },
        "student_group": {
            **link,
            "id": uuid.uuid4().hex,
            "student_id": ids["student"],
            "group_id": ids["group"],
        },
        "student_guardian": {
            **link,
            "id": uuid.uuid4().hex,
            "student_id": ids["student"],
            "guardian_id": ids["guardian"],
        },
        "staff_group": {
            **link,
            "id": uuid.uuid4().hex,
            "staff_id": ids["staff"],
            "group_id": ids["group"],
        },
    }
    with engine.begin() as conn:
        for name, values in rows.items():
            conn.execute(insert(old.tables[name]).values(values))
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        conn.commit()
        counts = {
            name: conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one() for name in rows
        }
        if engine.dialect.name == "sqlite":  # enforced again on the migrating connection
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    assert counts == dict.fromkeys(rows, 1)
