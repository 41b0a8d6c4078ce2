"""Bulk statements: COPY or executemany inserts, UPDATE by primary key, DELETE by ids.

Never a statement per row in a loop of our own; batches keep SQLite under its parameter cap.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import JSON, Table, bindparam, delete, insert, update
from sqlalchemy.orm import Session

Row = dict[str, Any]
# Parameters per statement stay well under SQLite's limit (32766) and keep PG batches sane.
BATCH = 500


def chunks(rows: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


COPY_FROM = 200  # below this many rows an executemany is as quick as COPY


def bulk_insert(session: Session, t: Table, rows: Sequence[Row]) -> None:
    """Many rows: COPY on PostgreSQL (the fastest path, pitfalls.md); executemany otherwise."""
    if not rows:
        return
    if len(rows) >= COPY_FROM and session.get_bind().dialect.name == "postgresql":
        _copy(session, t, rows)
        return
    for chunk in chunks(rows):
        session.execute(insert(t), list(chunk))


def _copy(session: Session, t: Table, rows: Sequence[Row]) -> None:
    """COPY the rows, all of the shape of the first (a plan's rows of one table share it).

    A column the rows carry is read from each row (one `itemgetter` call per row; JSON
    columns then encoded); one they leave out takes its Python default (a constant, or a
    call per row), else NULL: what an INSERT through SQLAlchemy would write."""
    first = rows[0]
    given = [c for c in t.columns if c.name in first]
    fixed = [c for c in t.columns if c.name not in first and not _called(c)]
    called = [c for c in t.columns if c.name not in first and _called(c)]
    constants = tuple(_json_text(v) if isinstance(c.type, JSON) else v for c, v in _defaults(fixed))
    calls = [c.default.arg for c in called]  # type: ignore[union-attr]
    json_at = [i for i, c in enumerate(given) if isinstance(c.type, JSON)]
    get = itemgetter(*(c.name for c in given))
    single = len(given) == 1
    quoted = ", ".join(f'"{c.name}"' for c in (*given, *fixed, *called))
    statement = f'COPY "{t.name}" ({quoted}) FROM STDIN'
    raw = session.connection().connection.driver_connection
    assert raw is not None
    width = len(first)
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            try:
                if len(row) != width:
                    raise KeyError  # the same width and every key of the first: its shape
                got = get(row)
            except KeyError:
                copy.write_row(_each_column(row, (*given, *fixed, *called)))
                continue
            values = [got] if single else list(got)
            for i in json_at:
                values[i] = _json_text(values[i])
            values.extend(constants)
            for call in calls:
                values.append(call(None))
            copy.write_row(values)


def _each_column(row: Row, columns: Sequence[Any]) -> list[Any]:
    """A row of another shape than the first: each column from it, or its default."""
    out = []
    for c in columns:
        if c.name in row:
            v = row[c.name]
        elif c.default is None:
            v = None
        else:
            v = c.default.arg(None) if c.default.is_callable else c.default.arg
        out.append(_json_text(v) if isinstance(c.type, JSON) else v)
    return out


def _called(column: Any) -> bool:
    return column.default is not None and bool(column.default.is_callable)


def _defaults(columns: list[Any]) -> list[tuple[Any, Any]]:
    return [(c, None if c.default is None else c.default.arg) for c in columns]


def _json_text(value: Any) -> str | None:
    """A JSON column's text: orjson (about ten times quicker than the standard library),
    and `json.dumps(value, default=str)` as before for what orjson would write otherwise or
    refuses: datetimes (orjson writes a `T`), non-string keys, integers beyond 64 bits. The
    merge's values are strings, numbers, booleans, lists and dicts of them; no floats."""
    if value is None:
        return None
    try:
        return orjson.dumps(value, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()
    except TypeError:
        return json.dumps(value, default=str)


def bulk_update(session: Session, t: Table, rows: Sequence[Row]) -> None:
    """UPDATE by primary key, one executemany per set of changed columns."""

    def shape(row: Row) -> tuple[str, ...]:
        return tuple(sorted(k for k in row if k not in ("school_id", "id")))

    for columns, group in groupby(sorted(rows, key=shape), key=shape):
        if not columns:
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


def bulk_delete(session: Session, t: Table, school_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> None:
    for chunk in chunks(ids):
        session.execute(delete(t).where(t.c.school_id == school_id, t.c.id.in_(chunk)))
