"""`make bench`: the snapshot merge through the real service path, over real HTTP.

For each database (SQLite, PostgreSQL) a fresh database is migrated and `esis-sync serve`
runs as its own process on 127.0.0.1. On a fresh synthetic school each time (see
bench/synthetic.py), repeated `--repeat` times:

1. initial load: the snapshot is pushed (stored, the coupling is inactive), then
   `POST .../esis/activation` applies it; the activation request is timed;
2. no-change re-sync: the same data again with a new `generated_at`; the push is timed;
3. 1 % changed + 1 % new: a personal field of 1 % of students and guardians changed, 1 % new
   students with a new guardian each; the push is timed;
4. the per-record ORM loop (bench/orm_loop.py) doing the same initial load and 1 % re-sync
   directly on the database, for the ratio loop / service.

Prints min/median/max per scenario, the ratios, the server's peak memory (VmHWM), the targets
and whether they are met, and writes bench/results/merge-<database>.json.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import os
import platform
import pstats
import sqlite3
import statistics
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col, select

from bench import orm_loop, synthetic
from bench.limit import Limit
from bench.server import Server, Unavailable, fresh_database, running_service

RESULTS = Path(__file__).resolve().parent / "results"
DATABASES = ("sqlite", "postgresql")

LABELS = {
    "stored": "push before activation (stored only)",
    "initial_load": "initial load (activation request)",
    "no_change": "no-change re-sync (push)",
    "no_change_xml": "no-change re-sync, EDEXml push",
    "one_percent": "1 % changed + 1 % new (push)",
    "orm_initial_load": "per-record ORM loop: initial load",
    "orm_one_percent": "per-record ORM loop: 1 % changed + 1 % new",
    "limit_initial_load": "limit (bare merge): into empty tables",
    "limit_no_change": "limit (bare merge): the same rows again",
    "limit_one_percent": "limit (bare merge): 1 % changed + 1 % new",
}
SERVICE = ("stored", "initial_load", "no_change", "no_change_xml", "one_percent")
BASELINE = ("orm_initial_load", "orm_one_percent")
LIMIT = ("limit_initial_load", "limit_no_change", "limit_one_percent")
# Each service scenario against the bare merge of the same rows (bench/limit.py).
LIMIT_OF = {
    "initial_load": "limit_initial_load",
    "no_change": "limit_no_change",
    "no_change_xml": "limit_no_change",
    "one_percent": "limit_one_percent",
}

# Issue 18's targets, stated for PostgreSQL through HTTP (medians); SQLite is measured
# against them too, for reference, and should be within 1.5x of PostgreSQL.
TARGET_OF_LIMIT = {"no_change": 2.0, "no_change_xml": 2.5, "one_percent": 2.5}
TARGET_INITIAL_LOAD_MS = 300.0
TARGET_RATIO_INITIAL = 30.0
TARGET_RATIO_CHANGE = 50.0
TARGET_PEAK_MB = 150.0
TARGET_SQLITE_OF_POSTGRESQL = 1.5


def brin_codes() -> Iterator[str]:
    """10AA, 11AB, 12AC, ...: two digits and two letters, unique for 1,170 schools."""
    for i in range(90 * 13):
        yield f"{10 + i % 90}{chr(65 + (i // 26) % 26)}{chr(65 + i % 26)}"


# --- HTTP -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchoolKeys:
    key: str
    admin: str
    esis: str


@dataclass(frozen=True)
class Timed:
    ms: float
    run: dict[str, Any]

    @property
    def server_ms(self) -> float | None:
        """The run's own duration (`started_at` to `finished_at`) as the service recorded it."""
        started, finished = self.run.get("started_at"), self.run.get("finished_at")
        if not started or not finished:
            return None
        delta = dt.datetime.fromisoformat(finished) - dt.datetime.fromisoformat(started)
        return delta.total_seconds() * 1000


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


