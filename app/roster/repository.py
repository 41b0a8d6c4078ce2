"""Roster queries: lists with filters and keyset cursors, and relations loaded per page.

A page costs a fixed number of queries whatever its size: the rows, their open drift, and one
query per kind of relation (tests/test_roster.py counts them).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Select,
    String,
    Table,
    and_,
    cast,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from app.db import metadata
from app.pagination import encode_cursor, time_id_cursor

Row = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    """One collection of the roster API."""

    name: str  # the entity name in events and drift
    collection: str  # the path segment
    table_name: str
    fields: tuple[str, ...]  # what PATCH may change
    search: tuple[str, ...]  # what `q` searches

    @property
    def table(self) -> Table:
        return metadata.tables[self.table_name]


PERSON = ("last_name", "name_prefix", "initials", "given_name", "email")
STUDENTS = Kind(
    "student",
    "students",
    "student",
    (*PERSON, "first_names", "birth_date", "gender", "year_level"),
    ("last_name", "given_name", "first_names", "email"),
)
GUARDIANS = Kind(
    "guardian", "guardians", "guardian", (*PERSON, "phone"), ("last_name", "given_name", "email")
)
STAFF = Kind("staff", "staff", "staff", (*PERSON, "roles"), ("last_name", "given_name", "email"))
GROUPS = Kind("group", "groups", "school_group", ("name", "description", "year_level"), ("name",))
KINDS = {k.collection: k for k in (STUDENTS, GUARDIANS, STAFF, GROUPS)}


@dataclass(frozen=True)
class Filters:
    source: str | None = None
    missing_in_esis: bool | None = None
    has_drift: bool | None = None
    deleted: bool = False
    q: str | None = None
    group_id: uuid.UUID | None = None
    year_level: int | None = None


def _t(name: str) -> Table:
    return metadata.tables[name]


def list_rows(
    *,
    session: Session,
    kind: Kind,
    school_id: uuid.UUID,
    filters: Filters,
    limit: int,
    cursor: str | None,
) -> tuple[list[Row], str | None]:
    """Oldest first by (created_at, id): rows inserted while a client pages come at the end."""
    t = kind.table
    query: Select[Any] = select(t).where(t.c.school_id == school_id)
    query = _apply_filters(query, kind, t, school_id, filters)
    if cursor is not None:
        after = time_id_cursor(cursor)
        query = query.where(
            or_(t.c.created_at > after[0], and_(t.c.created_at == after[0], t.c.id > after[1]))
        )
    query = query.order_by(t.c.created_at, t.c.id).limit(limit + 1)
    rows = [dict(r) for r in session.execute(query).mappings()]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([last["created_at"].isoformat(), str(last["id"])])
    return rows[:limit], next_cursor


def _apply_filters(
    query: Select[Any], kind: Kind, t: Table, school_id: uuid.UUID, f: Filters
) -> Select[Any]:
    query = query.where(t.c.deleted_at.is_not(None) if f.deleted else t.c.deleted_at.is_(None))
    if f.source is not None:
        query = query.where(t.c.source == f.source)
    if f.missing_in_esis is not None:
        missing = t.c.missing_in_esis_since
        query = query.where(missing.is_not(None) if f.missing_in_esis else missing.is_(None))
    if f.has_drift is not None:
        drift = _t("drift_item")
        has = exists().where(
            drift.c.school_id == school_id, drift.c.entity == kind.name, drift.c.record_id == t.c.id
        )
        query = query.where(has if f.has_drift else ~has)
    if f.q:
        pattern = f"%{f.q.strip().lower()}%"
        query = query.where(or_(*(func.lower(t.c[c]).like(pattern) for c in kind.search)))
    if f.year_level is not None and "year_level" in t.c:
        query = query.where(t.c.year_level == f.year_level)
    if f.group_id is not None:
        query = query.where(_in_group(kind, t, school_id, f.group_id))
    return query


def _in_group(kind: Kind, t: Table, school_id: uuid.UUID, group_id: uuid.UUID) -> Any:
    sg, sgu, stg = _t("student_group"), _t("student_guardian"), _t("staff_group")
    if kind is STUDENTS:
        return exists().where(
            sg.c.school_id == school_id,
            sg.c.student_id == t.c.id,
            sg.c.group_id == group_id,
            sg.c.deleted_at.is_(None),
        )
    if kind is GUARDIANS:
        return exists().where(
            sgu.c.school_id == school_id,
            sgu.c.guardian_id == t.c.id,
            sgu.c.deleted_at.is_(None),
            sg.c.school_id == school_id,
            sg.c.student_id == sgu.c.student_id,
            sg.c.group_id == group_id,
            sg.c.deleted_at.is_(None),
        )
    if kind is STAFF:
        return exists().where(
            stg.c.school_id == school_id,
            stg.c.staff_id == t.c.id,
            stg.c.group_id == group_id,
            stg.c.deleted_at.is_(None),
        )
    return t.c.id == group_id


def get_row(
    *, session: Session, table: Table, school_id: uuid.UUID, record_id: uuid.UUID
) -> Row | None:
    row = (
        session.execute(
            select(table).where(table.c.school_id == school_id, table.c.id == record_id)
        )
        .mappings()
        .one_or_none()
    )
    return dict(row) if row is not None else None


def drift_of(
    *, session: Session, school_id: uuid.UUID, entity: str, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Row]]:
    out: dict[uuid.UUID, list[Row]] = {i: [] for i in ids}
    if not ids:
        return out
    d = _t("drift_item")
    for row in session.execute(
        select(d)
        .where(d.c.school_id == school_id, d.c.entity == entity, d.c.record_id.in_(ids))
        .order_by(d.c.field)
    ).mappings():
        out[row["record_id"]].append(dict(row))
    return out


def linked(
    *,
    session: Session,
    school_id: uuid.UUID,
    link: str,
    own: str,
    other: str,
    other_table: str,
    ids: Sequence[uuid.UUID],
) -> dict[uuid.UUID, list[Row]]:
    """For each of `ids`: the live records on the other side of `link`, with the link's data."""
    out: dict[uuid.UUID, list[Row]] = {i: [] for i in ids}
    if not ids:
        return out
    lt, ot = _t(link), _t(other_table)
    extra = [lt.c.relation] if "relation" in lt.c else []
    query = (
        select(
            lt.c[own].label("owner"),
            lt.c.source.label("link_source"),
            lt.c.missing_in_esis_since.label("link_missing"),
            *extra,
            ot,
        )
        .join(ot, and_(ot.c.school_id == lt.c.school_id, ot.c.id == lt.c[other]))
        .where(
            lt.c.school_id == school_id,
            lt.c[own].in_(ids),
            lt.c.deleted_at.is_(None),
            ot.c.deleted_at.is_(None),
        )
        .order_by(ot.c.created_at, ot.c.id)
    )
    for row in session.execute(query).mappings():
        out[row["owner"]].append(dict(row))
    return out


