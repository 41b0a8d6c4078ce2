"""Engine, the UTC timestamp type, and the session dependency that owns the transaction."""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, cast

import orjson
from fastapi import Depends, Request
from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel

# Constraint names are deterministic so that migrations name the same thing on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION
metadata: MetaData = SQLModel.metadata


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id() -> uuid.UUID:
    """A random (version 4) UUID, as `uuid.uuid4()` makes it, in about half its time: an
    initial load makes one for each of thousands of records, links and drift items."""
    return _version_4(os.urandom(16))


# `uuid.UUID(bytes=..., version=4)`, which `uuid.uuid4()` is, without its general __init__:
# the same bits (RFC 4122 variant, version 4) set on the same integer, and the same two
# attributes set as that __init__ sets them (a UUID is immutable: its __setattr__ refuses).
_CLEAR = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_VERSION_4 = (0x8000 << 48) | (4 << 76)


def _version_4(raw: bytes) -> uuid.UUID:
    value = object.__new__(uuid.UUID)
    object.__setattr__(value, "int", int.from_bytes(raw) & _CLEAR | _VERSION_4)
    object.__setattr__(value, "is_safe", uuid.SafeUUID.unknown)
    return value


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores aware datetimes as UTC and returns them aware on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(
        self,
        value: Any,
        dialect: Dialect,  # noqa: ARG002 (SQLAlchemy's signature)
    ) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # pysqlite's own transaction handling is switched off; `_sqlite_begin` below emits BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock up front (BEGIN IMMEDIATE): a deferred transaction that
    # reads first and writes later can fail with "database is locked" without waiting.
    mode = "IMMEDIATE" if conn.get_execution_options().get("sqlite_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


def json_text(value: Any, *, plain: bool = False) -> str | None:
    """A JSON column's text: orjson (about ten times quicker than the standard library).

    What orjson writes otherwise or refuses goes to the standard library, as the ORM's
    serializer did before: a datetime (orjson writes a `T`) as its `str()`, non-string keys,
    integers beyond 64 bits. Anything else neither writes faithfully (a set, bytes, a
    Decimal) is refused with TypeError, not stored as its `str()`; and a float that is not
    finite (which orjson would write as `null`) is refused with ValueError. The merge's
    values are strings, numbers, booleans, lists and dicts of them.

    `plain`: the value holds no float, by how it was made, so the walk that looks for one
    that is not finite is skipped (4 µs of an event's 5, and 30 ms of the 7,000 events of
    an initial load). For the merge's events (`emit(plain=True)`): their values are the
    snapshot's fields and the record columns they are compared with, none of them a float
    (`tests/test_plain_json.py` holds both)."""
    if value is None:
        return None
    try:
        text = orjson.dumps(value, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()
    except TypeError:
        return json.dumps(value, default=_moment, allow_nan=False)
    if not plain and "null" in text and _not_finite(value):
        raise ValueError("a JSON value holds a float that is not finite")
    return text


def _moment(value: Any) -> Any:
    """The standard library's fallback: a datetime, date or time as its `str()`, and what
    orjson writes beside it in the same value as orjson does (a UUID as its text, an enum as
    its value)."""
    if isinstance(value, dt.datetime | dt.date | dt.time | uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _not_finite(value: Any) -> bool:
    """Whether a float that is not finite (NaN, infinity) lies anywhere in `value`.

    Walked with a stack and exact type checks first: it runs for every value whose text holds
    a `null` (an event's changes of a created record, most of an initial load's), so a
    recursive walk with generators cost more than orjson's whole write."""
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        v = pop()
        kind = type(v)
        if kind is str or v is None or kind is int or kind is bool:
            continue
        if kind is float or isinstance(v, float):
            if v - v != 0.0:  # NaN - NaN and inf - inf are NaN; a finite float gives 0.0
                return True
        elif kind is dict or isinstance(v, dict):
            extend(v.values())
        elif kind is list or kind is tuple or isinstance(v, list | tuple):
            extend(v)
    return False


def json_value(value: Any, *, plain: bool = False) -> str:
    """A JSON value given for a column, as its text: a given None is JSON `null`, as the JSON
    column type writes it in an INSERT or UPDATE (`none_as_null` is off), so a row holds the
    same whichever way it went in. (A column left out is SQL NULL, as in an INSERT.) It is
    also the engines' JSON serializer (`make_engine`): what the ORM writes to a JSON column
    is the same text as what COPY writes (`app.bulk`), on both databases."""
    return "null" if value is None else cast(str, json_text(value, plain=plain))


def make_engine(url: str, **kwargs: Any) -> Engine:
    # A database error's message would otherwise quote the statement's parameters: the names
    # and birth dates being written, into the log of whoever logs it.
    kwargs.setdefault("hide_parameters", True)
    kwargs.setdefault("json_serializer", json_value)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


def begin_write(session: Session) -> None:
    """Mark the session's transaction as a writer (BEGIN IMMEDIATE on SQLite)."""
    session.connection(execution_options={"sqlite_write": True})


@contextlib.contextmanager
def write_transaction(sessions: Callable[[], Session]) -> Iterator[Session]:
    """A session in one write transaction: begun as a writer (`begin_write`), committed when
    the block ends, rolled back when it raises. Services that own their transactions (a
    command, a pull, a job) take it instead of writing `begin_write ... commit` by hand."""
    with sessions() as session:
        begin_write(session)
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        session.commit()


_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session(request: Request) -> Iterator[Session]:
    """One session per request: commit on success, roll back on any error."""
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    with factory() as session:
        if request.method not in _READ_METHODS:
            begin_write(session)
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        session.commit()


# The request's session, committed by its route on success (see `get_session`).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
