"""Scale of the daily pull: N schools through the fake ESIS with 1, 2, 4 worker processes.

`python -m bench.pull_scale --schools 500 --workers 1,2,4 --delay 0.2 --students 100`

Set-up (not measured), once: a PostgreSQL database is migrated with `esis-sync migrate`, and
the service (an in-process `create_app` through TestClient) creates `--schools` schools with
daily sync time 00:00, each with an ESIS connection to one fake ESIS (fake_esis/server.py: HTTPS
with client certificates, in this process on 127.0.0.1). Each school is activated from a pull
of a synthetic roster (`fake_esis.demo.roster`, `--students` students); then the fake ESIS is
scripted to answer the school's next pull with that roster plus one new student and guardian
(so every daily pull is a real merge with one change), after `--delay` seconds.
`last_pulled_on` is set to NULL: every school is due.

Per worker count W, a copy of that database (`CREATE DATABASE ... TEMPLATE`: a fresh database
in the same state, without setting everything up again) gets W `esis-sync worker` processes
(procrastinate; `ESIS_SYNC_SCHEDULER_INTERVAL_SECONDS=--interval`,
`ESIS_SYNC_WORKER_CONCURRENCY=--concurrency`, `ESIS_SYNC_LOG_LEVEL=WARNING`). Measured: the
wall time from starting the workers until every school has an applied scheduled pull run
(`sync_run.origin='pull' AND actor='schedule' AND status='applied'`), bounded by `--timeout`.
Reported per W: schools/s, the projection for 6,000 schools (the Dutch primary schools)
against the target of 4 minutes (issue 18; issue 7 had 15), failed runs, and where the time
went (the first tick, the pull jobs' queue wait and run time from procrastinate's events,
the merge time from the sync runs, and the CPU per pull of the workers, their PostgreSQL
backends and this process (the fake ESIS)).
Writes bench/results/pull-scale.json. Exit status: 0 when every school was pulled in every
run without a failure, 1 otherwise, 2 without PostgreSQL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bench.server import (
    ROOT,
    Unavailable,
    esis_sync_command,
    postgres_admin_url,
    postgres_version,
    service_env,
)

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_CONCURRENCY = 8  # app.config.Settings.worker_concurrency's default (a test compares)
TARGET_SCHOOLS = 6000
TARGET_MINUTES = 4.0  # issue 18: 6,000 schools of 250 students, 2 workers (issue 7 had 15)
POLL_S = 0.25
SETUP_THREADS = 4
OTHER_WORK_SHARE = 0.05  # other processes used more of the machine: a note
LOCAL = ("127.0.0.1", "localhost", "::1")

# --- databases ------------------------------------------------------------------------------


def _admin() -> Engine:
    url = make_url(postgres_admin_url())
    if url.host not in (None, "", *LOCAL):
        raise Unavailable(f"PostgreSQL must be on this machine, not {url.host}")
    return create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})


@contextmanager
def database(admin: Engine, *, template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (a copy of `template` when given), dropped afterwards."""
    name = f"esis_sync_bench_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    except OperationalError as exc:
        where = admin.url.render_as_string(hide_password=True)
        raise Unavailable(f"PostgreSQL not reachable at {where}: {exc.orig}") from None
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _name(url: str) -> str:
    return str(make_url(url).database)