class Api:
    """The service's HTTP API, on 127.0.0.1 only (no proxies from the environment)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.client = httpx.Client(
            base_url=server.base_url,
            trust_env=False,
            timeout=httpx.Timeout(connect=5.0, read=600.0, write=60.0, pool=5.0),
        )

    def close(self) -> None:
        self.client.close()

    def _check(self, response: httpx.Response, expected: int, what: str) -> dict[str, Any]:
        if response.status_code != expected:
            raise RuntimeError(
                f"{what}: HTTP {response.status_code} (expected {expected}): "
                f"{response.text[:800]}\n{self.server.log_tail()}"
            )
        body: dict[str, Any] = response.json()
        return body

    def create_school(self, brin: str) -> SchoolKeys:
        operator = _bearer(self.server.operator_key)
        made = self.client.post(
            "/api/v1/schools",
            json={"brin": brin, "name": f"Benchmarkschool {brin}"},
            headers=operator,
        )
        key = str(self._check(made, 201, f"create school {brin}")["key"])
        secrets: dict[str, str] = {}
        for role in ("admin", "esis"):
            response = self.client.post(
                f"/api/v1/schools/{key}/api-keys",
                json={"role": role, "name": f"bench {role}"},
                headers=operator,
            )
            secrets[role] = str(self._check(response, 201, f"create {role} key")["secret"])
        return SchoolKeys(key=key, admin=secrets["admin"], esis=secrets["esis"])

    def push(
        self,
        school: SchoolKeys,
        body: bytes,
        *,
        expect_status: str,
        content_type: str = "application/json",
    ) -> Timed:
        started = time.perf_counter()
        response = self.client.post(
            f"/api/v1/schools/{school.key}/esis/snapshots",
            content=body,
            headers={**_bearer(school.esis), "Content-Type": content_type},
        )
        ms = (time.perf_counter() - started) * 1000
        run = self._check(response, 201, f"push to {school.key}")
        if run["status"] != expect_status:
            raise RuntimeError(f"push to {school.key}: run {run['status']}, not {expect_status}")
        return Timed(ms, run)

    def activate(self, school: SchoolKeys) -> Timed:
        started = time.perf_counter()
        response = self.client.post(
            f"/api/v1/schools/{school.key}/esis/activation", headers=_bearer(school.admin)
        )
        ms = (time.perf_counter() - started) * 1000
        run = self._check(response, 201, f"activate {school.key}")
        if run["status"] != "applied":
            raise RuntimeError(f"activation of {school.key}: run {run['status']}")
        return Timed(ms, run)


# --- expectations ---------------------------------------------------------------------------


def _count(run: dict[str, Any], entity: str, what: str) -> int:
    return int(run.get("counts", {}).get(entity, {}).get(what, 0))


def check_counts(
    scenario: str, run: dict[str, Any], expected: dict[tuple[str, str], int]
) -> list[str]:
    """What differs between a run's counts and what the scenario should have done."""
    return [
        f"{scenario}: {entity}.{what} is {_count(run, entity, what)}, expected {n}"
        for (entity, what), n in expected.items()
        if _count(run, entity, what) != n
    ]


def expected_initial(summary: dict[str, int]) -> dict[tuple[str, str], int]:
    return {
        ("group", "added"): summary["groups"],
        ("student", "added"): summary["students"],
        ("guardian", "added"): summary["guardians"],
        ("staff", "added"): summary["staff"],
        ("student_group", "added"): summary["student_group_links"],
        ("student_guardian", "added"): summary["student_guardian_links"],
        ("staff_group", "added"): summary["staff_group_links"],
    }


