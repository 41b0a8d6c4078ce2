"""Bulk statements: COPY or executemany inserts, UPDATE by primary key, DELETE by ids.

Never a statement per row in a loop of our own; batches keep SQLite under its parameter cap.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from itertools import groupby
from typing import Any

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
    json_columns = {c.name for c in columns if isinstance(c.type, JSON)}
    defaults = {
        c.name: c.default for c in columns if c.default is not None and c.name not in rows[0]
    }

    def value(row: Row, name: str) -> Any:
        if name in row:
            v = row[name]
        elif name in defaults:
            default = defaults[name]
            v = default.arg(None) if default.is_callable else default.arg  # type: ignore[attr-defined]
        else:
            return None
        if name in json_columns:
            return None if v is None else json.dumps(v, default=str)
        return v

    names = [c.name for c in columns]
    quoted = ", ".join('"' + n + '"' for n in names)
    statement = f'COPY "{t.name}" ({quoted}) FROM STDIN'
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([value(row, n) for n in names])


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