def _esis_sync(args: list[str], env: dict[str, str], timeout: float = 300.0) -> str:
    done = subprocess.run(
        [esis_sync_command(), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"esis-sync {' '.join(args)} failed:\n{done.stderr.strip()}")
    return done.stdout


# --- the schools ----------------------------------------------------------------------------


def brin_codes(count: int) -> list[str]:
    """00AA, 01AA, ..., 99AA, 00AB, ...: unique for 67,600 schools."""
    return [
        f"{i % 100:02d}{chr(65 + (i // 100) // 26 % 26)}{chr(65 + (i // 100) % 26)}"
        for i in range(count)
    ]


def snapshots(brin: str, base: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The school's activation snapshot, and its next day's: one new student with a guardian."""
    first = {**base, "school": {**base["school"], "brin": brin}}
    daily = {
        **first,
        "school": {**first["school"], "generated_at": "2026-11-28T16:55:00+01:00"},
        "students": [
            *first["students"],
            {
                "key": "NIEUW1",
                "last_name": "Nieuw",
                "given_name": "Nina",
                "birth_date": "2018-05-01",
                "gender": "female",
                "year_level": 5,
                "group": "G5",
            },
        ],
        "guardians": [
            *first["guardians"],
            {
                "key": "VNIEUW1",
                "last_name": "Nieuw",
                "initials": "A",
                "email": "ouder.nieuw1@example.nl",
                "students": [{"student": "NIEUW1", "relation": "mother"}],
            },
        ],
    }
    return first, daily


def set_up(url: str, key: str, esis: Any, kit: Any, args: argparse.Namespace) -> None:
    """Schools, connections, activation and the next day's answers, through the API (an
    in-process app; `SETUP_THREADS` clients at once)."""
    from fastapi.testclient import TestClient

    from app.auth.models import Role
    from app.auth.service import create_key
    from app.config import Settings
    from app.main import create_app
    from fake_esis.demo import roster
    from fake_esis.server import DEFAULT_AUTORISATIE

    settings = Settings(
        database_url=url,
        secret_key=key,
        log_level="WARNING",
        allow_private_esis_hosts=True,
        _env_file=None,
    )
    app = create_app(settings)
    base = roster(students=args.students)
    connection = {
        "url": esis.url,
        "ca_pem": kit.ca.cert.decode(),
        "certificate": {"cert_pem": kit.client.cert.decode(), "key_pem": kit.client.key.decode()},
        **DEFAULT_AUTORISATIE,
    }
    done = [0]
    lock = threading.Lock()

    def school(client: TestClient, headers: dict[str, str], brin: str) -> None:
        first, daily = snapshots(brin, base)
        made = client.post(
            "/api/v1/schools",
            json={"brin": brin, "name": f"School {brin}", "daily_sync_time": "00:00:00"},
            headers=headers,
        )
        path = f"/api/v1/schools/{_ok(made, 201)['key']}"
        _ok(client.put(f"{path}/esis/connection", json=connection, headers=headers), 200)
        esis.script(brin, "00", answer=first)
        pulled = _ok(client.post(f"{path}/esis/pulls", headers=headers), 201)
        if pulled["status"] != "stored":
            raise RuntimeError(f"{brin}: activation pull {pulled}")
        activated = _ok(client.post(f"{path}/esis/activation", headers=headers), 201)
        if activated["status"] != "applied":
            raise RuntimeError(f"{brin}: activation {activated}")
        esis.script(brin, "00", answer=daily, mode="stall", delay=args.delay)
        with lock:
            done[0] += 1
            if done[0] % 100 == 0:
                print(f"  {done[0]} schools", flush=True)

    def chunk(brins: list[str], headers: dict[str, str]) -> None:
        with TestClient(app) as client:
            for brin in brins:
                school(client, headers, brin)

    try:
        with app.state.sessionmaker.begin() as session:
            _key, operator = create_key(
                session=session, role=Role.OPERATOR, name="bench", school_id=None, created_by="b"
            )
        headers = {"Authorization": f"Bearer {operator}"}
        brins = brin_codes(args.schools)
        with ThreadPoolExecutor(max_workers=SETUP_THREADS) as pool:
            chunks = [brins[i::SETUP_THREADS] for i in range(SETUP_THREADS)]
            for future in [pool.submit(chunk, c, headers) for c in chunks if c]:
                future.result()
        with app.state.engine.begin() as conn:
            conn.execute(
                text("UPDATE esis_connection SET last_pulled_on = NULL, claimed_until = NULL")
            )
    finally:
        app.state.engine.dispose()


def _ok(response: Any, status: int) -> dict[str, Any]:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: HTTP "
            f"{response.status_code}: {response.text[:500]}"
        )
    body: dict[str, Any] = response.json()
    return body


# --- CPU ------------------------------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine so far, from /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return (total - idle) / TICKS, total / TICKS


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    after = stat.rsplit(")", 1)[1].split()
    return (int(after[11]) + int(after[12])) / TICKS


def _load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


# --- one run --------------------------------------------------------------------------------


@dataclass
class Run:
    workers: int
    concurrency: int
    schools: int
    wall_s: float = 0.0
    applied: int = 0
    scheduled_runs: int = 0
    failed: int = 0
    timed_out: bool = False
    esis_requests: int = 0
    timeline: list[tuple[float, int]] = field(default_factory=list)
    analysis: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    load_before: list[float] = field(default_factory=list)
    # (applied, CPU s of the workers, of their PostgreSQL backends, of this process) over time
    samples: list[tuple[int, float, float, float]] = field(default_factory=list)

    def cpu_per_pull_ms(self) -> dict[str, float] | None:
        """CPU per pull between 10 % and 90 % of the schools applied (start-up and the first
        tick left out): workers, PostgreSQL, and this process (the fake ESIS)."""
        low = next((s for s in self.samples if s[0] >= self.schools * 0.1), None)
        high = next((s for s in self.samples if s[0] >= self.schools * 0.9), None)
        if low is None or high is None or high[0] - low[0] < max(2, self.schools // 10):
            return None
        pulls = high[0] - low[0]
        names = ("workers", "postgresql", "bench_and_fake_esis")
        return {n: round((high[i + 1] - low[i + 1]) * 1000 / pulls, 1) for i, n in enumerate(names)}

    @property
    def complete(self) -> bool:
        return self.applied == self.schools

    @property
    def rate(self) -> float | None:
        return self.applied / self.wall_s if self.complete and self.wall_s > 0 else None

    @property
    def projection_min(self) -> float | None:
        rate = self.rate
        return None if rate is None else TARGET_SCHOOLS / rate / 60

    @property
    def met(self) -> bool:
        projection = self.projection_min
        return projection is not None and projection < TARGET_MINUTES and not self.failed

    def as_json(self) -> dict[str, Any]:
        rate, projection = self.rate, self.projection_min
        return {
            "workers": self.workers,
            "concurrency_per_worker": self.concurrency,
            "schools": self.schools,
            "wall_s": round(self.wall_s, 2),
            "applied": self.applied,
            "scheduled_runs": self.scheduled_runs,
            "failed_runs": self.failed,
            "timed_out": self.timed_out,
            "schools_per_s": None if rate is None else round(rate, 2),
            "projection_6000_min": None if projection is None else round(projection, 1),
            "target_min": TARGET_MINUTES,
            "met": self.met,
            "esis_requests": self.esis_requests,
            "timeline": [[round(t, 2), n] for t, n in self.timeline],
            "analysis": self.analysis,
            "cpu_s": {k: round(v, 1) for k, v in self.cpu.items()},
            "load_average_before": self.load_before,
            "cpu_per_pull_ms_steady": self.cpu_per_pull_ms(),
            "errors": self.errors,
        }


def _worker_env(url: str, key: str, args: argparse.Namespace) -> dict[str, str]:
    env = service_env(url)
    env.update(
        ESIS_SYNC_SECRET_KEY=key,
        ESIS_SYNC_SCHEDULER_INTERVAL_SECONDS=str(args.interval),
        ESIS_SYNC_WORKER_CONCURRENCY=str(args.concurrency),
        ESIS_SYNC_LOG_LEVEL="WARNING",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


def _progress(engine: Engine) -> tuple[int, int, int]:
    """(schools with an applied scheduled pull, failed scheduled runs, scheduled runs)."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(DISTINCT school_id) FILTER (WHERE status = 'applied'), "
                "count(*) FILTER (WHERE status = 'failed'), count(*) FROM sync_run "
                "WHERE origin = 'pull' AND actor = 'schedule'"
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


def _backends(engine: Engine) -> list[int]:
    """PostgreSQL backends serving this database (the workers' connections), not ours."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).all()
    return [int(r[0]) for r in rows]


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each worker's process group, SIGKILL whatever is left after 10 s."""
    for process in processes:
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for process in processes:
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        if process.poll() is None:  # not reaped yet: its group id is still its own
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def measure(
    url: str, key: str, esis: Any, brins: list[str], workers: int, args: argparse.Namespace
) -> Run:
    run = Run(workers=workers, concurrency=args.concurrency, schools=len(brins))
    engine = create_engine(url)
    run.load_before = _load_average()
    served_before = sum(esis.served(b) for b in brins)
    processes: list[subprocess.Popen[bytes]] = []
    started_at = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="esis-sync-pull-scale-") as logs:
        try:
            env = _worker_env(url, key, args)
            busy0, total0 = machine_cpu()
            own0 = own_cpu()
            started_at = dt.datetime.now(dt.UTC)
            started = time.monotonic()
            for i in range(workers):
                with (Path(logs) / f"worker-{i}.log").open("wb") as log:
                    processes.append(
                        subprocess.Popen(
                            [esis_sync_command(), "worker"],
                            cwd=ROOT,
                            env=env,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            deadline = started + args.timeout
            last, polls = -1, 0
            backend_cpu: dict[int, float] = {}
            while time.monotonic() < deadline:
                applied, failed, total = _progress(engine)
                now = time.monotonic() - started
                if applied != last:
                    run.timeline.append((now, applied))
                    last = applied
                run.applied, run.failed, run.scheduled_runs = applied, failed, total
                if polls % 4 == 0:  # CPU of the workers and their backends, about once a second
                    for pid in _backends(engine):
                        backend_cpu[pid] = max(backend_cpu.get(pid, 0.0), process_cpu(pid))
                    run.samples.append(
                        (
                            applied,
                            sum(process_cpu(p.pid) for p in processes),
                            sum(backend_cpu.values()),
                            own_cpu() - own0,
                        )
                    )
                polls += 1
                if applied >= len(brins):
                    break
                if all(p.poll() is not None for p in processes):
                    run.errors.append("every worker process exited")
                    break
                time.sleep(POLL_S)
            else:
                run.timed_out = True
            run.wall_s = time.monotonic() - started
            for i, process in enumerate(processes):
                if process.poll() is not None:
                    run.errors.append(f"worker {i} exited early with status {process.returncode}")
            busy1, total1 = machine_cpu()
            workers_cpu = sum(process_cpu(p.pid) for p in processes)
            own = own_cpu() - own0
            for pid in _backends(engine):
                backend_cpu[pid] = max(backend_cpu.get(pid, 0.0), process_cpu(pid))
            postgres = sum(backend_cpu.values())
            run.cpu = {
                "elapsed_x_cpus": total1 - total0,
                "machine_busy": busy1 - busy0,
                "workers": workers_cpu,
                "postgresql_backends": postgres,
                "bench_and_fake_esis": own,
                "other_processes": max(0.0, busy1 - busy0 - workers_cpu - postgres - own),
            }
            _stop(processes)
            time.sleep(0.5)  # the last events are committed
            run.applied, run.failed, run.scheduled_runs = _progress(engine)
            run.esis_requests = sum(esis.served(b) for b in brins) - served_before
            run.analysis = analyse(engine, started_at)
            run.errors += _failures(engine)
            for log_path in sorted(Path(logs).glob("worker-*.log")):
                tail = [
                    line
                    for line in log_path.read_text(errors="replace").splitlines()
                    if "Traceback" in line or '"ERROR"' in line or "Error" in line
                ]
                if tail:
                    run.errors.append(f"{log_path.name}: {len(tail)} error lines: {tail[0][:300]}")
        finally:
            _stop(processes)
            engine.dispose()
    return run


def _failures(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT status, error FROM sync_run WHERE origin = 'pull' AND actor = 'schedule' "
                "AND status <> 'applied' LIMIT 5"
            )
        ).all()
        jobs = conn.execute(
            text(
                "SELECT status, count(*) FROM procrastinate_jobs WHERE task_name = 'pull_school' "
                "AND status NOT IN ('succeeded', 'todo', 'doing') GROUP BY status"
            )
        ).all()
    out = [f"run {status}: {str(error)[:300]}" for status, error in rows]
    out += [f"pull_school jobs {status}: {n}" for status, n in jobs]
    return out


def _pct(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(share * len(ordered)) - 1)], 1)