def expected_no_change(summary: dict[str, int]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for entity in ("group", "student", "guardian", "staff"):
        out[(entity, "added")] = 0
        out[(entity, "updated")] = 0
        out[(entity, "drift_opened")] = 0
    out[("student", "unchanged")] = summary["students"]
    out[("guardian", "unchanged")] = summary["guardians"]
    return out


def expected_change(change: synthetic.Change) -> dict[tuple[str, str], int]:
    return {
        ("student", "added"): change.students_added,
        ("guardian", "added"): change.guardians_added,
        ("student_guardian", "added"): change.guardians_added,
        ("student", "drift_opened"): change.students_changed,
        ("guardian", "drift_opened"): change.guardians_changed,
    }


# --- the benchmark --------------------------------------------------------------------------


@dataclass
class Workload:
    base: synthetic.Snapshot
    changed: synthetic.Snapshot
    change: synthetic.Change

    def bodies(self, brin: str, first_push: int = 0) -> tuple[bytes, bytes, bytes]:
        """Initial, no-change and changed bodies for one school; each body distinct."""
        return (
            synthetic.encode(synthetic.with_header(self.base, brin=brin, push=first_push)),
            synthetic.encode(synthetic.with_header(self.base, brin=brin, push=first_push + 1)),
            synthetic.encode(synthetic.with_header(self.changed, brin=brin, push=first_push + 3)),
        )

    def xml_body(self, brin: str, push: int = 2) -> bytes:
        """The unchanged school as EDEXml, pushed between the JSON no-change and the change."""
        from app.esis.edexml_write import write_edexml

        body = synthetic.with_header(self.base, brin=brin, push=push)
        out = io.BytesIO()
        write_edexml(
            body, out, generated_at=dt.datetime.fromisoformat(body["school"]["generated_at"])
        )
        return out.getvalue()


@dataclass
class Result:
    database: str
    samples: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in LABELS})
    server_ms: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in SERVICE})
    baseline_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    peak_rss_mb: float | None = None
    rss_after_warmup_mb: float | None = None
    server_version: str = ""
    profile: dict[str, Any] = field(default_factory=dict)
    load_average: dict[str, list[float]] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def median(self, scenario: str) -> float | None:
        values = self.samples[scenario]
        return statistics.median(values) if values else None

    def of_limit(self, service: str) -> float | None:
        """The service's median as a multiple of the bare merge's median of the same rows."""
        ours, bare = self.median(service), self.median(LIMIT_OF[service])
        if ours is None or bare is None or bare <= 0:
            return None
        return ours / bare

    def paired_of_limit(self, service: str) -> float | None:
        """The median of each round's service time over the limit measured right after it in
        the same round: less moved than `of_limit` by a machine that speeds up or slows
        down during the run (shared machines do), since both halves of a pair see the same
        minute. Printed beside `of_limit`; the targets are judged on `of_limit`."""
        ours, bare = self.samples[service], self.samples[LIMIT_OF[service]]
        pairs = [a / b for a, b in zip(ours, bare, strict=False) if b > 0]
        return statistics.median(pairs) if pairs and len(ours) == len(bare) else None

    def ratio(self, service: str, baseline: str) -> float | None:
        ours, theirs = self.median(service), self.median(baseline)
        if ours is None or theirs is None or ours <= 0:
            return None
        return theirs / ours


def _mb(mib: float) -> float:
    """MiB (what /proc reports, in KiB) to MB (10^6 bytes), the unit of the target."""
    return mib * 1024 * 1024 / 1_000_000


def run_service_round(
    api: Api,
    workload: Workload,
    brin: str,
    result: Result | None,
    summary: dict[str, int],
    limit: Limit | None = None,
) -> None:
    """One fresh school through scenarios 1-3; `result` None is a warm-up."""
    school = api.create_school(brin)
    initial, same, changed = workload.bodies(brin)
    xml = workload.xml_body(brin)
    timings = {
        "stored": api.push(school, initial, expect_status="stored"),
        "initial_load": api.activate(school),
        "no_change": api.push(school, same, expect_status="applied"),
        "no_change_xml": api.push(
            school, xml, expect_status="applied", content_type="application/xml"
        ),
        "one_percent": api.push(school, changed, expect_status="applied"),
    }
    if limit is not None:
        bare = limit.school([workload.base, workload.base, workload.changed])
    if result is None:
        return
    if limit is not None:
        for name, ms in zip(LIMIT, bare, strict=True):
            result.samples[name].append(ms)
    result.problems += check_counts(
        "initial load", timings["initial_load"].run, expected_initial(summary)
    )
    result.problems += check_counts(
        "no-change", timings["no_change"].run, expected_no_change(summary)
    )
    result.problems += check_counts(
        "no-change XML", timings["no_change_xml"].run, expected_no_change(summary)
    )
    result.problems += check_counts(
        "1 % change", timings["one_percent"].run, expected_change(workload.change)
    )
    for name, timed in timings.items():
        result.samples[name].append(timed.ms)
        if timed.server_ms is not None:
            result.server_ms[name].append(timed.server_ms)


