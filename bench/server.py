"""The service as a real process for the benchmarks: a fresh database, migrated, served by
`esis-sync serve` on a free port of 127.0.0.1, and stopped (and the database dropped) after.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
HOST = "127.0.0.1"


class Unavailable(Exception):
    """The database cannot be reached; the benchmark of that database is skipped."""


def esis_sync_command() -> str:
    """The `esis-sync` script of the environment running the benchmark."""
    candidate = Path(sys.executable).parent / "esis-sync"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("esis-sync")
    if found is None:
        raise RuntimeError("esis-sync is not installed: run `make install`")
    return found


def postgres_admin_url() -> str:
    return os.environ.get("ESIS_SYNC_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)


@contextmanager
def fresh_database(kind: str) -> Iterator[str]:
    """A new, empty database: a temporary SQLite file, or a PostgreSQL database made and
    dropped (`WITH (FORCE)`) through the superuser URL."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="esis-sync-bench-") as directory:
            yield f"sqlite:///{Path(directory) / 'bench.db'}"
        return
    if kind != "postgresql":
        raise ValueError(f"unknown database {kind!r}")
    admin_url = make_url(postgres_admin_url())
    if admin_url.host not in (None, "", "127.0.0.1", "localhost", "::1"):
        raise Unavailable(f"PostgreSQL must be on this machine, not {admin_url.host}")
    admin = create_engine(
        admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    name = f"esis_sync_bench_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        where = admin_url.render_as_string(hide_password=True)
        raise Unavailable(f"PostgreSQL not reachable at {where}: {exc.orig}") from None
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


_BENCH_SECRET_KEY = Fernet.generate_key().decode()


def service_env(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ESIS_SYNC_DATABASE_URL=database_url,
        ESIS_SYNC_LOG_LEVEL="WARNING",
        ESIS_SYNC_BOOTSTRAP_OPERATOR_KEY="false",
        ESIS_SYNC_HOST=HOST,
        ESIS_SYNC_ALLOW_PRIVATE_ESIS_HOSTS="true",  # a fake ESIS on loopback
    )
    # serve and worker refuse PostgreSQL without a key for stored secrets.
    env.setdefault("ESIS_SYNC_SECRET_KEY", _BENCH_SECRET_KEY)
    return env


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [esis_sync_command(), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"esis-sync {' '.join(args)} failed:\n{done.stderr.strip()}")
    return done.stdout


def memory_kib(pid: int) -> dict[str, int]:
    """VmHWM (peak resident set) and VmRSS of a process, in KiB, from /proc."""
    out: dict[str, int] = {}
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            out[name] = int(value.split()[0])
    return out


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found.extend(int(child) for child in task.read_text().split())
        except OSError:
            continue
    return found


@dataclass
class Server:
    """A running `esis-sync serve`."""

    database_url: str
    base_url: str
    operator_key: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def peak_rss_mib(self) -> float:
        """The peak resident memory (VmHWM) of the server process (or its largest child)."""
        pids = [self.process.pid, *_children(self.process.pid)]
        peaks = [memory_kib(pid).get("VmHWM", 0) for pid in pids]
        return max(peaks) / 1024

    def rss_mib(self) -> float:
        return memory_kib(self.process.pid).get("VmRSS", 0) / 1024

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextmanager
def running_service(database_url: str, *, startup_timeout: float = 60.0) -> Iterator[Server]:
    """Migrate, create an operator key, serve; stop the process when the block ends."""
    env = service_env(database_url)
    _run(["migrate"], env)
    operator_key = _run(["create-operator-key", "--name", "bench"], env).strip().splitlines()[-1]
    port = free_port()
    with tempfile.NamedTemporaryFile(
        prefix="esis-sync-bench-", suffix=".log", delete=False
    ) as log_file:
        log_path = Path(log_file.name)
        process = subprocess.Popen(
            [esis_sync_command(), "serve", "--host", HOST, "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = Server(database_url, f"http://{HOST}:{port}", operator_key, process, log_path)
    try:
        _wait_healthy(server, startup_timeout)
        yield server
    finally:
        _stop(process)
        log_path.unlink(missing_ok=True)


def _wait_healthy(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"esis-sync serve exited at start:\n{server.log_tail()}")
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"esis-sync serve not healthy after {timeout:.0f} s:\n{server.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


def postgres_version(url: str) -> str:
    """`PostgreSQL 15.x` of the server behind `url`, for the reports."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return f"PostgreSQL {conn.execute(text('SHOW server_version')).scalar_one()}"
    finally:
        engine.dispose()
