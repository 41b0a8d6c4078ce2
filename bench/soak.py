"""`make soak`: a bounded mixed load on the real service, on PostgreSQL, over loopback.

A fresh PostgreSQL database is migrated and `esis-sync serve --workers N` runs as its own
process on 127.0.0.1. `--schools` small synthetic schools (40 students each) are created and
activated through the API first (not measured). Then, for `--seconds`, client threads send
requests on a fixed schedule (`--push-rate`, `--read-rate`, `--edit-rate` per second; 0 sends
back to back):

- pushers: full snapshots, the schools in turn, every push adding one student with a
  guardian (so each is a real merge with a change, not a replay);
- readers: `GET /students` or `/guardians` (limit 50), half of the time the next page too;
- editors: `GET` a guardian, then `PATCH` it with `If-Match` (a 412 is counted, not an error).

A request that goes out late (the previous one of its thread still ran) counts its latency
from when it was due, so a service that falls behind shows in the figures. Prints requests/s,
p50/p99/max latency and errors per kind, and the targets (0 errors; p99 of reads under
100 ms) with met / NOT MET; writes bench/results/soak.json. The exit status is 1 when a
request failed (an error is a bug, not a slow figure), 2 without PostgreSQL, else 0.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import os
import platform
import random
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import synthetic
from bench.merge import brin_codes
from bench.server import Server, Unavailable, fresh_database, postgres_version
from tests import procs

RESULTS = Path(__file__).resolve().parent / "results"
SHAPE = synthetic.Shape(students=40, classes=8, composites=2, guardians=70, staff=10)
KINDS = ("push", "list", "get", "patch")
READS = ("list", "get")
TARGET_ERRORS = 0
TARGET_READ_P99_MS = 100.0
PAGE = 50
LATE_S = 0.05  # a scheduled request sent this much after it was due went late


@dataclass
class School:
    keys: procs.SchoolKeys
    guardian_ids: list[str]
    pushes: int = 0
    body: synthetic.Snapshot = field(default_factory=dict)


@dataclass
class Stats:
    """Latencies and outcomes per kind; one lock for all threads (cheap next to HTTP)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    ms: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    unanswered: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    late: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    statuses: dict[str, dict[int, int]] = field(default_factory=lambda: {k: {} for k in KINDS})
    conflicts: int = 0
    samples: list[str] = field(default_factory=list)

    def timed(
        self,
        kind: str,
        call: Callable[[], httpx.Response],
        ok: tuple[int, ...],
        due: float | None = None,
    ) -> Any:
        """Make the request; its latency counts from when it was due if it went late."""
        started = time.perf_counter()
        late = due is not None and started - due > LATE_S
        if due is not None:
            started = min(started, due)
        try:
            response = call()
        except httpx.HTTPError as exc:
            with self.lock:
                self.errors[kind] += 1
                self.unanswered[kind] += 1
                if len(self.samples) < 20:
                    self.samples.append(f"{kind}: {type(exc).__name__}: {exc}")
            return None
        ms = (time.perf_counter() - started) * 1000
        with self.lock:
            self.ms[kind].append(ms)
            self.late[kind] += late
            counts = self.statuses[kind]
            counts[response.status_code] = counts.get(response.status_code, 0) + 1
            if response.status_code == 412 and kind == "patch":
                self.conflicts += 1
            elif response.status_code not in ok:
                self.errors[kind] += 1
                if len(self.samples) < 20:
                    self.samples.append(
                        f"{kind}: HTTP {response.status_code}: {response.text[:200]}"
                    )
        return response


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def added(school: School) -> None:
    """One more student, with a guardian of their own, in the school's next snapshot."""
    n = school.pushes
    key = f"S{n:05d}"
    school.body["students"].append(
        {
            "key": key,
            "last_name": "Soak",
            "given_name": f"Kind{n}",
            "birth_date": "2018-05-01",
            "gender": "unknown",
            "year_level": 3,
            "group": "G3A",
            "composite_groups": [],
        }
    )
    school.body["guardians"].append(
        {
            "key": f"T{n:05d}",
            "last_name": "Soak",
            "initials": "A.",
            "email": f"ouder.{key.lower()}@example.nl",
            "students": [{"student": key, "relation": "mother"}],
        }
    )


