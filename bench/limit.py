"""The physical limit of a merge: the bare set-based merge of the same rows (issue 18).

The same synthetic school the service merges, as plain rows, merged into bare tables of the
same database with nothing but the statements a set-based merge cannot do without, per table:

1. the rows into a temporary staging table (PostgreSQL: `COPY ... FROM STDIN` through
   psycopg 3's `cursor.copy()`; SQLite: `executemany`);
2. `INSERT INTO t SELECT ... FROM staging ON CONFLICT DO NOTHING` (the additions);
3. `UPDATE t ... FROM staging WHERE ... IS DISTINCT FROM ...` (the changes; SQLite: `IS NOT`);
4. one commit.

No provenance, no events, no drift, no sync run, no HTTP and no parsing: the rows start as
Python tuples. The time of this is what the service's time is divided by: the ratio is the
figure, since absolute times on a shared machine are noise.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

from bench import synthetic

# Per table: the key columns and the value columns (every scalar ESIS sends for it).
GROUP_COLUMNS = ("name", "year_level", "is_composite", "description")
PERSON_COLUMNS = {
    "student": (
        "last_name", "name_prefix", "first_names", "initials", "given_name", "birth_date",
        "gender", "year_level", "email",
    ),
    "guardian": ("last_name", "name_prefix", "initials", "given_name", "email", "phone"),
    "staff": ("last_name", "name_prefix", "initials", "given_name", "email", "roles"),
}  # fmt: skip


@dataclass(frozen=True)
class Table:
    name: str
    keys: tuple[str, ...]
    values: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return ("school_id", *self.keys, *self.values)


TABLES = (
    Table("limit_group", ("key",), GROUP_COLUMNS),
    *(Table(f"limit_{kind}", ("key",), cols) for kind, cols in PERSON_COLUMNS.items()),
    Table("limit_student_group", ("student", "grp"), ()),
    Table("limit_student_guardian", ("student", "guardian"), ("relation",)),
    Table("limit_staff_group", ("staff", "grp"), ()),
)

Rows = dict[str, list[tuple[Any, ...]]]


def _text(value: Any) -> Any:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "t" if value else "f"
    return None if value is None else str(value)


def rows_of(body: synthetic.Snapshot, school_id: str) -> Rows:
    """The snapshot's records and links as one tuple per row (values as text)."""
    out: Rows = {t.name: [] for t in TABLES}
    for g in body["groups"]:
        out["limit_group"].append((school_id, g["key"], *(_text(g.get(c)) for c in GROUP_COLUMNS)))
    for kind, cols in PERSON_COLUMNS.items():
        records = body[
            "students" if kind == "student" else "guardians" if kind == "guardian" else kind
        ]
        target = out[f"limit_{kind}"]
        for r in records:
            target.append((school_id, r["key"], *(_text(r.get(c)) for c in cols)))
    for s in body["students"]:
        for group in ([s["group"]] if s.get("group") else []) + list(s["composite_groups"]):
            out["limit_student_group"].append((school_id, s["key"], group))
    for g in body["guardians"]:
        for link in g["students"]:
            out["limit_student_guardian"].append(
                (school_id, link["student"], g["key"], link.get("relation"))
            )
    for s in body["staff"]:
        for group in s["groups"]:
            out["limit_staff_group"].append((school_id, s["key"], group))
    return out


def count(rows: Rows) -> int:
    return sum(len(v) for v in rows.values())


def _ddl(t: Table) -> str:
    cols = ", ".join(f"{c} text" + (" NOT NULL" if c in t.keys else "") for c in t.columns)
    keys = ", ".join(("school_id", *t.keys))
    return f"CREATE TABLE IF NOT EXISTS {t.name} ({cols}, PRIMARY KEY ({keys}))"


def _insert_sql(t: Table, staging: str, *, sqlite: bool) -> str:
    cols = ", ".join(t.columns)
    where = " WHERE true" if sqlite else ""  # SQLite: ON CONFLICT after a bare SELECT is ambiguous
    keys = ", ".join(("school_id", *t.keys))
    return (
        f"INSERT INTO {t.name} ({cols}) SELECT {cols} FROM {staging}{where} "
        f"ON CONFLICT ({keys}) DO NOTHING"
    )


def _update_sql(t: Table, staging: str, *, sqlite: bool) -> str | None:
    if not t.values:
        return None
    sets = ", ".join(f"{c} = s.{c}" for c in t.values)
    join = " AND ".join(f"{t.name}.{c} = s.{c}" for c in ("school_id", *t.keys))
    if sqlite:
        differs = " OR ".join(f"{t.name}.{c} IS NOT s.{c}" for c in t.values)
    else:
        ours = ", ".join(f"{t.name}.{c}" for c in t.values)
        theirs = ", ".join(f"s.{c}" for c in t.values)
        differs = f"ROW({ours}) IS DISTINCT FROM ROW({theirs})"
    return f"UPDATE {t.name} SET {sets} FROM {staging} AS s WHERE {join} AND ({differs})"


class Limit:
    """The bare merge on one database (the benchmark's own, beside the service's tables)."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.sqlite = parsed.get_backend_name() == "sqlite"
        if self.sqlite:
            self.conn: Any = sqlite3.connect(str(parsed.database), timeout=60)
        else:
            import psycopg

            self.conn = psycopg.connect(
                parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            )
        cur = self.conn.cursor()
        for t in TABLES:
            cur.execute(_ddl(t))
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    def merge(self, rows: Rows) -> float:
        """Merges `rows` in one transaction; the wall time in ms."""
        started = time.perf_counter()
        cur = self.conn.cursor()
        for t in TABLES:
            batch = rows[t.name]
            staging = f"stage_{t.name}"
            if self.sqlite:
                cur.execute(f"CREATE TEMP TABLE {staging} AS SELECT * FROM {t.name} WHERE 0")
                marks = ", ".join("?" for _ in t.columns)
                cur.executemany(f"INSERT INTO {staging} VALUES ({marks})", batch)
            else:
                cur.execute(f"CREATE TEMP TABLE {staging} (LIKE {t.name}) ON COMMIT DROP")
                with cur.copy(f"COPY {staging} ({', '.join(t.columns)}) FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
            cur.execute(_insert_sql(t, staging, sqlite=self.sqlite))
            update = _update_sql(t, staging, sqlite=self.sqlite)
            if update is not None:
                cur.execute(update)
            if self.sqlite:
                cur.execute(f"DROP TABLE {staging}")
        self.conn.commit()
        return (time.perf_counter() - started) * 1000

    def school(self, workload_rows: Sequence[synthetic.Snapshot]) -> list[float]:
        """Initial load, no-change re-sync and the change, for a fresh school: three times."""
        school_id = str(uuid.uuid4())
        return [self.merge(rows_of(body, school_id)) for body in workload_rows]
