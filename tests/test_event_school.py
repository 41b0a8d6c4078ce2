"""Events without a foreign key to the school (migration b2c3d4e5f6a7): the same integrity on
both databases. No event is written for a school that does not exist, none is left when its
school is deleted (also when the delete comes while the events are being written), and the
migration keeps the rows both ways."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, delete, func, inspect, select, text
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm import Session

from app.db import make_engine
from app.events.models import Event
from app.events.service import Change, emit
from app.migrations import alembic_config
from app.schools.models import School
from tests import procs

BEFORE = "a9c4e7b1d2f3"


def _engine(kind: str, tmp_path: Path) -> Iterator[Engine]:
    with procs.fresh_database(kind, tmp_path) as url:
        eng = make_engine(url)
        yield eng
        eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield from _engine(str(request.param), tmp_path)


@pytest.fixture
def pg_engine(tmp_path: Path) -> Iterator[Engine]:
    """PostgreSQL only: SQLite runs one write transaction at a time."""
    yield from _engine("postgresql", tmp_path)


def _school(engine: Engine, key: str) -> uuid.UUID:
    with Session(engine) as session, session.begin():
        school = School(
            key=key, brin=key[:4], branch=key[4:], name="De Regenboog", daily_sync_time=dt.time(17)
        )
        session.add(school)
        session.flush()
        return school.id


def _emit(session: Session, school_id: uuid.UUID, count: int) -> None:
    emit(
        session=session,
        school_id=school_id,
        source="api",
        actor="test",
        changes=[Change("student", uuid.uuid4(), "created", {"n": i}) for i in range(count)],
    )


def _events(engine: Engine, school_id: uuid.UUID) -> int:
    with Session(engine) as session:
        query = select(func.count()).select_from(Event).where(Event.school_id == school_id)  # type: ignore[arg-type]
        return int(session.scalar(query) or 0)


def _has_key(engine: Engine) -> bool:
    return any(fk["referred_table"] == "school" for fk in inspect(engine).get_foreign_keys("event"))


@pytest.mark.parametrize("count", [1, 50])  # one by INSERT, many by COPY on PostgreSQL
def test_no_event_is_written_for_a_school_that_does_not_exist(engine: Engine, count: int) -> None:
    assert not _has_key(engine)
    nobody = uuid.uuid4()
    with Session(engine) as session, pytest.raises(NoResultFound), session.begin():
        _emit(session, nobody, count)
    assert _events(engine, nobody) == 0


def test_deleting_a_school_deletes_its_events_and_only_its(engine: Engine) -> None:
    school, other = _school(engine, "12AB00"), _school(engine, "34CD00")
    with Session(engine) as session, session.begin():
        _emit(session, school, 30)
        _emit(session, other, 3)
    assert (_events(engine, school), _events(engine, other)) == (30, 3)
    with Session(engine) as session, session.begin():
        session.execute(delete(School).where(School.id == school))  # type: ignore[arg-type]
    assert (_events(engine, school), _events(engine, other)) == (0, 3)


def test_a_school_deleted_while_its_events_are_written_takes_them_with_it(
    pg_engine: Engine,
) -> None:
    """The writer holds the school's row from numbering to commit: the delete waits for it,
    then finds the events."""
    engine = pg_engine
    school = _school(engine, "12AB00")
    deleted = threading.Event()
    failures: list[BaseException] = []

    def delete_school() -> None:
        try:
            with Session(engine) as session, session.begin():
                session.execute(delete(School).where(School.id == school))  # type: ignore[arg-type]
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)
        deleted.set()

    with Session(engine) as session, session.begin():
        _emit(session, school, 40)
        thread = threading.Thread(target=delete_school)
        thread.start()
        assert not deleted.wait(0.5)  # waits for the school's row
        _emit(session, school, 10)
    thread.join(10)
    assert deleted.is_set() and not failures
    assert _events(engine, school) == 0


def test_truncating_the_schools_leaves_no_event(pg_engine: Engine) -> None:
    """`TRUNCATE school CASCADE` fires no DELETE trigger (found by review): a trigger on
    TRUNCATE deletes the events of schools that are gone, as the key's CASCADE did."""
    engine = pg_engine
    school = _school(engine, "12AB00")
    with Session(engine) as session, session.begin():
        _emit(session, school, 40)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE school CASCADE"))
    assert _events(engine, school) == 0


def test_the_migration_keeps_the_events_down_and_up(engine: Engine) -> None:
    school = _school(engine, "12AB00")
    with Session(engine) as session, session.begin():
        _emit(session, school, 5)
    config = alembic_config(str(engine.url.render_as_string(hide_password=False)))
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, BEFORE)
        conn.commit()
    assert _has_key(engine)
    assert _events(engine, school) == 5
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        conn.commit()
    assert not _has_key(engine)
    assert _events(engine, school) == 5
    with Session(engine) as session, session.begin():
        session.execute(delete(School).where(School.id == school))  # type: ignore[arg-type]
    assert _events(engine, school) == 0
