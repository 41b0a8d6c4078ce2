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
from sqlalchemy import Engine, delete, func, inspect, select
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