def _school_id(sessions: sessionmaker[Session], key: str) -> uuid.UUID:
    from app.schools.models import School

    with sessions() as session:
        found = session.scalar(select(School).where(col(School.key) == key))
    if found is None:
        raise LookupError(f"school {key} not in the database")
    return found.id


def run_baseline_round(
    api: Api,
    sessions: sessionmaker[Session],
    workload: Workload,
    brin: str,
    result: Result | None,
) -> None:
    """The per-record ORM loop on a fresh school: initial load, then the 1 % re-sync."""
    school = api.create_school(brin)
    school_id = _school_id(sessions, school.key)
    initial, _same, changed = workload.bodies(brin)
    started = time.perf_counter()
    first = orm_loop.sync(sessions=sessions, school_id=school_id, body=initial)
    initial_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    second = orm_loop.sync(sessions=sessions, school_id=school_id, body=changed)
    change_ms = (time.perf_counter() - started) * 1000
    if result is None:
        return
    result.samples["orm_initial_load"].append(initial_ms)
    result.samples["orm_one_percent"].append(change_ms)
    result.baseline_counts = {"initial_load": first, "one_percent": second}


def _server_version(engine: Engine) -> str:
    if engine.dialect.name == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    with engine.connect() as conn:
        return f"PostgreSQL {conn.execute(text('SHOW server_version')).scalar_one()}"


def bench_database(database: str, args: argparse.Namespace, workload: Workload) -> Result:
    from app.db import make_engine, make_sessionmaker

    result = Result(database)
    result.load_average["before"] = args.load_before
    result.load_average["start"] = _load_average()
    started = time.monotonic()
    summary = synthetic.summary(workload.base)
    brins = brin_codes()
    small_base = synthetic.build_school(args.seed, synthetic.Shape(40, 8, 2, 70, 10))
    small_changed, small_change = synthetic.changed(small_base, seed=args.seed + 1)
    warmup = Workload(small_base, small_changed, small_change)
    with fresh_database(database) as url, running_service(url) as server:
        api = Api(server)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        limit = Limit(url)
        try:
            result.server_version = _server_version(engine)
            print(f"\n== {database}: {result.server_version}, server pid {server.process.pid}")
            # Warm-up (not counted): imports, statement caches and connections of both sides.
            run_service_round(api, warmup, next(brins), None, synthetic.summary(small_base), limit)
            if args.baseline_repeat:
                run_baseline_round(api, sessions, warmup, next(brins), None)
            result.rss_after_warmup_mb = _mb(server.rss_mib())
            for i in range(args.repeat):
                run_service_round(api, workload, next(brins), result, summary, limit)
                print(
                    f"  service round {i + 1}/{args.repeat}: "
                    + ", ".join(f"{k} {result.samples[k][-1]:.0f} ms" for k in SERVICE + LIMIT),
                    flush=True,
                )
            for i in range(args.baseline_repeat):
                run_baseline_round(api, sessions, workload, next(brins), result)
                print(
                    f"  ORM loop round {i + 1}/{args.baseline_repeat}: "
                    + ", ".join(f"{k} {result.samples[k][-1]:.0f} ms" for k in BASELINE),
                    flush=True,
                )
            result.peak_rss_mb = _mb(server.peak_rss_mib())
            if args.profile:
                result.profile = profile_in_process(sessions, api, workload, next(brins))
        finally:
            api.close()
            limit.close()
            engine.dispose()
    result.load_average["end"] = _load_average()
    result.elapsed_s = time.monotonic() - started
    return result


def _load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


# --- profile --------------------------------------------------------------------------------

PHASES = (
    ("app/coupling/receive.py", "_store", "store raw body + open run (txn 1)"),
    ("app/esis/parsing.py", "parse_snapshot", "parse + validate JSON (pydantic)"),
    ("app/coupling/activation.py", "readiness_of", "readiness check (R1)"),
    ("app/esis/validation.py", "check_snapshot", "reference check"),
    ("app/sync/repository.py", "load_state", "load state (one SELECT per table)"),
    ("app/sync/service.py", "plan_merge", "plan the merge (pure Python)"),
    ("app/sync/repository.py", "write_plan", "write plan (bulk statements)"),
    ("app/events/service.py", "emit", "emit events"),
    ("sqlalchemy/orm/session.py", "commit", "commit"),
)