# --- setup ----------------------------------------------------------------------------------


def set_up_school(base_url: str, operator: str, brin: str, base: synthetic.Snapshot) -> School:
    with procs.client(base_url) as http:
        keys = procs.create_school(http, operator, brin)
        body = copy.deepcopy(base)
        procs.activate(http, keys, synthetic.encode(synthetic.with_header(body, brin=brin, push=0)))
        page = procs.expect(
            http.get(
                f"/api/v1/schools/{keys.key}/guardians",
                params={"limit": 20},
                headers=procs.bearer(keys.reader),
            ),
            200,
        )
    return School(keys, [g["id"] for g in page["items"]], pushes=1, body=body)


def set_up(base_url: str, operator: str, count: int, base: synthetic.Snapshot) -> list[School]:
    brins = brin_codes()
    chosen = [next(brins) for _ in range(count)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda b: set_up_school(base_url, operator, b, base), chosen))


# --- the load -------------------------------------------------------------------------------

Step = Callable[[float | None], None]


def loop(deadline: float, interval: float, offset: float, step: Step, out: Outcome) -> None:
    """Run `step` until the deadline: every `interval` s on a fixed schedule (a request due
    while the previous one still runs goes late, and its latency counts from when it was due),
    or back to back when `interval` is 0."""
    due = time.perf_counter() + offset
    try:
        while time.monotonic() < deadline:
            if interval <= 0:
                step(None)
                continue
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            if time.monotonic() >= deadline:
                break
            step(due)
            due += interval
    except Exception:  # a bug of the load itself: reported, and the run counts as failed
        out.failures.append(traceback.format_exc())


def pusher(base_url: str, schools: list[School], deadline: float, pace: Pace, out: Outcome) -> None:
    turn = iter(range(sys.maxsize))
    with procs.client(base_url, read_timeout=60) as http:

        def step(due: float | None) -> None:
            school = schools[next(turn) % len(schools)]
            added(school)
            body = synthetic.with_header(school.body, brin=school.keys.brin, push=school.pushes)
            school.pushes += 1
            encoded = synthetic.encode(body)
            out.stats.timed("push", lambda: procs.push(http, school.keys, encoded), (201,), due)

        loop(deadline, pace.interval, pace.offset, step, out)


def reader(
    base_url: str, schools: list[School], deadline: float, pace: Pace, out: Outcome, seed: int
) -> None:
    rng = random.Random(seed)
    with procs.client(base_url, read_timeout=60) as http:

        def step(due: float | None) -> None:
            school = rng.choice(schools)
            collection = rng.choice(("students", "guardians"))
            path = f"/api/v1/schools/{school.keys.key}/{collection}"
            headers = procs.bearer(school.keys.reader)
            first = {"limit": PAGE}
            response = out.stats.timed(
                "list", lambda: http.get(path, params=first, headers=headers), (200,), due
            )
            cursor = response.json().get("next_cursor") if response is not None else None
            if cursor and rng.random() < 0.5:
                more = {"limit": PAGE, "cursor": cursor}
                out.stats.timed(
                    "list", lambda: http.get(path, params=more, headers=headers), (200,)
                )

        loop(deadline, pace.interval, pace.offset, step, out)


