"""Peak memory and time of reading a board-sized EDEXml file (50,000 students).

Generates a deterministic synthetic EDEXml 2.1 file with guardian blocks (`bench.synthetic`,
written by `app.esis.edexml_write.write_edexml`) to a temporary file, then runs
`read_edexml` on it in a fresh Python process, the way the service does: the whole body in
memory as bytes, validated and mapped onto a snapshot. Reports the wall time and the child's
peak resident set (`VmHWM`, and `ru_maxrss` of RUSAGE_CHILDREN as a cross-check) against the
target of 200 MB (issue 18; it was 300).

    .venv/bin/python -m bench.edexml_memory
    .venv/bin/python -m bench.edexml_memory --students 5000 --keep /tmp/board.xml
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.esis.edexml_write import write_edexml
from bench import synthetic

TARGET_MB = 200.0  # issue 18 (issue 7 had 300)
RESULTS = Path(__file__).resolve().parent / "results" / "edexml-memory.json"

# Runs in the child: nothing but the reader is imported or kept.
CHILD = """
import datetime as dt, json, sys, time
from pathlib import Path

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None

from app.esis.edexml import read_edexml
from app.esis.edexml_validate import validate_edexml
imported = status("VmRSS")
body = Path(sys.argv[1]).read_bytes()
loaded = status("VmRSS")
started = time.perf_counter()
if sys.argv[2] == "validate":
    counts = {"warnings": len(validate_edexml(body))}
else:
    result = read_edexml(body, today=dt.date(2026, 11, 28))
    snapshot = result.snapshot
    counts = {
        "students": len(snapshot.students),
        "guardians": len(snapshot.guardians),
        "groups": len(snapshot.groups),
        "staff": len(snapshot.staff),
        "warnings": len(result.warnings),
    }
seconds = time.perf_counter() - started
print(json.dumps({
    "seconds": seconds,
    **counts,
    "rss_after_imports": imported,
    "rss_with_body": loaded,
    "vmhwm": status("VmHWM"),
}))
"""


def _mb(value: float | None) -> float | None:
    return None if value is None else round(value / 1_000_000, 1)


def _distinct(body: dict[str, Any]) -> None:
    """Every last name and roepnaam made unique, as in a real school; the synthetic school
    draws them from small lists, and the reader shares equal strings."""
    for kind in ("students", "guardians", "staff"):
        for n, person in enumerate(body[kind]):
            person["last_name"] = f"{person['last_name']}-{kind[0]}{n:x}"
            person["given_name"] = f"{person['given_name']}{n:x}"


def generate(path: Path, *, students: int, seed: int, distinct: bool = False) -> dict[str, int]:
    """A board export: `students` students in 200 classes and 60 composite groups, 1.8
    guardians per student (siblings share them), 600 staff members."""
    shape = synthetic.Shape(
        students=students,
        classes=min(200, max(8, students // 25)),
        composites=min(60, max(1, students // 200)),
        guardians=students * 9 // 5,
        staff=min(600, max(20, students // 20)),
    )
    body = synthetic.with_header(synthetic.build_school(seed, shape), brin="12AB", push=0)
    if distinct:
        _distinct(body)
    with path.open("wb") as out:
        write_edexml(body, out, generated_at=synthetic.GENERATED_AT)
    return {name: len(body[name]) for name in ("groups", "students", "guardians", "staff")}


def measure(path: Path, what: str) -> dict[str, Any]:
    """`what`: `read` (read_edexml) or `validate` (validate_edexml alone)."""
    root = Path(__file__).resolve().parent.parent
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), what],
        capture_output=True,
        text=True,
        cwd=root,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"read_edexml failed:\n{done.stderr[-4000:]}")
    child: dict[str, Any] = json.loads(done.stdout)
    # ru_maxrss is in KiB on Linux: the largest of the children waited for so far.
    child["ru_maxrss"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    child["wall_seconds"] = wall
    return child


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--keep", type=Path, help="write the file here and keep it")
    parser.add_argument("--generate-only", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--distinct-names",
        action="store_true",
        help="make every last name and roepnaam unique (the synthetic lists repeat them)",
    )
    args = parser.parse_args(argv)
    if args.generate_only:
        counts = generate(
            args.generate_only, students=args.students, seed=args.seed, distinct=args.distinct_names
        )
        print(json.dumps(counts))
        return 0

    with tempfile.TemporaryDirectory(prefix="edexml-bench-") as tmp:
        path = args.keep or Path(tmp) / "board.xml"
        started = time.perf_counter()
        # Generated in a process of its own, so that this one stays small: ru_maxrss of the
        # children can include the image of the parent they were started from.
        options = ["--students", str(args.students), "--seed", str(args.seed)]
        options += ["--distinct-names"] if args.distinct_names else []
        made = subprocess.run(
            [sys.executable, "-m", "bench.edexml_memory", "--generate-only", str(path), *options],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
            check=True,
        )
        counts = json.loads(made.stdout)
        generated = time.perf_counter() - started
        size = path.stat().st_size
        print(
            f"generated {path.name}: {size / 1_000_000:.1f} MB, {counts['students']:,} students, "
            f"{counts['guardians']:,} guardians, {counts['groups']:,} groups, "
            f"{counts['staff']:,} staff ({generated:.1f} s)"
        )
        # Validation alone first: ru_maxrss, the maximum over the children, is then the
        # reader's (or the generator's, if that was larger).
        alone = measure(path, "validate")
        child = measure(path, "read")

    print(
        f"validate_edexml alone: {alone['seconds']:.1f} s, peak RSS (VmHWM) "
        f"{_mb(alone['vmhwm'])} MB (with the body {_mb(alone['rss_with_body'])} MB)"
    )
    peak = child["vmhwm"] or child["ru_maxrss"]
    met = peak / 1_000_000 < TARGET_MB
    print(
        f"read_edexml: {child['seconds']:.1f} s (process wall time {child['wall_seconds']:.1f} s)"
    )
    print(
        f"  read back: {child['students']:,} students, {child['guardians']:,} guardians, "
        f"{child['groups']:,} groups, {child['staff']:,} staff, {child['warnings']} warnings"
    )
    print(
        f"  RSS after imports {_mb(child['rss_after_imports'])} MB, with the body "
        f"{_mb(child['rss_with_body'])} MB"
    )
    print(f"  peak RSS (VmHWM) {_mb(child['vmhwm'])} MB, ru_maxrss {_mb(child['ru_maxrss'])} MB")
    print(f"target: peak < {TARGET_MB:.0f} MB: {'met' if met else 'NOT MET'}")

    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "file_bytes": size,
                "counts": counts,
                "generate_seconds": generated,
                "distinct_names": args.distinct_names,
                "validate_only": alone,
                **child,
                "target_mb": TARGET_MB,
                "met": met,
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                },
            },
            indent=2,
        )
        + "\n"
    )
    # A missed target is reported above, not an error: `make bench` runs on to the end, as
    # bench.merge does (its exit status is 1 only when a scenario could not run).
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
