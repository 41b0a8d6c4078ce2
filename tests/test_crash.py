"""Crash consistency: SIGKILL of the real service in the middle of a merge.

`esis-sync serve` runs as a child process. A school is activated with a large synthetic
snapshot (3,000 students); a changed snapshot (5 % changed, 5 % new) is pushed from a thread,
and the process is killed with SIGKILL inside the apply transaction: while it holds the
school's lock and, on PostgreSQL, after it has written roster rows (seen in `pg_locks`); on
SQLite, whose uncommitted writes cannot be seen from outside, late in the time a clean merge
of the same push holds the lock. Then:

- the school's data is exactly as before the push (no partial merge), and the push's run is
  still `received`, its raw body stored;
- after a restart, start-up recovery has applied it: the run is `applied`, and the school is
  what the same push gives on an identical school that never crashed.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, Table, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app.db import make_engine, metadata
from app.sync.digests import digest
from bench import synthetic
from tests import procs

BACKENDS = ["sqlite", "postgresql"]
SHAPE = synthetic.Shape(students=3000, classes=24, composites=6, guardians=5400, staff=60)
SHARE = 0.05  # changed and new students and guardians in the pushed snapshot
ATTEMPTS = 3
PUSH_TIMEOUT = 120.0

# Everything of a school except what the push itself adds (its stored body and its run) and
# the keys (not touched by a merge).
NOT_SCHOOL_STATE = {"snapshot", "sync_run", "api_key", "school"}
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
RECORD_TABLES = ("school_group", "student", "guardian", "staff")
VOLATILE = {"id", "school_id", "seq"}
SCHOOL_FIELDS = ("coupling", "current_school_year", "event_seq", "update_policy")

Rows = dict[str, list[dict[str, Any]]]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of its own (not the shared session database)."""
    with procs.fresh_database(str(request.param), tmp_path) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


# --- reading the database directly ----------------------------------------------------------


def school_tables() -> list[Table]:
    return [
        t for t in metadata.sorted_tables if "school_id" in t.c and t.name not in NOT_SCHOOL_STATE
    ]


def school_id_of(engine: Engine, key: str) -> uuid.UUID:
    school = metadata.tables["school"]
    with engine.connect() as conn:
        found = conn.execute(select(school.c.id).where(school.c.key == key)).scalar_one()
    assert isinstance(found, uuid.UUID)
    return found


def state(engine: Engine, school_id: uuid.UUID) -> Rows:
    """Every row of the school, all columns, in primary-key order; and the school's own row."""
    out: Rows = {}
    with engine.connect() as conn:
        for t in school_tables():
            order = list(t.primary_key.columns)
            query = select(t).where(t.c.school_id == school_id).order_by(*order)
            out[t.name] = [dict(r) for r in conn.execute(query).mappings()]
        school = metadata.tables["school"]
        out["school"] = [
            dict(r) for r in conn.execute(select(school).where(school.c.id == school_id)).mappings()
        ]
    return out


def runs(engine: Engine, school_id: uuid.UUID) -> list[dict[str, Any]]:
    t = metadata.tables["sync_run"]
    with engine.connect() as conn:
        query = select(t).where(t.c.school_id == school_id).order_by(t.c.started_at)
        return [dict(r) for r in conn.execute(query).mappings()]


def snapshot_count(engine: Engine, school_id: uuid.UUID) -> int:
    t = metadata.tables["snapshot"]
    with engine.connect() as conn:
        return len(conn.execute(select(t.c.id).where(t.c.school_id == school_id)).all())


def received_run(engine: Engine, school_id: uuid.UUID) -> dict[str, Any] | None:
    found = [r for r in runs(engine, school_id) if r["status"] == "received"]
    assert len(found) <= 1, found
    return found[0] if found else None


