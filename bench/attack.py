"""`make attack`: issue 13's memory cases against the real service, with its peak memory.

`esis-sync serve` (one process, so the server is the process measured) runs on a fresh SQLite
database (`--database postgresql` for PostgreSQL). Each case sends one body within the
service's limits that once made the server build far more than the body holds; before each,
the process's peak resident set is reset (`/proc/<pid>/clear_refs`, 5), and after it the
peak (`VmHWM`) and the resident set a moment later (`VmRSS`) are read. Prints per case the
answer, the time, the peak rise and what stays held; the target is a rise of at most 150 MB
per request, and memory returning after (what stays within 50 MB of before). Bounded: a few
minutes. Exit status 1 when a target is not met or a case got a 5xx.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.server import Unavailable, memory_kib
from tests import procs
from tests.snapshots import school_snapshot

TARGET_RISE_MB = 150.0
TARGET_HELD_MB = 50.0
SETTLE_S = 1.5


@dataclass(frozen=True)
class Case:
    name: str
    content_type: str
    body: Callable[[], bytes]
    path: str = "snapshots"  # or "patch": a PATCH of a local student


def _groups(count: int, item: bytes) -> bytes:
    return b'{"groups":[' + b",".join([item] * count) + b"]}"


def _attributes(count: int) -> bytes:
    attributes = " ".join(f'a{i}="1"' for i in range(count))
    return f'<?xml version="1.0"?><EDEX {attributes}><school/></EDEX>'.encode()


def _many_invalid_records(count: int) -> bytes:
    snap = school_snapshot(students=1)
    snap["groups"] = [{"key": i, "name": None} for i in range(count)]  # two errors each
    return json.dumps(snap).encode()


def _patch_many_errors() -> bytes:
    return json.dumps({"group_ids": ["not-a-uuid"] * 100_000}).encode()


JSON = "application/json"
CASES = [
    Case("json: a million {} in groups (3 MB)", JSON, lambda: _groups(1_000_000, b"{}")),
    Case("json: two million zeros (4 MB)", JSON, lambda: _groups(2_000_000, b"0")),
    Case("json: 200,000 invalid groups", JSON, lambda: _many_invalid_records(200_000)),
    Case("json: 5,000 [", "APPLICATION/JSON", lambda: b"[" * 5000),
    Case("xml: 200,000 attributes", "application/xml", lambda: _attributes(200_000)),
    Case("patch: 100,000 invalid ids", JSON, _patch_many_errors, path="patch"),
]


def _mb(kib: int) -> float:
    return kib * 1024 / 1e6


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def run(database: str) -> int:
    failures = 0
    with (
        tempfile.TemporaryDirectory(prefix="esis-sync-attack-") as tmp,
        procs.fresh_database(database, Path(tmp)) as url,
    ):
        operator = procs.operator_key(url)
        with procs.running(url, Path(tmp) / "logs", workers=1) as service:
            assert service.process is not None
            pid = service.process.pid
            with procs.client(service.base_url, read_timeout=300) as http:
                school = procs.create_school(http, operator, "71AT")
                made = http.post(
                    f"/api/v1/schools/{school.key}/students",
                    json={"last_name": "Jansen"},
                    headers=procs.bearer(school.admin),
                )
                student = f"/api/v1/schools/{school.key}/students/{made.json()['id']}"
                print(f"{'case':<40} {'answer':>6} {'s':>6} {'peak rise MB':>13} {'held MB':>8}")
                for case in CASES:
                    body = case.body()
                    time.sleep(SETTLE_S)
                    before = memory_kib(pid)["VmRSS"]
                    _reset_peak(pid)
                    started = time.perf_counter()
                    if case.path == "patch":
                        headers = procs.bearer(school.admin)
                        answer = http.patch(
                            student,
                            content=body,
                            headers={**headers, "content-type": case.content_type},
                        )
                    else:
                        headers = procs.bearer(school.esis)
                        answer = http.post(
                            f"/api/v1/schools/{school.key}/esis/snapshots",
                            content=body,
                            headers={**headers, "content-type": case.content_type},
                        )
                    seconds = time.perf_counter() - started
                    peak = memory_kib(pid)["VmHWM"]
                    time.sleep(SETTLE_S)
                    after = memory_kib(pid)["VmRSS"]
                    rise, held = _mb(peak - before), _mb(after - before)
                    ok = (
                        answer.status_code < 500
                        and rise <= TARGET_RISE_MB
                        and held <= TARGET_HELD_MB
                    )
                    failures += not ok
                    print(
                        f"{case.name:<40} {answer.status_code:>6} {seconds:>6.2f} "
                        f"{rise:>13.0f} {held:>8.0f}  {'met' if ok else 'NOT MET'}"
                    )
    print(
        f"targets: peak rise <= {TARGET_RISE_MB:.0f} MB a request, held <= {TARGET_HELD_MB:.0f} MB"
    )
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    try:
        sys.exit(run(args.database))
    except (Unavailable, httpx.HTTPError) as exc:
        print(f"attack: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