def _phase_times(stats: pstats.Stats) -> dict[str, float]:
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = getattr(stats, "stats", {})
    out: dict[str, float] = {}
    for path, name, label in PHASES:
        total = sum(
            float(values[3])
            for (filename, _line, function), values in raw.items()
            if function == name and filename.endswith(path)
        )
        out[label] = total * 1000
    return out


def profile_in_process(
    sessions: sessionmaker[Session], api: Api, workload: Workload, brin: str
) -> dict[str, Any]:
    """cProfile of the three service scenarios called in-process (no HTTP) on one school."""
    from app.config import get_settings
    from app.coupling import activation
    from app.coupling.receive import receive_snapshot

    school = api.create_school(brin)
    school_id = _school_id(sessions, school.key)
    initial, same, changed = workload.bodies(brin)

    def push(body: bytes) -> None:
        receive_snapshot(
            sessions=sessions,
            school_id=school_id,
            body=body,
            content_type="application/json",
            idempotency_key=None,
            origin="push",
            actor="bench",
            today=dt.datetime.now(get_settings().tz).date(),
        )

    push(initial)
    steps: list[tuple[str, Callable[[], object]]] = [
        ("initial_load", lambda: activation.activate(
            sessions=sessions, school_id=school_id, actor="bench"
        )),
        ("no_change", lambda: push(same)),
        ("one_percent", lambda: push(changed)),
    ]  # fmt: skip
    out: dict[str, Any] = {}
    for name, step in steps:
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        step()
        profiler.disable()
        elapsed = (time.perf_counter() - started) * 1000
        stats = pstats.Stats(profiler)
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(30)
        out[name] = {
            "profiled_ms": elapsed,
            "phases_ms": _phase_times(stats),
            "top_cumulative": stream.getvalue(),
        }
    return out


# --- output ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    target: str
    met: bool | None


def targets(result: Result) -> list[Target]:
    """Issue 18's targets: multiples of the limit measured in the same run, medians."""

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0f} ms"

    def x(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}x"

    def at_most(value: float | None, bound: float) -> bool | None:
        return None if value is None else value <= bound

    def at_least(value: float | None, bound: float) -> bool | None:
        return None if value is None else value >= bound

    out = [
        Target(f"{LABELS[name]} / limit", x(result.of_limit(name)), f"<= {bound}x",
               at_most(result.of_limit(name), bound))
        for name, bound in TARGET_OF_LIMIT.items()
    ]  # fmt: skip
    initial = result.median("initial_load")
    r_initial = result.ratio("initial_load", "orm_initial_load")
    r_change = result.ratio("one_percent", "orm_one_percent")
    peak = result.peak_rss_mb
    return [
        *out,
        Target("initial load (median)", ms(initial), f"<= {TARGET_INITIAL_LOAD_MS:.0f} ms",
               at_most(initial, TARGET_INITIAL_LOAD_MS)),
        Target("vs per-record loop, initial load", x(r_initial),
               f">= {TARGET_RATIO_INITIAL:.0f}x", at_least(r_initial, TARGET_RATIO_INITIAL)),
        Target("vs per-record loop, 1 % change", x(r_change),
               f">= {TARGET_RATIO_CHANGE:.0f}x", at_least(r_change, TARGET_RATIO_CHANGE)),
        Target("server peak memory (VmHWM)", "n/a" if peak is None else f"{peak:.0f} MB",
               f"<= {TARGET_PEAK_MB:.0f} MB", at_most(peak, TARGET_PEAK_MB)),
    ]  # fmt: skip