# --- writes (the users' edits in `app.roster.service`) ----------------------------------------


def update_record(
    *, session: Session, table: Table, school_id: uuid.UUID, record_id: uuid.UUID, values: Row
) -> None:
    session.execute(
        update(table)
        .where(table.c.school_id == school_id, table.c.id == record_id)
        .values(**values)
    )


def insert_record(*, session: Session, table: Table, values: Row) -> None:
    session.execute(insert(table).values(**values))


def key_taken(
    *, session: Session, table: Table, school_id: uuid.UUID, key: Any, other_than: uuid.UUID
) -> bool:
    """Whether another record of the school has the ESIS key `key`."""
    return (
        session.scalar(
            select(table.c.id).where(
                table.c.school_id == school_id, table.c.esis_key == key, table.c.id != other_than
            )
        )
        is not None
    )


def live_ids(
    *, session: Session, table: Table, school_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Those of `ids` that are records of the school and not deleted."""
    return set(
        session.scalars(
            select(table.c.id).where(
                table.c.school_id == school_id, table.c.id.in_(ids), table.c.deleted_at.is_(None)
            )
        )
    )


def open_drift(
    *,
    session: Session,
    school_id: uuid.UUID,
    entity: str,
    record_id: uuid.UUID,
    fields: Sequence[str],
) -> list[Row]:
    d = _t("drift_item")
    query = select(d).where(
        d.c.school_id == school_id,
        d.c.entity == entity,
        d.c.record_id == record_id,
        d.c.field.in_(list(fields)),
    )
    return [dict(r) for r in session.execute(query).mappings()]


def close_drift(*, session: Session, school_id: uuid.UUID, drift_id: uuid.UUID) -> None:
    d = _t("drift_item")
    session.execute(delete(d).where(d.c.school_id == school_id, d.c.id == drift_id))


def set_drift_ours(
    *, session: Session, school_id: uuid.UUID, drift_id: uuid.UUID, value: Any
) -> None:
    d = _t("drift_item")
    session.execute(
        update(d).where(d.c.school_id == school_id, d.c.id == drift_id).values(our_value=value)
    )


def drop_drift_of_record(
    *, session: Session, school_id: uuid.UUID, entity: str, record_id: uuid.UUID
) -> None:
    d = _t("drift_item")
    session.execute(
        delete(d).where(
            d.c.school_id == school_id, d.c.entity == entity, d.c.record_id == record_id
        )
    )


def members_of(*, session: Session, school_id: uuid.UUID, group_id: uuid.UUID) -> set[uuid.UUID]:
    """The students linked to a group (the link table's rows, live or not)."""
    sg = _t("student_group")
    return set(
        session.scalars(
            select(sg.c.student_id).where(sg.c.school_id == school_id, sg.c.group_id == group_id)
        )
    )


def unlink_members(
    *, session: Session, school_id: uuid.UUID, group_id: uuid.UUID, student_ids: set[uuid.UUID]
) -> None:
    sg = _t("student_group")
    session.execute(
        delete(sg).where(
            sg.c.school_id == school_id,
            sg.c.group_id == group_id,
            sg.c.student_id.in_(student_ids),
        )
    )


def insert_links(*, session: Session, link: str, rows: Sequence[Row]) -> None:
    if rows:
        session.execute(insert(_t(link)), list(rows))


def guardians_removed_with(
    *, session: Session, school_id: uuid.UUID, student_id: uuid.UUID, marker: str
) -> list[uuid.UUID]:
    """The student's guardians soft-deleted with the mark `marker` and not purged."""
    g, link = _t("guardian"), _t("student_guardian")
    return list(
        session.scalars(
            select(g.c.id)
            .join(link, (link.c.school_id == g.c.school_id) & (link.c.guardian_id == g.c.id))
            .where(
                link.c.school_id == school_id,
                link.c.student_id == student_id,
                g.c.deleted_by == marker,
                g.c.tombstoned_at.is_(None),
            )
        )
    )


def undelete(
    *,
    session: Session,
    table: Table,
    school_id: uuid.UUID,
    ids: Sequence[uuid.UUID],
    now: dt.datetime,
) -> None:
    session.execute(
        update(table)
        .where(table.c.school_id == school_id, table.c.id.in_(ids))
        .values(deleted_at=None, deleted_by=None, updated_at=now, version=table.c.version + 1)
    )


def edited_rows(
    *,
    session: Session,
    school_id: uuid.UUID,
    table_name: str,
    bound: tuple[Any, bool] | None,
    limit: int,
) -> list[Row]:
    """Up to `limit` live rows with local edits, by id, from `bound` (id, inclusive)."""
    t = _t(table_name)
    query = select(t).where(
        t.c.school_id == school_id,
        t.c.deleted_at.is_(None),
        cast(t.c.local_edits, String).not_in(("{}", "null")),
    )
    if "tombstoned_at" in t.c:
        query = query.where(t.c.tombstoned_at.is_(None))
    if bound is not None:
        query = query.where(t.c.id >= bound[0] if bound[1] else t.c.id > bound[0])
    return [dict(r) for r in session.execute(query.order_by(t.c.id).limit(limit)).mappings()]