def school_lock_held(engine: Engine, school_id: uuid.UUID) -> bool:
    """Whether another transaction holds the school's write lock right now: the row lock on
    PostgreSQL (`FOR UPDATE NOWAIT`), the database's write lock on SQLite (`BEGIN IMMEDIATE`
    without waiting). Only the apply transaction takes it once the run is `received`."""
    if engine.dialect.name == "sqlite":
        path = make_url(str(engine.url)).database
        assert path
        lite = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            lite.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return True
            raise
        else:
            lite.execute("ROLLBACK")
            return False
        finally:
            lite.close()
    with engine.connect() as conn:
        try:
            conn.execute(
                text("SELECT id FROM school WHERE id = :id FOR UPDATE NOWAIT"), {"id": school_id}
            )
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                return True
            raise
        finally:
            conn.rollback()
    return False


def _name_ids(engine: Engine, school_id: uuid.UUID) -> dict[str, str]:
    """Record ids by what they are across schools (`student:L00001`, `school`, `run`), and
    the school's key, BRIN and name."""
    names = {str(school_id): "school"}
    with engine.connect() as conn:
        school = metadata.tables["school"]
        row = conn.execute(select(school).where(school.c.id == school_id)).mappings().one()
        for column in ("key", "brin", "name"):
            names[row[column]] = f"<school {column}>"
        for name in RECORD_TABLES:
            t = metadata.tables[name]
            query = select(t.c.id, t.c.esis_key).where(t.c.school_id == school_id)
            for record_id, key in conn.execute(query):
                names[str(record_id)] = f"{name}:{key}"
        t = metadata.tables["sync_run"]
        for (run_id,) in conn.execute(select(t.c.id).where(t.c.school_id == school_id)):
            names[str(run_id)] = "run"
    return names


def _neutral(value: Any, names: dict[str, str]) -> Any:
    """A value with ids replaced by what they name and times by a mark, recursively."""
    if value is None:
        return None
    if isinstance(value, uuid.UUID):
        return names.get(str(value), "<uuid>")
    if isinstance(value, dt.datetime):
        return "<time>"
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _neutral(v, names) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_neutral(v, names) for v in value]
    if isinstance(value, str):
        if value in names:
            return names[value]
        value = UUID_RE.sub(lambda m: names.get(m.group(0), "<uuid>"), value)
        return TIME_RE.sub("<time>", value)
    return value


def comparable(engine: Engine, school_id: uuid.UUID) -> dict[str, list[str]]:
    """The school's state without what differs between two schools given the same data:
    ids (replaced by ESIS keys), times, event numbers, the school's name and key."""
    names = _name_ids(engine, school_id)
    raw = state(engine, school_id)
    out: dict[str, list[str]] = {}
    for table, rows in raw.items():
        if table == "school":
            rows = [{k: r[k] for k in SCHOOL_FIELDS} for r in rows]
        # A digest is keyed with its record's id: the same claim in another school differs.
        rows = [
            {**r, "esis_digest": "<the digest of its values>"}
            if r.get("esis_digest") is not None
            and r["esis_digest"] == digest(r["id"], r["esis_values"], r["version"])
            else r
            for r in rows
        ]
        out[table] = sorted(
            json.dumps(
                {k: _neutral(v, names) for k, v in row.items() if k not in VOLATILE},
                sort_keys=True,
                default=str,
            )
            for row in rows
        )
    return out


def assert_same(
    actual: Mapping[str, Sequence[Any]], expected: Mapping[str, Sequence[Any]], what: str
) -> None:
    assert actual.keys() == expected.keys()
    for table in expected:
        if actual[table] != expected[table]:
            extra = [r for r in actual[table] if r not in expected[table]][:3]
            missing = [r for r in expected[table] if r not in actual[table]][:3]
            pytest.fail(
                f"{what}: table {table} differs ({len(actual[table])} rows, expected "
                f"{len(expected[table])}); e.g. not expected: {extra}; missing: {missing}"
            )


# --- the push that is killed ----------------------------------------------------------------


