"""The real service as a child process, for the crash, concurrency and soak runs.

`Service` runs `esis-sync serve` (optionally with several uvicorn workers) on a free port of
127.0.0.1 in its own process group, against a database that is already migrated; it can be
killed with SIGKILL and started again on the same database. `Api` is the few HTTP calls these
runs need (schools, keys, pushes, activation), over httpx without proxies from the
environment. The process plumbing is bench/server.py's; this adds workers, extra settings,
SIGKILL and restarts.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from app.migrations import upgrade
from bench.server import HOST, ROOT, Server, _wait_healthy, esis_sync_command, free_port
from bench.server import service_env as bench_service_env
from tests.conftest import postgres_database

STOP_TIMEOUT = 15.0


# One key for every process this run starts, so that a restarted service reads what the
# previous one encrypted; PostgreSQL requires one (`esis-sync serve` refuses to start without).
_SECRET_KEY = Fernet.generate_key().decode()


def service_env(database_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the service: bench's (database, WARNING logs, no bootstrap key) and
    a secret key unless the environment has one."""
    env = bench_service_env(database_url)
    env.setdefault("ESIS_SYNC_SECRET_KEY", _SECRET_KEY)
    env.update(extra or {})
    return env


def cli(args: list[str], env: Mapping[str, str], *, timeout: float = 120.0) -> str:
    """Run `esis-sync <args>`; its stdout, or RuntimeError with its stderr."""
    done = subprocess.run(
        [esis_sync_command(), *args],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"esis-sync {' '.join(args)} failed:\n{done.stderr.strip()}")
    return done.stdout


def operator_key(database_url: str) -> str:
    """A new operator key, made by `esis-sync create-operator-key` on that database."""
    out = cli(["create-operator-key", "--name", "process test"], service_env(database_url))
    return out.strip().splitlines()[-1]


@dataclass
class Service:
    """`esis-sync serve` as a child process; `start` again after `kill` or `stop`."""

    database_url: str
    log_dir: Path
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    starts: int = 0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"serve-{self.starts}.log"

    def start(self, *, timeout: float = 120.0) -> None:
        """Start and wait until /healthz answers (start-up recovery runs before that)."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the service is already running")
        self.starts += 1
        self.port = free_port()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        command = [esis_sync_command(), "serve", "--host", HOST, "--port", str(self.port)]
        command += ["--workers", str(self.workers)]
        with self.log_path.open("wb") as log:
            # A session of its own: the uvicorn workers are in its process group, so that
            # kill and stop reach them too.
            self.process = subprocess.Popen(
                command,
                env=service_env(self.database_url, self.env),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(self.database_url, self.base_url, "", self.process, self.log_path)
        try:
            _wait_healthy(server, timeout)
        except BaseException:
            self.kill()
            raise

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the server and its workers at once, and reap them."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM (uvicorn's graceful stop); SIGKILL whatever is left after a while."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT)
        # Workers outlive a master that was killed alone; the group goes in every case.
        self._signal_group(signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=STOP_TIMEOUT)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text_ = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text_.splitlines()[-lines:])

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@contextmanager
def running(
    database_url: str,
    log_dir: Path,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> Iterator[Service]:
    """A started `Service`; stopped (its whole process group) when the block ends."""
    service = Service(database_url, log_dir, workers=workers, env=dict(env or {}))
    try:
        service.start(timeout=timeout)
        yield service
    finally:
        service.stop()


@contextmanager
def fresh_database(backend: str, directory: Path) -> Iterator[str]:
    """A new, migrated database: a SQLite file in `directory`, or a PostgreSQL database made
    through tests/conftest.py's `postgres_database` (which fails under CI=true when PostgreSQL
    is unreachable, and skips otherwise), dropped `WITH (FORCE)` afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{directory / 'esis-sync.db'}"
        upgrade(url)
        yield url
        return
    if backend != "postgresql":
        raise ValueError(f"unknown backend {backend!r}")
    with postgres_database() as url:
        yield url


# --- HTTP -----------------------------------------------------------------------------------


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@dataclass(frozen=True)
class SchoolKeys:
    key: str
    brin: str
    admin: str
    reader: str
    esis: str


def client(base_url: str, *, read_timeout: float = 120.0) -> httpx.Client:
    """A client of the service on loopback; proxies from the environment are not used."""
    return httpx.Client(
        base_url=base_url,
        trust_env=False,
        timeout=httpx.Timeout(connect=5.0, read=read_timeout, write=30.0, pool=5.0),
    )


def expect(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    if response.status_code not in statuses:
        raise AssertionError(
            f"{response.request.method} {response.request.url.path}: HTTP "
            f"{response.status_code} (expected {statuses}): {response.text[:800]}"
        )
    body: dict[str, Any] = response.json()
    return body


def create_school(http: httpx.Client, operator: str, brin: str) -> SchoolKeys:
    """A school (branch 00) with an admin, a reader and an ESIS key."""
    made = http.post(
        "/api/v1/schools",
        json={"brin": brin, "name": f"Testschool {brin}"},
        headers=bearer(operator),
    )
    key = str(expect(made, 201)["key"])
    secrets: dict[str, str] = {}
    for role in ("admin", "reader", "esis"):
        response = http.post(
            f"/api/v1/schools/{key}/api-keys",
            json={"role": role, "name": f"test {role}"},
            headers=bearer(operator),
        )
        secrets[role] = str(expect(response, 201)["secret"])
    return SchoolKeys(key=key, brin=brin, **secrets)


def push(http: httpx.Client, school: SchoolKeys, body: bytes) -> httpx.Response:
    return http.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=body,
        headers={**bearer(school.esis), "Content-Type": "application/json"},
    )


def activate(http: httpx.Client, school: SchoolKeys, body: bytes) -> dict[str, Any]:
    """Push the first snapshot (stored: the coupling is inactive), then activate (R2)."""
    stored = expect(push(http, school, body), 201)
    assert stored["status"] == "stored", stored
    response = http.post(
        f"/api/v1/schools/{school.key}/esis/activation", headers=bearer(school.admin)
    )
    run = expect(response, 201)
    assert run["status"] == "applied", run
    return run