def editor(
    base_url: str, schools: list[School], deadline: float, pace: Pace, out: Outcome, seed: int
) -> None:
    rng = random.Random(seed)
    with procs.client(base_url, read_timeout=60) as http:

        def step(due: float | None) -> None:
            school = rng.choice(schools)
            path = f"/api/v1/schools/{school.keys.key}/guardians/{rng.choice(school.guardian_ids)}"
            headers = procs.bearer(school.keys.admin)
            read = out.stats.timed("get", lambda: http.get(path, headers=headers), (200,), due)
            if read is None or read.status_code != 200:
                return
            phone = f"+316{rng.randrange(10_000_000, 100_000_000)}"
            etag = {**headers, "If-Match": read.headers["ETag"]}
            out.stats.timed(
                "patch", lambda: http.patch(path, json={"phone": phone}, headers=etag), (200,)
            )

        loop(deadline, pace.interval, pace.offset, step, out)


@dataclass(frozen=True)
class Pace:
    """One thread's schedule: a request every `interval` s (0: back to back), starting
    `offset` s late so that the threads of a kind take turns."""

    interval: float
    offset: float


def paces(rate: float, threads: int) -> list[Pace]:
    if threads <= 0:
        return []
    if rate <= 0:
        return [Pace(0.0, 0.0)] * threads
    interval = threads / rate
    return [Pace(interval, interval * i / threads) for i in range(threads)]


def run_load(base_url: str, schools: list[School], args: argparse.Namespace, out: Outcome) -> None:
    started = time.monotonic()
    deadline = started + args.seconds
    threads: list[threading.Thread] = []
    # Each pusher has schools of its own, so that a school's snapshots stay in order.
    for i, pace in enumerate(paces(args.push_rate, args.pushers)):
        mine = schools[i :: args.pushers]
        threads.append(threading.Thread(target=pusher, args=(base_url, mine, deadline, pace, out)))
    for i, pace in enumerate(paces(args.read_rate, args.readers)):
        threads.append(
            threading.Thread(
                target=reader, args=(base_url, schools, deadline, pace, out, args.seed + i)
            )
        )
    for i, pace in enumerate(paces(args.edit_rate, args.editors)):
        threads.append(
            threading.Thread(
                target=editor, args=(base_url, schools, deadline, pace, out, args.seed + 100 + i)
            )
        )
    for thread in threads:
        thread.daemon = True
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline + 90 - time.monotonic()))
    out.elapsed_s = time.monotonic() - started
    stuck = sum(1 for t in threads if t.is_alive())
    if stuck:
        out.failures.append(f"{stuck} load threads still waiting 90 s after the end")