def _spread(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": _pct(values, 0.5),
        "p90": _pct(values, 0.9),
        "p99": _pct(values, 0.99),
        "max": _pct(values, 1.0),
    }


def analyse(engine: Engine, started_at: dt.datetime) -> dict[str, Any]:
    """Where the time went, from procrastinate's job events and the sync runs."""

    def since(at: dt.datetime | None) -> float | None:
        return None if at is None else round((at - started_at).total_seconds(), 2)

    with engine.connect() as conn:
        ticks = conn.execute(
            text(
                "SELECT j.id, min(e.at) FILTER (WHERE e.type = 'started'), "
                "max(e.at) FILTER (WHERE e.type IN ('succeeded', 'failed')) "
                "FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id "
                "WHERE j.task_name = 'tick' GROUP BY j.id ORDER BY 2"
            )
        ).all()
        jobs = conn.execute(
            text(
                "SELECT min(e.at) FILTER (WHERE e.type = 'deferred'), "
                "min(e.at) FILTER (WHERE e.type = 'started'), "
                "max(e.at) FILTER (WHERE e.type = 'succeeded') "
                "FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id "
                "WHERE j.task_name = 'pull_school' GROUP BY j.id"
            )
        ).all()
        runs = conn.execute(
            text(
                "SELECT started_at, finished_at FROM sync_run WHERE origin = 'pull' "
                "AND actor = 'schedule' AND status = 'applied'"
            )
        ).all()
        attempts = conn.execute(
            text(
                "SELECT coalesce(max(attempts), 0) FROM procrastinate_jobs "
                "WHERE task_name = 'pull_school'"
            )
        ).scalar_one()
    deferred = [d for d, _s, _e in jobs if d is not None]
    wait = [(s - d).total_seconds() * 1000 for d, s, _e in jobs if d and s]
    execute = [(e - s).total_seconds() * 1000 for _d, s, e in jobs if s and e]
    merge = [(f - s).total_seconds() * 1000 for s, f in runs if f is not None]
    finished = sorted(f for _s, f in runs if f is not None)
    first_tick = next((t for t in ticks if t[1] is not None), None)
    steady = None
    if len(finished) > 1 and finished[-1] > finished[0]:
        steady = (len(finished) - 1) / (finished[-1] - finished[0]).total_seconds()
    busy_s = sum(execute) / 1000
    span_s = (finished[-1] - started_at).total_seconds() if finished else 0.0
    return {
        "first_tick_started_s": since(first_tick[1]) if first_tick else None,
        "first_tick_s": (
            round((first_tick[2] - first_tick[1]).total_seconds(), 2)
            if first_tick and first_tick[2]
            else None
        ),
        "ticks": len(ticks),
        "pull_jobs": len(jobs),
        "pull_jobs_max_attempts": int(attempts),
        "first_deferred_s": since(min(deferred)) if deferred else None,
        "last_deferred_s": since(max(deferred)) if deferred else None,
        "first_applied_s": since(finished[0]) if finished else None,
        "last_applied_s": since(finished[-1]) if finished else None,
        "steady_schools_per_s": None if steady is None else round(steady, 2),
        "job_wait_ms": _spread(wait),
        "job_run_ms": _spread(execute),
        "sync_run_ms": _spread(merge),
        "fetch_and_overhead_ms_p50": (
            round(statistics.median(execute) - statistics.median(merge), 1)
            if execute and merge
            else None
        ),
        "busy_job_slots": round(busy_s / span_s, 1) if span_s > 0 else None,
    }


