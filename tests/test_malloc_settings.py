"""`esis-sync serve` sets glibc's allocator (app/cli/server.py, `_tune_malloc`), unless the
operator set it: by a variable (`MALLOC_ARENA_MAX`) or in `GLIBC_TUNABLES`.

Observed in a real process: threads that each allocate while all are alive get arenas of
their own up to the arena limit, and glibc's `malloc_info` lists one heap per arena."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ARENAS = r"""
import ctypes, sys, threading

from app.cli.server import _tune_malloc

_tune_malloc()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
THREADS = 6
all_alive = threading.Barrier(THREADS + 1)
done = threading.Event()
held = []


def work():
    held.append(bytearray(64 * 1024))  # from this thread's arena (below the mmap threshold)
    all_alive.wait()
    done.wait()


threads = [threading.Thread(target=work) for _ in range(THREADS)]
for t in threads:
    t.start()
all_alive.wait()
out = libc.fopen(sys.argv[1].encode(), b"w")
libc.malloc_info(0, out)
libc.fclose(out)
done.set()
for t in threads:
    t.join()
print(open(sys.argv[1]).read().count("<heap nr="))
"""


def _arenas(tmp_path: Path, **env: str) -> int:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")
    }
    done = subprocess.run(
        [sys.executable, "-c", ARENAS, str(tmp_path / "malloc_info.xml")],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.strip())


def test_serve_limits_the_arenas_to_two(tmp_path: Path) -> None:
    assert _arenas(tmp_path) == 2


def test_an_arena_limit_set_by_variable_is_left_as_it_is(tmp_path: Path) -> None:
    assert _arenas(tmp_path, MALLOC_ARENA_MAX="4") == 4


def test_an_arena_limit_set_in_glibc_tunables_is_left_as_it_is(tmp_path: Path) -> None:
    # Six threads and the main one: seven arenas under a limit of eight.
    assert _arenas(tmp_path, GLIBC_TUNABLES="glibc.malloc.arena_max=8") == 7
    assert _arenas(tmp_path, GLIBC_TUNABLES="glibc.malloc.check=0:glibc.malloc.arena_max=3") == 3