# --- report ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    args: argparse.Namespace
    server_version: str = ""
    setup_s: float = 0.0
    elapsed_s: float = 0.0
    stats: Stats = field(default_factory=Stats)
    failures: list[str] = field(default_factory=list)
    peak_rss_mb: float | None = None
    load_average: dict[str, list[float]] = field(default_factory=dict)

    def kind(self, name: str) -> dict[str, Any]:
        values = self.stats.ms[name]
        return {
            "requests": len(values) + self.stats.unanswered[name],
            "per_second": round(len(values) / self.elapsed_s, 1) if self.elapsed_s else None,
            "p50_ms": _round(percentile(values, 0.50)),
            "p99_ms": _round(percentile(values, 0.99)),
            "max_ms": _round(max(values) if values else None),
            "late": self.stats.late[name],
            "errors": self.stats.errors[name],
            "statuses": {str(k): v for k, v in sorted(self.stats.statuses[name].items())},
        }

    def read_p99(self) -> float | None:
        return percentile([v for k in READS for v in self.stats.ms[k]], 0.99)

    def errors(self) -> int:
        return sum(self.stats.errors.values()) + len(self.failures)

    def targets(self) -> list[dict[str, Any]]:
        p99 = self.read_p99()
        return [
            {
                "name": "errors (all kinds)",
                "measured": self.errors(),
                "target": TARGET_ERRORS,
                "met": self.errors() <= TARGET_ERRORS,
            },
            {
                "name": "p99 of reads (list + get)",
                "measured": _round(p99),
                "target": f"< {TARGET_READ_P99_MS:.0f} ms",
                "met": None if p99 is None else p99 < TARGET_READ_P99_MS,
            },
        ]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def _offered(rate: float, threads: int, what: str) -> str:
    if threads == 0:
        return f"no {what}"
    return f"{what} {'back to back' if rate <= 0 else f'{rate:g}/s'} ({threads} threads)"


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(outcome: Outcome) -> str:
    args = outcome.args
    offered = ", ".join(
        (
            _offered(args.push_rate, args.pushers, "pushes"),
            _offered(args.read_rate, args.readers, "list reads"),
            _offered(args.edit_rate, args.editors, "edits"),
        )
    )
    lines = [
        "",
        f"### soak: {outcome.server_version}, esis-sync serve --workers {args.workers} on "
        f"127.0.0.1; {args.schools} schools ({SHAPE.students} students each, set up in "
        f"{outcome.setup_s:.0f} s); {outcome.elapsed_s:.0f} s of {offered}",
        "",
        f"{'kind':<8} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'late':>6} {'errors':>7}   statuses",
    ]
    total = 0
    for name in KINDS:
        k = outcome.kind(name)
        total += k["requests"]
        lines.append(
            f"{name:<8} {k['requests']:>9} {_cell(k['per_second']):>8} {_cell(k['p50_ms']):>8} "
            f"{_cell(k['p99_ms']):>8} {_cell(k['max_ms']):>8} {k['late']:>6} {k['errors']:>7}"
            f"   {k['statuses']}"
        )
    rate = total / outcome.elapsed_s if outcome.elapsed_s else 0.0
    lines.append(
        f"{'all':<8} {total:>9} {rate:>8.1f}   ({outcome.stats.conflicts} patches answered "
        "412: another edit came first)"
    )
    lines.append(
        f"reads (list + get): p99 {_cell(outcome.read_p99())} ms; late: requests sent more than "
        f"{LATE_S * 1000:.0f} ms after they were due (the client or the service fell behind; "
        "their latency counts from when they were due)"
    )
    if outcome.peak_rss_mb is not None:
        lines.append(f"server peak memory (largest process, VmHWM): {outcome.peak_rss_mb:.0f} MB")
    lines += ["", "targets:"]
    for t in outcome.targets():
        verdict = "n/a" if t["met"] is None else ("met" if t["met"] else "NOT MET")
        lines.append(
            f"  {t['name']:<28} {t['measured']!s:>8}   target {t['target']!s:<10} {verdict}"
        )
    for sample in outcome.stats.samples[:10]:
        lines.append(f"  error: {sample}")
    for failure in outcome.failures[:5]:
        lines.append(f"  load thread failed: {failure}")
    cpus = os.cpu_count() or 1
    before = outcome.load_average.get("before", [0.0])[0]
    lines.append(
        f"  note: client and server share this machine ({cpus} CPUs; load average before "
        f"{before:.1f}); the figures include the client's own CPU use"
    )
    return "\n".join(lines)