# --- report ---------------------------------------------------------------------------------


def _f(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(runs: list[Run], args: argparse.Namespace, setup_s: float, version: str) -> str:
    lines = [
        "",
        f"### pull scale: {version}; {args.schools} schools of {args.students} students, fake "
        f"ESIS answering after {args.delay * 1000:.0f} ms; tick every {args.interval} s, "
        f"{args.concurrency} jobs per worker; set up in {setup_s:.0f} s",
        "",
        f"{'workers':>7} {'wall s':>8} {'schools/s':>10} {'6,000 in min':>13} {'target':>9} "
        f"{'applied':>8} {'failed':>7} {'1st tick s':>11} {'1st pull s':>11} {'steady/s':>9} "
        f"{'run p50 ms':>11} {'merge p50 ms':>13} {'slots busy':>11}",
    ]
    for run in runs:
        a = run.analysis
        verdict = "met" if run.met else "NOT MET"
        lines.append(
            f"{run.workers:>7} {run.wall_s:>8.1f} {_f(run.rate, 2):>10} "
            f"{_f(run.projection_min):>13} {verdict:>9} {run.applied:>8} {run.failed:>7} "
            f"{_f(a.get('first_tick_started_s')):>11} {_f(a.get('first_applied_s')):>11} "
            f"{_f(a.get('steady_schools_per_s'), 2):>9} "
            f"{_f(a.get('job_run_ms', {}).get('p50'), 0):>11} "
            f"{_f(a.get('sync_run_ms', {}).get('p50'), 0):>13} "
            f"{_f(a.get('busy_job_slots')):>11}"
        )
    lines += [
        "",
        "the tick (leases the due schools, then defers their pull_school jobs in batches):",
    ]
    for run in runs:
        a = run.analysis
        tick, first, last = (
            a.get("first_tick_started_s"),
            a.get("first_deferred_s"),
            a.get("last_deferred_s"),
        )
        if tick is None or first is None or last is None:
            continue
        rate = a["pull_jobs"] / (last - first) if last > first else None
        lines.append(
            f"  {run.workers} worker(s): leases took {first - tick:.1f} s; jobs deferred from "
            f"{first:.1f} s to {last:.1f} s ({_f(rate, 0)}/s); a job waited "
            f"{_f(a['job_wait_ms']['p50'] / 1000 if a['job_wait_ms']['p50'] else None)} s "
            "(p50) for a free worker slot"
        )
    lines += ["", "CPU seconds during each run (machine: elapsed x CPUs):"]
    for run in runs:
        c = run.cpu
        lines.append(
            f"  {run.workers} worker(s): machine {_f(c.get('machine_busy'))} busy of "
            f"{_f(c.get('elapsed_x_cpus'))}: workers {_f(c.get('workers'))}, PostgreSQL "
            f"{_f(c.get('postgresql_backends'))}, bench + fake ESIS "
            f"{_f(c.get('bench_and_fake_esis'))}, other processes "
            f"{_f(c.get('other_processes'))}"
        )
        per = run.cpu_per_pull_ms()
        if per is not None:
            lines.append(
                f"    CPU per pull (10-90 % of the schools): workers {per['workers']:.0f} ms, "
                f"PostgreSQL {per['postgresql']:.0f} ms, bench + fake ESIS "
                f"{per['bench_and_fake_esis']:.0f} ms"
            )
    lines += [
        "",
        f"target: {TARGET_SCHOOLS:,} schools in under {TARGET_MINUTES:.0f} minutes, projected "
        f"linearly from schools/s (wall time from starting the workers to the last applied "
        "pull, so the start-up and the first tick are counted too)",
    ]
    for run in runs:
        if run.timed_out:
            lines.append(f"  {run.workers} worker(s): TIMED OUT after {args.timeout:.0f} s")
        for error in run.errors[:5]:
            lines.append(f"  {run.workers} worker(s): {error}")
    cpus = os.cpu_count() or 1
    lines.append(f"  note: workers, PostgreSQL and the fake ESIS share this machine ({cpus} CPUs)")
    for run in runs:
        other, capacity = run.cpu.get("other_processes", 0.0), run.cpu.get("elapsed_x_cpus", 0.0)
        if capacity and other / capacity > OTHER_WORK_SHARE:
            lines.append(
                f"  note: other processes used {other / capacity:.0%} of the machine during the "
                f"run with {run.workers} worker(s): its figures are slower than on a quiet machine"
            )
    return "\n".join(lines)


def write_json(runs: list[Run], args: argparse.Namespace, setup_s: float, version: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "pull-scale.json"
    data = {
        "benchmark": "pull_scale",
        "server_version": version,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": _load_average(),
        "config": {
            "schools": args.schools,
            "students": args.students,
            "delay_s": args.delay,
            "workers": args.workers,
            "concurrency_per_worker": args.concurrency,
            "scheduler_interval_s": args.interval,
            "timeout_s": args.timeout,
        },
        "target": {"schools": TARGET_SCHOOLS, "minutes": TARGET_MINUTES},
        "setup_s": round(setup_s, 1),
        "runs": [run.as_json() for run in runs],
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


# --- main -----------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> tuple[list[Run], float, str]:
    from fake_esis.server import FakeEsis

    key = Fernet.generate_key().decode()
    admin = _admin()
    runs: list[Run] = []
    try:
        with (
            tempfile.TemporaryDirectory(prefix="esis-sync-pki-") as pki,
            database(admin) as template,
        ):
            kit = FakeEsis.generate(Path(pki))
            env = service_env(template)
            env["ESIS_SYNC_SECRET_KEY"] = key
            _esis_sync(["migrate"], env)
            version = postgres_version(template)
            with kit.serve(host="127.0.0.1") as esis:
                print(
                    f"setting up {args.schools} schools (fake ESIS on {esis.url}) ...", flush=True
                )
                started = time.monotonic()
                set_up(template, key, esis, kit, args)
                setup_s = time.monotonic() - started
                print(f"set up in {setup_s:.0f} s", flush=True)
                brins = brin_codes(args.schools)
                for workers in args.workers:
                    with database(admin, template=_name(template)) as url:
                        print(f"{workers} worker(s) ...", flush=True)
                        run = measure(url, key, esis, brins, workers, args)
                        runs.append(run)
                        print(
                            f"  {run.applied}/{run.schools} in {run.wall_s:.1f} s "
                            f"({_f(run.rate, 2)} schools/s), {run.failed} failed",
                            flush=True,
                        )
    finally:
        admin.dispose()
    return runs, setup_s, version


def _workers(value: str) -> list[int]:
    try:
        counts = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of numbers, e.g. 1,2,4") from None
    if not counts or any(not 1 <= c <= 16 for c in counts):
        raise argparse.ArgumentTypeError("worker counts between 1 and 16")
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.pull_scale", description=__doc__)
    parser.add_argument("--schools", type=int, default=500, help="schools (default 500)")
    parser.add_argument(
        "--workers", type=_workers, default=[1, 2, 4], help="worker counts (default 1,2,4)"
    )
    parser.add_argument(
        "--delay", type=float, default=0.2, help="fake ESIS answer delay in s (default 0.2)"
    )
    parser.add_argument(
        "--students", type=int, default=100, help="students per school (default 100)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"ESIS_SYNC_WORKER_CONCURRENCY (default {DEFAULT_CONCURRENCY}, the service's default)",
    )
    parser.add_argument(
        "--interval", type=int, default=5, help="ESIS_SYNC_SCHEDULER_INTERVAL_SECONDS (default 5)"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="most seconds per worker count (default 300)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.schools <= 10_000:
        parser.error("--schools must be between 1 and 10,000")
    if not 0 <= args.delay <= 10:
        parser.error("--delay must be between 0 and 10")
    if not 1 <= args.students <= 2000:
        parser.error("--students must be between 1 and 2000")
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be between 1 and 64")
    if not 5 <= args.interval <= 3600:
        parser.error("--interval must be between 5 and 3600")
    if not 10 <= args.timeout <= 3600:
        parser.error("--timeout must be between 10 and 3600")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        runs, setup_s, version = bench(args)
    except Unavailable as exc:
        print(f"pull_scale needs PostgreSQL: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    path = write_json(runs, args, setup_s, version)
    print(report(runs, args, setup_s, version))
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    print(f"(results: {shown})")
    return 0 if all(r.complete and not r.failed for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