def merge_writes(engine: Engine) -> list[str]:
    """PostgreSQL: the roster tables another transaction of this database has written to and
    not yet committed (it holds their RowExclusiveLock): the merge's writes in progress."""
    query = text(
        "SELECT DISTINCT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE l.mode = 'RowExclusiveLock' AND l.granted AND l.pid <> pg_backend_pid() "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND c.relname IN ('student', 'guardian', 'student_group', 'student_guardian', "
        "'drift_item', 'event') ORDER BY 1"
    )
    with engine.connect() as conn:
        return [str(name) for name in conn.execute(query).scalars()]


@dataclass
class InFlight:
    """A push running in a thread; what came back, if anything."""

    response: httpx.Response | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def push_in_thread(base_url: str, school: procs.SchoolKeys, body: bytes) -> InFlight:
    flight = InFlight()

    def run() -> None:
        try:
            with procs.client(base_url, read_timeout=PUSH_TIMEOUT) as http:
                flight.response = procs.push(http, school, body)
        except BaseException as exc:
            flight.error = exc
        finally:
            flight.done.set()

    threading.Thread(target=run, name=f"push {school.key}", daemon=True).start()
    return flight


@dataclass
class Watched:
    """One push, watched from the database: when its apply transaction held the school's
    lock, and whether (and when) the service was killed."""

    school: procs.SchoolKeys
    school_id: uuid.UUID
    before: Rows
    snapshots_before: int
    flight: InFlight
    run: dict[str, Any] | None = None
    lock_seen: float | None = None
    lock_held_s: float = 0.0
    writes: list[str] = field(default_factory=list)
    killed: bool = False


def watch_push(
    service: procs.Service,
    engine: Engine,
    school: procs.SchoolKeys,
    body: bytes,
    *,
    kill_after: float | None,
) -> Watched:
    """Push `body` from a thread and poll the database while it runs. With `kill_after`, the
    service gets SIGKILL while the run is `received` and the apply transaction holds the
    school's lock: on PostgreSQL once that transaction has written roster rows, on SQLite once
    it has held the lock for `kill_after` s (its writes are not visible from outside)."""
    school_id = school_id_of(engine, school.key)
    before, snapshots_before = state(engine, school_id), snapshot_count(engine, school_id)
    assert received_run(engine, school_id) is None
    flight = push_in_thread(service.base_url, school, body)
    watched = Watched(school, school_id, before, snapshots_before, flight)
    postgres = engine.dialect.name == "postgresql"
    deadline = time.monotonic() + PUSH_TIMEOUT
    while time.monotonic() < deadline and not watched.flight.done.is_set():
        run = received_run(engine, school_id)
        if run is not None and school_lock_held(engine, school_id):
            now = time.monotonic()
            watched.run = run
            watched.lock_seen = watched.lock_seen or now
            watched.lock_held_s = now - watched.lock_seen
            if kill_after is not None:
                writes = merge_writes(engine) if postgres else []
                if (postgres and writes) or (not postgres and watched.lock_held_s >= kill_after):
                    watched.writes = writes
                    service.kill()
                    watched.killed = True
                    break
        time.sleep(0.002)
    assert watched.flight.done.wait(timeout=PUSH_TIMEOUT), "the push did not end"
    return watched


def test_sigkill_during_merge_is_atomic_and_recovered_on_restart(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    base = synthetic.build_school(2026, SHAPE)
    changed, change = synthetic.changed(base, seed=9, share=SHARE)
    operator = procs.operator_key(database_url)
    service = procs.Service(database_url, tmp_path / "logs", workers=1)
    brins = iter(["31AA", "32AB", "33AC", "34AD"])

    def body(snapshot: synthetic.Snapshot, school: procs.SchoolKeys, push: int) -> bytes:
        return synthetic.encode(synthetic.with_header(snapshot, brin=school.brin, push=push))

    try:
        service.start()
        with procs.client(service.base_url) as http:
            # The twin: the same push without a crash; it also measures how long the apply
            # transaction holds the school's lock.
            twin = procs.create_school(http, operator, next(brins))
            procs.activate(http, twin, body(base, twin, 0))
            clean = watch_push(service, engine, twin, body(changed, twin, 1), kill_after=None)
            assert clean.flight.response is not None, repr(clean.flight.error)
            clean_run = procs.expect(clean.flight.response, 201)
            assert clean_run["status"] == "applied", clean_run
            assert clean.lock_held_s > 0.05, "the clean merge was too quick to be caught"

            crash: Watched | None = None
            for attempt in range(ATTEMPTS):
                school = procs.create_school(http, operator, next(brins))
                procs.activate(http, school, body(base, school, 0))
                # Late in the lock's time (the writes come last), then earlier on a retry.
                kill_after = clean.lock_held_s * (0.7, 0.45, 0.2)[attempt]
                watched = watch_push(
                    service, engine, school, body(changed, school, 1), kill_after=kill_after
                )
                if watched.killed:
                    crash = watched
                    break
                procs.expect(watched.flight.response or httpx.Response(599), 201)
            assert crash is not None, f"no kill landed in the merge in {ATTEMPTS} attempts"
        print(
            f"killed after the apply transaction held the lock {crash.lock_held_s:.3f} s "
            f"(a clean one: {clean.lock_held_s:.3f} s); uncommitted writes to: "
            f"{crash.writes or 'not visible on this database'}"
        )

        # Killed: the client saw the connection drop, not an answer.
        assert crash.flight.response is None, crash.flight.response.text
        assert isinstance(crash.flight.error, httpx.TransportError), repr(crash.flight.error)
        if engine.dialect.name == "postgresql":
            assert crash.writes, "PostgreSQL: the kill should land after the merge wrote rows"

        # Nothing of the merge is in the database: the apply transaction was atomic. The
        # snapshot is stored and its run still `received`: it was not applied.
        assert_same(state(engine, crash.school_id), crash.before, "after SIGKILL")
        run = received_run(engine, crash.school_id)
        assert run is not None, "the run left `received` although the process was killed"
        assert crash.run is not None
        assert run["id"] == crash.run["id"]
        assert run["finished_at"] is None
        assert snapshot_count(engine, crash.school_id) == crash.snapshots_before + 1

        # Restart: recovery applies the stored snapshot before the service answers.
        service.start()
        assert "applied 1 snapshot(s) interrupted by the last stop" in service.log_text()
        recovered = {r["id"]: r for r in runs(engine, crash.school_id)}[run["id"]]
        assert recovered["status"] == "applied", recovered
        assert recovered["finished_at"] is not None
        assert received_run(engine, crash.school_id) is None
        counts = recovered["counts"]
        assert counts["student"]["added"] == change.students_added
        assert counts["guardian"]["added"] == change.guardians_added
        assert counts["student"]["drift_opened"] == change.students_changed
        assert counts["guardian"]["drift_opened"] == change.guardians_changed
        assert counts == clean_run["counts"]

        with procs.client(service.base_url) as http:
            # The API reports the recovered run as applied.
            shown = http.get(
                f"/api/v1/schools/{crash.school.key}/sync-runs/{run['id']}",
                headers=procs.bearer(crash.school.reader),
            )
            assert procs.expect(shown, 200)["status"] == "applied"
            # ESIS retrying the same body gets the recovered run, not a second merge.
            retry = procs.push(http, crash.school, body(changed, crash.school, 1))
            assert retry.status_code == 200, retry.text
            assert retry.json()["id"] == str(run["id"])
        # The school is what the same push made of the twin, which never crashed.
        assert_same(
            comparable(engine, crash.school_id),
            comparable(engine, school_id_of(engine, twin.key)),
            "recovered school against the same push without a crash",
        )
    finally:
        service.stop()
