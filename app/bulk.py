"""Bulk statements: COPY or executemany inserts, UPDATE by primary key, DELETE by ids.

Never a statement per row in a loop of our own; batches keep SQLite under its parameter cap.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
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
    constants = tuple(json_text(v) if isinstance(c.type, JSON) else v for c, v in _defaults(fixed))
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
                values[i] = json_text(values[i])
            values.extend(constants)
            for call in calls:
                values.append(call(None))
            copy.write_row(values)


def use_copy(session: Session, count: int) -> bool:
    """Whether `count` rows go in by COPY (PostgreSQL, enough of them)."""
    return count >= COPY_FROM and session.get_bind().dialect.name == "postgresql"


def copy_lines(session: Session, t: Table, columns: Sequence[str], lines: Iterable[str]) -> None:
    """COPY rows its caller already wrote in COPY's text format: one line per row, the values
    in the order of `columns`, each as `copy_text` writes it, separated by tabs, ending in a
    newline. For many rows of which most columns are the same in every row (the constant
    part is written once) and the rest a few simple values: no per-value adapter calls.

    `columns` must name every column of the table (a column added later must be written too,
    not left to a default the caller never thought of)."""
    missing = {c.name for c in t.columns} - set(columns)
    if missing:
        raise ValueError(f"copy_lines into {t.name} without {sorted(missing)}")
    quoted = ", ".join(f'"{c}"' for c in columns)
    raw = session.connection().connection.driver_connection
    assert raw is not None
    batch: list[str] = []
    with raw.cursor() as cursor, cursor.copy(f'COPY "{t.name}" ({quoted}) FROM STDIN') as copy:
        for line in lines:
            batch.append(line)
            if len(batch) == _LINES_PER_WRITE:  # the server reads while we write on
                copy.write("".join(batch))
                batch.clear()
        if batch:
            copy.write("".join(batch))


_LINES_PER_WRITE = 1_000


def copy_text(value: Any) -> str:
    """One value in COPY's text format: NULL as `\\N`; text with backslash, tab, newline and
    carriage return escaped; booleans `t`/`f`; dates and times in ISO 8601; numbers and UUIDs
    as `str` writes them (what PostgreSQL reads back as the same value)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return copy_escape(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            raise ValueError("naive datetime given to COPY")  # as UTCDateTime refuses it
        return value.isoformat()
    raise TypeError(f"no COPY text for {type(value).__name__}")


def copy_escape(text: str) -> str:
    """Text escaped for COPY's text format (the four characters it gives a meaning)."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\t" in text:
        text = text.replace("\t", "\\t")
    if "\n" in text:
        text = text.replace("\n", "\\n")
    if "\r" in text:
        text = text.replace("\r", "\\r")
    return text


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
        out.append(json_text(v) if isinstance(c.type, JSON) else v)
    return out


def _called(column: Any) -> bool:
    return column.default is not None and bool(column.default.is_callable)


def _defaults(columns: list[Any]) -> list[tuple[Any, Any]]:
    return [(c, None if c.default is None else c.default.arg) for c in columns]


def json_text(value: Any) -> str | None:
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
