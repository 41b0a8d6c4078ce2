"""Bulk statements: COPY or executemany inserts, UPDATE by primary key, DELETE by ids.

Never a statement per row in a loop of our own; batches keep SQLite under its parameter cap.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from itertools import groupby
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
    columns = list(t.columns)
    first = rows[0]
    # One converter per column, chosen once: a value from the row, a JSON text, a default.
    converters = [_converter(c, c.name in first) for c in columns]
    names = [c.name for c in columns]
    quoted = ", ".join('"' + n + '"' for n in names)
    statement = f'COPY "{t.name}" ({quoted}) FROM STDIN'
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([convert(row) for convert in converters])


def _converter(column: Any, given: bool) -> Callable[[Row], Any]:
    name = column.name
    default = column.default
    if not given and default is not None:  # the rows of one plan share their shape
        if default.is_callable:
            return lambda row: row[name] if name in row else default.arg(None)
        value = default.arg
        return lambda row: row.get(name, value)
    if isinstance(column.type, JSON):
        return lambda row: _json_text(row.get(name))
    return lambda row: row.get(name)


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