def write_json(outcome: Outcome) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "soak.json"
    args = outcome.args
    data = {
        "benchmark": "soak",
        "server_version": outcome.server_version,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "config": {
            "seconds": args.seconds,
            "schools": args.schools,
            "workers": args.workers,
            "pushers": args.pushers,
            "readers": args.readers,
            "editors": args.editors,
            "push_rate": args.push_rate,
            "read_rate": args.read_rate,
            "edit_rate": args.edit_rate,
            "seed": args.seed,
            "school": synthetic.summary(synthetic.build_school(args.seed, SHAPE)),
        },
        "setup_s": round(outcome.setup_s, 1),
        "elapsed_s": round(outcome.elapsed_s, 1),
        "load_average": outcome.load_average,
        "kinds": {name: outcome.kind(name) for name in KINDS},
        "read_p99_ms": _round(outcome.read_p99()),
        "patch_conflicts_412": outcome.stats.conflicts,
        "peak_rss_mb": None if outcome.peak_rss_mb is None else round(outcome.peak_rss_mb, 1),
        "targets": outcome.targets(),
        "error_samples": outcome.stats.samples,
        "failures": outcome.failures,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


# --- main -----------------------------------------------------------------------------------


def soak(args: argparse.Namespace) -> Outcome:
    outcome = Outcome(args)
    outcome.load_average["before"] = _load_average()
    base = synthetic.build_school(args.seed, SHAPE)
    with (
        fresh_database("postgresql") as url,
        tempfile.TemporaryDirectory(prefix="esis-sync-soak-") as logs,
    ):
        procs.cli(["migrate"], procs.service_env(url))
        operator = procs.operator_key(url)
        outcome.server_version = postgres_version(url)
        with procs.running(url, Path(logs), workers=args.workers) as service:
            print(
                f"esis-sync serve --workers {args.workers} on {service.base_url} "
                f"(pid {service.process.pid if service.process else '?'}); "
                f"setting up {args.schools} schools ...",
                flush=True,
            )
            started = time.monotonic()
            schools = set_up(service.base_url, operator, args.schools, base)
            outcome.setup_s = time.monotonic() - started
            print(f"set up in {outcome.setup_s:.0f} s; load for {args.seconds} s ...", flush=True)
            outcome.load_average["start"] = _load_average()
            run_load(service.base_url, schools, args, outcome)
            outcome.load_average["end"] = _load_average()
            if service.process is not None:
                server = Server(url, service.base_url, "", service.process, service.log_path)
                outcome.peak_rss_mb = server.peak_rss_mib() * 1024 * 1024 / 1_000_000
            if "Traceback" in service.log_text():
                outcome.failures.append("server log has a traceback:\n" + service.log_tail(60))
    return outcome


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="load time (default 60)")
    parser.add_argument("--schools", type=int, default=200, help="schools (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (default 2)")
    parser.add_argument("--pushers", type=int, default=2, help="pushing threads (default 2)")
    parser.add_argument("--readers", type=int, default=4, help="reading threads (default 4)")
    parser.add_argument("--editors", type=int, default=2, help="editing threads (default 2)")
    parser.add_argument(
        "--push-rate", type=float, default=2.0, help="pushes per second, all pushers (default 2)"
    )
    parser.add_argument(
        "--read-rate",
        type=float,
        default=20.0,
        help="list reads per second, all readers; half of them also read the next page "
        "(default 20)",
    )
    parser.add_argument(
        "--edit-rate",
        type=float,
        default=2.0,
        help="edits (GET + PATCH) per second, all editors (default 2)",
    )
    parser.add_argument("--seed", type=int, default=2026, help="seed of the synthetic school")
    args = parser.parse_args(argv)
    for name in ("push_rate", "read_rate", "edit_rate"):
        if not 0 <= getattr(args, name) <= 10_000:
            parser.error(f"--{name.replace('_', '-')} must be between 0 (no pause) and 10000")
    if not 1 <= args.seconds <= 3600:
        parser.error("--seconds must be between 1 and 3600")
    if not 1 <= args.schools <= 1000:
        parser.error("--schools must be between 1 and 1000")
    if not 1 <= args.workers <= 16:
        parser.error("--workers must be between 1 and 16")
    for name in ("pushers", "readers", "editors"):
        if not 0 <= getattr(args, name) <= 64:
            parser.error(f"--{name} must be between 0 and 64")
    if args.pushers > args.schools:
        parser.error("--pushers may not exceed --schools")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        outcome = soak(args)
    except Unavailable as exc:
        print(f"soak needs PostgreSQL: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    path = write_json(outcome)
    print(report(outcome))
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    print(f"(results: {shown})")
    return 1 if outcome.errors() else 0


if __name__ == "__main__":
    sys.exit(main())
