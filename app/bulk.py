"""Bulk statements: COPY or executemany inserts, UPDATE by primary key, DELETE by ids.

Never a statement per row in a loop of our own; batches keep SQLite under its parameter cap.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Iterable, Iterator, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Integer,
    String,
    Table,
    TypeDecorator,
    Uuid,
    bindparam,
    delete,
    insert,
    text,
    update,
)
from sqlalchemy.orm import Session
from sqlmodel.sql.sqltypes import AutoString

from app.db import UTCDateTime, json_text, json_value

Row = dict[str, Any]
# Parameters per statement stay well under SQLite's limit (32766) and keep PG batches sane.
BATCH = 500


def chunks(rows: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


# From this many rows on, inserts go by COPY on PostgreSQL. Measured (2-core machine, an
# event row): one row either way about 0.6 ms; 3 rows 0.6 ms by COPY against 1.0 ms by an
# executemany, 30 rows 1.1 against 3.1 ms, 100 rows 3.2 against 7.3 ms. (It was 200 before:
# every daily merge's few new rows and events went the slower way.)
COPY_FROM = 2


def bulk_insert(session: Session, t: Table, rows: Sequence[Row], *, binary: bool = True) -> None:
    """Many rows: COPY on PostgreSQL (the fastest path, pitfalls.md); on SQLite the driver's
    executemany of the values (`copy_rows`); one row through SQLAlchemy's insert.

    `binary=False`: text COPY even where binary COPY would do (tests compare the two)."""
    if not rows:
        return
    if use_copy(session, len(rows)):
        _copy(session, t, rows, binary=binary)
        return
    for chunk in chunks(rows):
        session.execute(insert(t), list(chunk))


def use_copy(session: Session, count: int) -> bool:
    """Whether `count` rows go in by `copy_rows` (enough of them, on either database)."""
    return count >= COPY_FROM and session.get_bind().dialect.name in ("postgresql", "sqlite")


def _copy(session: Session, t: Table, rows: Sequence[Row], *, binary: bool) -> None:
    """COPY the rows, all of the shape of the first (a plan's rows of one table share it).

    A column the rows carry is read from each row (one `itemgetter` call per row; JSON
    columns then encoded); one they leave out takes its Python default (a constant, or a
    call per row), else NULL: what an INSERT through SQLAlchemy would write."""
    first = rows[0]
    given = [c for c in t.columns if c.name in first]
    fixed = [c for c in t.columns if c.name not in first and not _called(c)]
    called = [c for c in t.columns if c.name not in first and _called(c)]
    constants = tuple(json_text(v) if isinstance(c.type, JSON) else v for c, v in _defaults(fixed))
    calls = [c.default.arg for c in called]  # type: ignore[union-attr]
    json_at = [i for i, c in enumerate(given) if isinstance(c.type, JSON)]
    get = itemgetter(*(c.name for c in given))
    single = len(given) == 1
    columns = (*given, *fixed, *called)
    width = len(first)

    def values() -> Iterator[Sequence[Any]]:
        for row in rows:
            try:
                if len(row) != width:
                    raise KeyError  # the same width and every key of the first: its shape
                got = get(row)
            except KeyError:
                yield _each_column(row, columns)
                continue
            out = [got] if single else list(got)
            for i in json_at:
                out[i] = json_value(out[i])
            out.extend(constants)
            for call in calls:
                out.append(call(None))
            yield out

    copy_rows(session, t, [c.name for c in columns], values(), binary=binary)


def copy_rows(
    session: Session,
    t: Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    binary: bool = True,
) -> None:
    """COPY rows given as values in the order of `columns`, a JSON column's as its text
    (`json_text`). In PostgreSQL's binary format where every column's type has a binary
    writer of fixed type here (`_BINARY`): no text for the server to parse, and no adapter
    looked up per value (about a quarter of the client's and half of the server's time of
    text COPY, for a merge's rows). Otherwise, and when the first row holds a value of
    another Python type than its column's writer takes (or with `binary=False`), text COPY as
    before. On SQLite, which has no COPY, the driver's executemany of the same values
    (`_insert_values`)."""
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return
    if session.get_bind().dialect.name == "sqlite":
        _insert_values(session, t, columns, itertools.chain((first,), rows))
        return
    types = _binary_types(t, columns, first) if binary else None
    quoted = ", ".join(f'"{name}"' for name in columns)
    statement = f'COPY "{t.name}" ({quoted}) FROM STDIN'
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        if types is None:
            with cursor.copy(statement) as copy:
                copy.write_row(first)
                for row in rows:
                    copy.write_row(row)
            return
        with cursor.copy(statement + " (FORMAT BINARY)") as copy:
            copy.set_types(types)
            copy.write_row(first)
            for row in rows:
                copy.write_row(row)


def _insert_values(
    session: Session, t: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """SQLite's `copy_rows`: one INSERT, executed for each row by the driver (`executemany`),
    each value through its column type's bind processing for SQLite, as SQLAlchemy's insert
    would send it (a UUID as its hex, a datetime as its UTC text); a JSON column's value is
    its text already. A value that is the same object as the one before it in its column
    (the plan's school, time, source and run, on every row) is processed once: through
    SQLAlchemy's executemany, those conversions and building each row's parameters took
    about half of an initial load's events (7,000 rows) and a third of its records."""
    dialect = session.get_bind().dialect
    processors = []
    for i, name in enumerate(columns):
        column_type = t.columns[name].type
        if isinstance(column_type, JSON):
            continue
        process = column_type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.append((i, process))
    last: dict[int, tuple[Any, Any]] = {}

    def values() -> Iterator[list[Any]]:
        for row in rows:
            out = list(row)
            for i, process in processors:
                value = out[i]
                if value is None:
                    continue
                seen = last.get(i)
                if seen is not None and seen[0] is value:
                    out[i] = seen[1]
                    continue
                out[i] = converted = process(value)
                last[i] = (value, converted)
            yield out

    quoted = ", ".join(f'"{name}"' for name in columns)
    marks = ", ".join("?" * len(columns))
    raw = session.connection().connection.driver_connection
    assert raw is not None
    raw.executemany(f'INSERT INTO "{t.name}" ({quoted}) VALUES ({marks})', values())  # noqa: S608


# The PostgreSQL type whose binary writer (psycopg's) a column's values go through, by the
# column's SQLAlchemy type, and the Python types that writer takes. A JSON column's value is
# its text already, and the binary form of `json` is its text. A column of any other type
# (or a decorated one not named here) makes the COPY a text COPY.
_BINARY: tuple[tuple[type[Any], str, tuple[type[Any], ...]], ...] = (
    (JSON, "text", (str,)),
    (UTCDateTime, "timestamptz", (dt.datetime,)),
    (BigInteger, "int8", (int,)),
    (Boolean, "bool", (bool,)),
    (Integer, "int4", (int,)),
    (Date, "date", (dt.date,)),
    (String, "text", (str,)),
    (Uuid, "uuid", (uuid.UUID,)),
)


def _binary_types(t: Table, columns: Sequence[str], first: Sequence[Any]) -> list[str] | None:
    out = []
    for name, value in zip(columns, first, strict=True):
        found = _binary_type(t.columns[name].type)
        if found is None:
            return None
        pg_type, python_types = found
        if value is not None and (
            not isinstance(value, python_types)
            or (pg_type in ("int4", "int8") and isinstance(value, bool))
            or (pg_type == "date" and isinstance(value, dt.datetime))
            or (pg_type == "timestamptz" and value.tzinfo is None)
        ):
            return None
        out.append(pg_type)
    return out


def _binary_type(column_type: Any) -> tuple[str, tuple[type[Any], ...]] | None:
    if isinstance(column_type, AutoString):  # SQLModel's str: a decorated String
        column_type = column_type.impl_instance
    for sa_type, pg_type, python_types in _BINARY:
        if isinstance(column_type, sa_type):
            return pg_type, python_types
    return None


def _each_column(row: Row, columns: Sequence[Any]) -> list[Any]:
    """A row of another shape than the first: each column from it, or its default."""
    out = []
    for c in columns:
        if c.name in row:
            v = row[c.name]
            out.append(json_value(v) if isinstance(c.type, JSON) else v)
            continue
        if c.default is None:
            v = None
        else:
            v = c.default.arg(None) if c.default.is_callable else c.default.arg
        out.append(json_text(v) if isinstance(c.type, JSON) else v)
    return out


def _called(column: Any) -> bool:
    return column.default is not None and bool(column.default.is_callable)


def _defaults(columns: list[Any]) -> list[tuple[Any, Any]]:
    return [(c, None if c.default is None else c.default.arg) for c in columns]


def bulk_update(session: Session, t: Table, rows: Sequence[Row]) -> None:
    """UPDATE by primary key, one statement per set of changed columns.

    On PostgreSQL that statement takes the rows as arrays (`UPDATE ... FROM unnest(...)`):
    one execution for all of them, where an executemany is an execution per row (18 rows of
    a daily merge: about 1 ms against 3-5 ms). Elsewhere, and where one row is updated twice
    in a group (an UPDATE ... FROM would apply only one of the two), an executemany."""

    def shape(row: Row) -> tuple[str, ...]:
        return tuple(sorted(k for k in row if k not in ("school_id", "id")))

    arrays = session.get_bind().dialect.name == "postgresql"
    for columns, grouped in groupby(sorted(rows, key=shape), key=shape):
        if not columns:
            continue
        group = list(grouped)
        if arrays and len(group) > 1 and _distinct(group):
            for chunk in chunks(group, ARRAY_BATCH):
                _update_from_arrays(session, t, columns, chunk)
            continue
        statement = (
            update(t)
            .where(t.c.school_id == bindparam("b_school_id"), t.c.id == bindparam("b_id"))
            .values({c: bindparam(c) for c in columns})
        )
        params = [
            {"b_school_id": r["school_id"], "b_id": r["id"], **{c: r[c] for c in columns}}
            for r in group
        ]
        for chunk in chunks(params):
            session.execute(statement, list(chunk))


# Rows per array UPDATE: the arrays are parameters of one statement, sent and planned whole.
ARRAY_BATCH = 5_000


def _distinct(group: Sequence[Row]) -> bool:
    return len({(row["school_id"], row["id"]) for row in group}) == len(group)


def _update_from_arrays(
    session: Session, t: Table, columns: tuple[str, ...], group: Sequence[Row]
) -> None:
    """`UPDATE t SET c = v.c ... FROM unnest(<one array per column>) AS v WHERE <primary key>`.

    Each value goes through its column type's bind processing first (what the executemany
    would have sent: JSON as its text, datetimes in UTC). The arrays are cast to the columns'
    types, strings to TEXT: a cast to VARCHAR(n) would cut a longer value, where assigning
    TEXT to the column refuses it, as the executemany does."""
    dialect = session.get_bind().dialect
    names = ("school_id", "id", *columns)
    params: dict[str, list[Any]] = {}
    casts: list[str] = []
    for i, name in enumerate(names):
        c = t.c[name]
        process = c.type.dialect_impl(dialect).bind_processor(dialect)
        values = [row[name] for row in group]
        params[f"a{i}"] = [process(v) for v in values] if process is not None else values
        base = c.type.impl if isinstance(c.type, TypeDecorator) else c.type
        text_like = isinstance(base, String) and not isinstance(c.type, JSON)
        element = "TEXT" if text_like else c.type.compile(dialect=dialect)
        casts.append(f"CAST(:a{i} AS {element}[])")
    quoted = [f'"{n}"' for n in names]
    assignments = ", ".join(f"{q} = v.{q}" for q in quoted[2:])
    statement = (
        f'UPDATE "{t.name}" AS t SET {assignments} '  # noqa: S608 (our table and column names)
        f"FROM unnest({', '.join(casts)}) AS v({', '.join(quoted)}) "
        'WHERE t."school_id" = v."school_id" AND t."id" = v."id"'
    )
    session.execute(text(statement), params)


def bulk_delete(session: Session, t: Table, school_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> None:
    for chunk in chunks(ids):
        session.execute(delete(t).where(t.c.school_id == school_id, t.c.id.in_(chunk)))