def report(result: Result, args: argparse.Namespace, workload: Workload) -> str:
    summary = synthetic.summary(workload.base)
    lines = [
        "",
        f"### {result.database}: {result.server_version} — esis-sync serve over HTTP "
        f"(127.0.0.1), {args.repeat} fresh schools, ORM loop {args.baseline_repeat}x, "
        f"{result.elapsed_s:.0f} s",
        f"school: {summary['students']} students, {summary['groups']} groups "
        f"({summary['composite_groups']} composite), {summary['guardians']} guardians, "
        f"{summary['staff']} staff; links: {summary['student_group_links']} student-group, "
        f"{summary['student_guardian_links']} student-guardian, "
        f"{summary['staff_group_links']} staff-group",
        "",
        f"{'scenario':<46} {'min':>9} {'median':>9} {'max':>9}   {'x limit':>8} "
        f"{'paired':>7}   server run",
    ]
    for key, label in LABELS.items():
        values = result.samples[key]
        if not values:
            lines.append(f"{label:<46} {'-':>9} {'-':>9} {'-':>9}")
            continue
        server = result.server_ms.get(key) or []
        server_text = f"{statistics.median(server):9.0f} ms" if server else ""
        times = result.of_limit(key) if key in LIMIT_OF else None
        times_text = f"{times:7.1f}x" if times is not None else " " * 8
        paired = result.paired_of_limit(key) if key in LIMIT_OF else None
        paired_text = f"{paired:7.1f}x" if paired is not None else " " * 8
        lines.append(
            f"{label:<46} {min(values):9.0f} {statistics.median(values):9.0f} "
            f"{max(values):9.0f} ms {times_text}{paired_text}{server_text}"
        )
    r_initial = result.ratio("initial_load", "orm_initial_load")
    r_change = result.ratio("one_percent", "orm_one_percent")
    lines += [
        "",
        "ratio per-record ORM loop / service (medians): initial load "
        + ("n/a" if r_initial is None else f"{r_initial:.1f}x")
        + ", 1 % change "
        + ("n/a" if r_change is None else f"{r_change:.1f}x"),
        "server memory: peak RSS (VmHWM) "
        + ("n/a" if result.peak_rss_mb is None else f"{result.peak_rss_mb:.0f} MB")
        + ", RSS after warm-up "
        + ("n/a" if result.rss_after_warmup_mb is None else f"{result.rss_after_warmup_mb:.0f} MB"),
        "",
        "targets (stated for PostgreSQL through HTTP"
        + ("" if result.database == "postgresql" else "; shown for reference")
        + "):",
    ]
    for t in targets(result):
        verdict = "n/a" if t.met is None else ("met" if t.met else "NOT MET")
        lines.append(f"  {t.name:<46} {t.measured:>8}   target {t.target:<10} {verdict}")
    for problem in result.problems:
        lines.append(f"  warning: {problem}")
    before = result.load_average.get("before", [0.0])[0]
    cpus = os.cpu_count() or 1
    if before > cpus / 2:
        lines.append(
            f"  note: load average {before:.1f} on {cpus} CPUs before the benchmark started: "
            "other work shares the machine, so the figures are noisier (and slower) than on "
            "a quiet one"
        )
    if result.profile:
        lines += ["", "in-process profile (cProfile, no HTTP; times include its overhead):"]
        for name, data in result.profile.items():
            total = data["profiled_ms"]
            phases = ", ".join(
                f"{label} {ms:.0f}" for label, ms in data["phases_ms"].items() if ms >= 1
            )
            lines.append(f"  {LABELS[name]}: {total:.0f} ms — {phases}")
    return "\n".join(lines)


