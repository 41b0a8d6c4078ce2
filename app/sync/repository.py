"""Load one school's state in one query per table; write a plan with bulk statements."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from operator import itemgetter
from typing import Any, cast

import orjson
import psycopg
from sqlalchemy import JSON, Table, Text, text, update
from sqlalchemy import cast as sql_cast
from sqlalchemy import select as select_columns
from sqlalchemy.orm import Session
from sqlmodel import col, select

from app.bulk import BATCH, bulk_delete, bulk_insert, bulk_update, chunks
from app.db import UTCDateTime
from app.roster.models import (
    Group,
    Guardian,
    Staff,
    StaffGroup,
    Student,
    StudentGroup,
    StudentGuardian,
)
from app.sync.gcpause import gc_paused
from app.sync.models import DriftItem, KeyChange, RunStatus, Snapshot, SyncRun
from app.sync.plan import EntityState, LinkState, Plan, Row, State

TABLES: dict[str, Table] = {
    str(model.__tablename__): cast(Table, model.__table__)  # type: ignore[union-attr]
    for model in (
        Group,
        Student,
        Guardian,
        Staff,
        StudentGroup,
        StudentGuardian,
        StaffGroup,
        DriftItem,
        KeyChange,
    )
}


def table(name: str) -> Table:
    return TABLES[name]


# Columns of a record or link no merge, guard, import or year transition reads: not loaded
# (each datetime is an object built and converted per row, each id an object, for thousands
# of rows on every merge). The merge writes `updated_at` and `school_id`, it never reads them.
UNREAD = frozenset({"school_id", "created_at", "updated_at", "deleted_by"})


# What the merge reads of a record settled by its digest (sync/digests.py): enough for
# its id, whether it lives, the R6 pass and the group-move check (`local_edits`).
NARROW = frozenset(
    {
        "id",
        "esis_key",
        "source",
        "version",
        "esis_digest",
        "missing_in_esis_since",
        "deleted_at",
        "tombstoned_at",
        "local_edits",
    }
)


def _skip_narrow(name: str) -> frozenset[str]:
    return frozenset(c.name for c in TABLES[name].c if c.name not in NARROW)


def _tables(
    session: Session,
    school_id: uuid.UUID,
    wanted: Sequence[tuple[str, frozenset[str]]],
    ids: Sequence[uuid.UUID] | None = None,
) -> list[list[Row]]:
    """The school's rows of each table in `wanted` (name, columns not read), in that order;
    with `ids`, only the rows of those ids."""
    if session.get_bind().dialect.name == "postgresql":
        return _pg_tables(session, school_id, wanted, ids)
    return [_rows(session, name, school_id, skip, ids) for name, skip in wanted]


def _rows(
    session: Session,
    name: str,
    school_id: uuid.UUID,
    skip: frozenset[str] = frozenset(),
    ids: Sequence[uuid.UUID] | None = None,
) -> list[Row]:
    if ids is not None and len(ids) > BATCH:  # SQLite: a bound parameter per id
        return [row for part in chunks(ids) for row in _rows(session, name, school_id, skip, part)]
    t = TABLES[name]
    # JSON columns come as their text and are decoded with orjson: the driver's stdlib
    # decoding of esis_values and local_edits was a third of loading the state. The values
    # are the same (both decode standard JSON; `null` is None either way).
    json_columns = [c.name for c in t.c if isinstance(c.type, JSON) and c.name not in skip]
    columns = [
        sql_cast(c, Text).label(c.name) if c.name in json_columns else c
        for c in t.c
        if c.name not in skip
    ]
    query = select_columns(*columns).where(t.c.school_id == school_id)
    if ids is not None:
        query = query.where(t.c.id.in_(ids))
    result = session.execute(query)
    # All rows at once (one fetchall, not a fetchone per row) and plain dicts by zip: the
    # state of a school is a few thousand rows, read on every merge.
    keys = tuple(result.keys())
    decoded = [keys.index(n) for n in json_columns]
    return _as_rows(keys, result.all(), [], decoded)


def _pg_tables(
    session: Session,
    school_id: uuid.UUID,
    wanted: Sequence[tuple[str, frozenset[str]]],
    ids: Sequence[uuid.UUID] | None = None,
) -> list[list[Row]]:
    """The same rows on PostgreSQL, through the driver's cursor in the session's transaction:
    psycopg already gives UUIDs, dates, numbers and aware datetimes, so SQLAlchemy's result
    processing per value (a third of loading the state) is not needed; what the column
    types would still do is done here: datetimes in UTC (`UTCDateTime`), JSON decoded.

    The SELECTs go out together in one pipeline (libpq 14+): one round trip for the state,
    not one per table (each is a wait for the server, longest on a busy machine)."""
    queries: list[tuple[list[str], list[int], list[int], str]] = []
    for name, skip in wanted:
        t = TABLES[name]
        names = [c.name for c in t.c if c.name not in skip]
        json_columns = [c.name for c in t.c if isinstance(c.type, JSON) and c.name in names]
        moments = [
            names.index(c.name) for c in t.c if c.name in names and isinstance(c.type, UTCDateTime)
        ]
        decoded = [names.index(n) for n in json_columns]
        listed = ", ".join(f'"{n}"::text' if n in json_columns else f'"{n}"' for n in names)
        sql = f'SELECT {listed} FROM "{t.name}" WHERE school_id = %s'  # noqa: S608 (our names)
        if ids is not None:
            sql += " AND id = ANY(%s)"
        queries.append((names, moments, decoded, sql))
    raw = session.connection().connection.driver_connection
    assert raw is not None
    # Binary results: a UUID, a date or a timestamp is read from its bytes instead of parsed
    # from text (a fifth of the fetch); the values are the same (tests/test_load_state.py).
    cursors = [raw.cursor(binary=True) for _ in queries]
    try:
        # Without pipeline mode (a libpq older than 14) the SELECTs go one after the other.
        together = raw.pipeline() if psycopg.Pipeline.is_supported() else contextlib.nullcontext()
        with together:
            for cursor, (_names, _moments, _decoded, sql) in zip(cursors, queries, strict=True):
                cursor.execute(sql, (school_id,) if ids is None else (school_id, list(ids)))
        fetched = [cursor.fetchall() for cursor in cursors]
    finally:
        for cursor in cursors:
            cursor.close()
    return [
        _as_rows(names, rows, moments, decoded)
        for (names, moments, decoded, _sql), rows in zip(queries, fetched, strict=True)
    ]


def _as_rows(
    names: Sequence[str], fetched: Sequence[Sequence[Any]], moments: list[int], decoded: list[int]
) -> list[Row]:
    """Rows as dicts, converted a column at a time: a column of datetimes (mostly NULL: the
    missing mark, the deletion) to UTC, a column of JSON texts decoded in one call. Per row
    only the dict is built; thousands of rows are read on every merge."""
    if not fetched:
        return []
    if not moments and not decoded:
        return [dict(zip(names, values, strict=True)) for values in fetched]
    columns: list[Sequence[Any]] = list(zip(*fetched, strict=True))
    for i in moments:
        column = columns[i]
        if column.count(None) != len(column):
            columns[i] = [None if v is None else v.astimezone(dt.UTC) for v in column]
    for i in decoded:
        columns[i] = _json_column(columns[i])
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _json_column(texts: Sequence[str | None]) -> list[Any]:
    """JSON texts (None for NULL) decoded as one array: one decoder call for the column."""
    try:
        if None in texts:
            joined = ",".join(t or "null" for t in texts)
        else:
            joined = ",".join(cast("Sequence[str]", texts))
        decoded = orjson.loads(f"[{joined}]")
    except orjson.JSONDecodeError:  # NaN, a number beyond 64 bits: each as `_json` reads it
        return [None if t is None else _json(t) for t in texts]
    if not isinstance(decoded, list) or len(decoded) != len(texts):
        return [None if t is None else _json(t) for t in texts]  # pragma: no cover
    return decoded


def _moment(column: Any) -> bool:
    return isinstance(column.type, UTCDateTime)


def _json(text: str) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN and the like, which json.dumps may have written
        return json.loads(text)


@gc_paused
def load_state(
    *, session: Session, school_id: uuid.UUID, narrow: frozenset[str] = frozenset()
) -> State:
    """The school's state for a merge. The record tables in `narrow` are read with only the
    columns a record settled by its digest needs (NARROW); `fill` reads the others whole."""
    groups, students, guardians, staff, in_groups, of_students, staff_in, drift, keys = _tables(
        session,
        school_id,
        [
            *((name, _skip_narrow(name) if name in narrow else UNREAD) for name in RECORDS),
            *((name, UNREAD) for name in LINKS),
            ("drift_item", frozenset()),
            ("key_change", frozenset()),
        ],
    )

    def entities(rows: list[Row]) -> EntityState:
        return EntityState(
            rows=dict(zip(map(itemgetter("id"), rows), rows, strict=True)),
            by_key={row["esis_key"]: row for row in rows if row["esis_key"] is not None},
        )

    def links(rows: list[Row], a: str, b: str) -> LinkState:
        pairs = zip(map(itemgetter(a), rows), map(itemgetter(b), rows), strict=True)
        return LinkState(rows=dict(zip(pairs, rows, strict=True)))

    return State(
        school_id=school_id,
        groups=entities(groups),
        students=entities(students),
        guardians=entities(guardians),
        staff=entities(staff),
        student_groups=links(in_groups, "student_id", "group_id"),
        student_guardians=links(of_students, "student_id", "guardian_id"),
        staff_groups=links(staff_in, "staff_id", "group_id"),
        drift={(row["entity"], row["record_id"], row["field"]): row for row in drift},
        key_changes={
            (row["entity"], row["record_id"], row["new_key"]): row["status"] for row in keys
        },
    )


@gc_paused
def fill(*, session: Session, school_id: uuid.UUID, wanted: dict[str, EntityState]) -> None:
    """Reads whole, in place, the rows of each (table, state) in `wanted` that are not
    settled: those `load_state(narrow=...)` read narrow and the merge reads in full."""
    ids = [i for entity in wanted.values() for i in entity.rows if i not in entity.settled]
    if not ids:
        return
    # One query per table, all in one round trip on PostgreSQL, each given all the ids: a
    # table finds its own (and an id of another table's record, were it the same, would
    # only read a row of this one whole once more).
    loaded = _tables(session, school_id, [(name, UNREAD) for name in wanted], ids)
    for entity, rows in zip(wanted.values(), loaded, strict=True):
        for row in rows:
            entity.add(row)


# Parents before children on insert, children before parents on delete.
ORDER = (
    "school_group",
    "student",
    "guardian",
    "staff",
    "student_group",
    "student_guardian",
    "staff_group",
)


RECORDS = ORDER[:4]
LINKS = ORDER[4:]


def write_plan(*, session: Session, school_id: uuid.UUID, plan: Plan) -> None:
    for name in reversed(ORDER):
        if name in plan.tables and plan.tables[name].deletes:
            bulk_delete(session, TABLES[name], school_id, plan.tables[name].deletes)
    for name in ORDER:
        if name in plan.tables:
            if name == LINKS[0]:
                _statistics_for_links(session, plan)
            bulk_insert(session, TABLES[name], plan.tables[name].inserts)
            bulk_update(session, TABLES[name], plan.tables[name].updates)
    drift = TABLES["drift_item"]
    bulk_delete(session, drift, school_id, plan.drift_deletes)
    bulk_insert(session, drift, plan.drift_inserts)
    bulk_update(session, drift, plan.drift_updates)
    for chunk in chunks(plan.drift_touched):
        session.execute(
            update(drift)
            .where(drift.c.school_id == school_id, drift.c.id.in_(chunk))
            .values(last_seen_at=plan.now, last_run_id=plan.run_id)
        )


# Links added at once from which the record tables' statistics are checked first.
STATISTICS_FROM = 200


def _statistics_for_links(session: Session, plan: Plan) -> None:
    """PostgreSQL: give the record tables planner statistics before many links go in.

    Every link's foreign keys are checked by a query on (school_id, id) of the record tables.
    A table that has never been analyzed, or was analyzed when it held fewer rows than this
    plan adds (a fresh database: the first schools' initial loads), has no statistics to tell
    the primary key from the (school_id, esis_key) index, and PostgreSQL plans the check on
    the latter: every link then scans the whole school's records (about 200 µs a link for a
    1,000-student school, 0.6 s for its guardian links, against 10 µs with statistics). So
    when many links follow, such a table is analyzed first, in this transaction (ANALYZE sees
    its rows; it samples at most 30,000, a few ms here). In a database that holds many
    schools the statistics are there and nothing is done but one catalog read. Without the
    table's ownership PostgreSQL skips it with a warning, and the load is only slower.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    if sum(len(plan.tables[n].inserts) for n in LINKS if n in plan.tables) < STATISTICS_FROM:
        return
    added = {n: len(plan.tables[n].inserts) for n in RECORDS if n in plan.tables}
    if not any(added.values()):
        return
    known: dict[str, float] = dict(
        session.execute(
            text(
                "SELECT relname, reltuples FROM pg_class WHERE oid IN "
                "(SELECT to_regclass(n) FROM unnest(CAST(:names AS text[])) AS n)"
            ),
            {"names": list(added)},
        ).all()
    )
    stale = [n for n, count in added.items() if count and known.get(n, -1.0) < count]
    if stale:  # the names are this module's own table names, never input
        session.execute(text("ANALYZE " + ", ".join(f'"{n}"' for n in stale)))


# The run states after which a snapshot counts as received whole (applied, stored or held).
DONE = (RunStatus.APPLIED.value, RunStatus.STORED.value, RunStatus.HELD.value)


def latest_snapshot(
    *, session: Session, school_id: uuid.UUID, after_year: str | None = None
) -> Snapshot | None:
    """The newest snapshot that was valid (R1 and R2 read it); with `after_year`, the newest
    of a later school year (the year transition reads it)."""
    query = (
        select(Snapshot)
        .join(
            SyncRun,
            (col(SyncRun.school_id) == col(Snapshot.school_id))
            & (col(SyncRun.snapshot_id) == col(Snapshot.id)),
        )
        .where(
            Snapshot.school_id == school_id,
            col(SyncRun.status).in_(DONE),
            col(Snapshot.origin).in_(("push", "pull")),
        )
    )
    if after_year is not None:
        query = query.where(col(Snapshot.school_year) > after_year)
    return session.scalar(query.order_by(col(Snapshot.received_at).desc()).limit(1))