def write_json(result: Result, args: argparse.Namespace, workload: Workload) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"merge-{result.database}.json"
    scenarios: dict[str, Any] = {}
    for key, label in LABELS.items():
        values = result.samples[key]
        scenarios[key] = {
            "label": label,
            "samples_ms": [round(v, 2) for v in values],
            "min_ms": round(min(values), 2) if values else None,
            "median_ms": round(statistics.median(values), 2) if values else None,
            "max_ms": round(max(values), 2) if values else None,
            "server_run_ms": [round(v, 2) for v in result.server_ms.get(key, [])],
        }
    data = {
        "benchmark": "merge",
        "database": result.database,
        "server_version": result.server_version,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "repeat": args.repeat,
        "baseline_repeat": args.baseline_repeat,
        "seed": args.seed,
        "elapsed_s": round(result.elapsed_s, 1),
        "load_average": result.load_average,
        "school": synthetic.summary(workload.base),
        "change": workload.change.__dict__,
        "scenarios": scenarios,
        "of_limit": {name: result.of_limit(name) for name in LIMIT_OF},
        "paired_of_limit": {name: result.paired_of_limit(name) for name in LIMIT_OF},
        "ratios": {
            "initial_load": result.ratio("initial_load", "orm_initial_load"),
            "one_percent": result.ratio("one_percent", "orm_one_percent"),
        },
        "peak_rss_mb": result.peak_rss_mb,
        "rss_after_warmup_mb": result.rss_after_warmup_mb,
        "targets": [t.__dict__ for t in targets(result)],
        "baseline_counts": result.baseline_counts,
        "warnings": result.problems,
        "profile": {
            name: {k: v for k, v in data.items() if k != "top_cumulative"}
            for name, data in result.profile.items()
        },
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    profile_path = RESULTS / f"merge-{result.database}-profile.txt"
    if result.profile:
        profile_path.write_text(
            "\n\n".join(f"## {k}\n{v['top_cumulative']}" for k, v in result.profile.items())
        )
    else:
        profile_path.unlink(missing_ok=True)  # not left over from an earlier run
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.merge", description=__doc__)
    parser.add_argument(
        "--databases",
        default=",".join(DATABASES),
        help="comma-separated: sqlite, postgresql (default: both)",
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="fresh schools per scenario (default 5)"
    )
    parser.add_argument(
        "--baseline-repeat",
        type=int,
        default=None,
        help="runs of the per-record ORM loop (default: as --repeat); 0 skips it",
    )
    parser.add_argument("--seed", type=int, default=2026, help="seed of the synthetic school")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile the three scenarios in-process; the top functions go to "
        "bench/results/merge-<database>-profile.txt",
    )
    args = parser.parse_args(argv)
    args.databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    unknown = [d for d in args.databases if d not in DATABASES]
    if unknown or not args.databases:
        parser.error(f"--databases takes {', '.join(DATABASES)}, not {', '.join(unknown)}")
    if not 1 <= args.repeat <= 100:
        parser.error("--repeat must be between 1 and 100")
    if args.baseline_repeat is None:
        args.baseline_repeat = args.repeat
    if not 0 <= args.baseline_repeat <= 100:
        parser.error("--baseline-repeat must be between 0 and 100")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.load_before = _load_average() or [0.0]  # before our own work adds to it
    base = synthetic.build_school(args.seed)
    changed, change = synthetic.changed(base, seed=args.seed + 1)
    workload = Workload(base, changed, change)
    size = len(synthetic.encode(synthetic.with_header(base, brin="10AA", push=0)))
    print(
        f"synthetic school (seed {args.seed}): {synthetic.summary(base)}; body {size / 1e3:.0f} kB"
    )
    outputs: list[str] = []
    results: dict[str, Result] = {}
    failed = False
    for database in args.databases:
        try:
            result = bench_database(database, args, workload)
        except Unavailable as exc:
            reason = " ".join(str(exc).split())
            print(f"skipping {database}: {reason}")
            outputs.append(f"\n### {database}: skipped ({reason})")
            continue
        except Exception as exc:  # one database failing still reports the other
            traceback.print_exc()
            print(f"{database} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed = True
            continue
        results[database] = result
        text_report = report(result, args, workload)
        path = write_json(result, args, workload)
        shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        outputs.append(f"{text_report}\n(results: {shown})")
    if len(results) == 2:
        outputs.append(compare_databases(results["sqlite"], results["postgresql"]))
    print("\n".join(outputs))
    return 1 if failed else 0


def compare_databases(sqlite: Result, postgresql: Result) -> str:
    """Issue 18: SQLite within 1.5x of PostgreSQL, per service scenario (medians)."""
    lines = ["", f"SQLite / PostgreSQL (medians; target <= {TARGET_SQLITE_OF_POSTGRESQL}x):"]
    for name in LIMIT_OF:
        ours, theirs = sqlite.median(name), postgresql.median(name)
        if ours is None or not theirs:
            continue
        ratio = ours / theirs
        verdict = "met" if ratio <= TARGET_SQLITE_OF_POSTGRESQL else "NOT MET"
        lines.append(f"  {LABELS[name]:<44} {ratio:5.2f}x   {verdict}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
