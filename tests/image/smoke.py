"""`make image-test`: build the image and run it the way an operator would, twice.

1. `docker run`: migrate a fresh database on the machine's PostgreSQL in a container, run the
   API and a worker container, wait until Docker reports the API healthy, create a school and
   its keys, push the JSON example snapshot, start a `fake-esis` container, configure the
   school's connection to it, pull, activate, read the roster back, and check that no
   container runs as root.
2. `docker-compose.yml` with `tests/image/compose.host.yml` over it (host network, the
   machine's PostgreSQL in place of the `db` service): `config` validates, `up` brings
   migrate, api, worker and fake-esis up, and the same smoke test runs against it.

Everything made is removed at the end (containers, the database, the folder of the fake's
certificates), also after a failure or Ctrl-C. Works wherever Docker can pull (or already has)
the base images; containers use the host network and listen on 127.0.0.1 only.

    python -m tests.image.smoke [--only run|compose] [--no-build]

Settings: ESIS_SYNC_TEST_POSTGRES_URL (a superuser URL of the machine's PostgreSQL, default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres), ESIS_SYNC_IMAGE (tag to build,
default esis-sync:image-test).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "snapshot.json"
OVERRIDE = Path(__file__).resolve().parent / "compose.host.yml"
HOST = "127.0.0.1"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# The fake ESIS's client credentials (fake_esis/server.py); it serves school 12AB00.
AUTORISATIE = {
    "autorisatiesleutel": "fake-autorisatiesleutel",
    "klantcode": "K0001",
    "klantnaam": "Stichting Testbestuur",
}
FAKE_PATH = "/uwlr2.2.svc"
HEALTHY_TIMEOUT = 180.0


def say(message: str) -> None:
    print(f"image-test: {message}", flush=True)


def sh(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    """Run a command; its stdout, or SystemExit with its output."""
    done = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
    )
    if done.returncode != 0:
        raise SystemExit(
            f"image-test: `{' '.join(args)}` failed ({done.returncode}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def compose_command() -> list[str]:
    """`docker compose` (v2) when there, else `docker-compose` (v1)."""
    probe = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, check=False
    )
    if probe.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise SystemExit("image-test: neither `docker compose` nor `docker-compose` is installed")


def build(image: str) -> float:
    env = dict(os.environ)
    # The classic builder works everywhere (also where no BuildKit frontend image can be
    # pulled); set DOCKER_BUILDKIT=1 to use BuildKit.
    env.setdefault("DOCKER_BUILDKIT", "0")
    start = time.monotonic()
    sh(["docker", "build", "--network", "host", "-t", image, "."], env=env, timeout=1800)
    took = time.monotonic() - start
    size = int(sh(["docker", "image", "inspect", "-f", "{{.Size}}", image]).strip())
    say(f"built {image} in {took:.1f} s; image size {size / 1e6:.0f} MB")
    return took


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new empty database on the machine's PostgreSQL; dropped WITH (FORCE) at the end."""
    admin_url = os.environ.get("ESIS_SYNC_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    name = f"esis_image_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    say(f"created database {name}")
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        say(f"dropped database {name}")


@contextmanager
def certificates_dir() -> Iterator[Path]:
    """Where the fake ESIS (uid 10001 in its container) writes its certificates."""
    folder = Path(tempfile.mkdtemp(prefix="esis-image-test-"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.5)
    raise SystemExit(f"image-test: {what} not within {timeout:.0f} s")


def health(container: str) -> str:
    status = "{{if .State.Health}}{{.State.Health.Status}}{{end}}"
    out = subprocess.run(
        ["docker", "inspect", "-f", status, container],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip()


def running(container: str) -> bool:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", container],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() == "true"


def wait_healthy(container: str, started: float, label: str = "") -> float:
    def healthy() -> bool:
        status = health(container)
        if status == "unhealthy" or not running(container):
            logs = subprocess.run(
                ["docker", "logs", "--tail", "40", container], capture_output=True, text=True
            )
            raise SystemExit(
                f"image-test: {container} is {status or 'not running'}:\n{logs.stdout}{logs.stderr}"
            )
        return status == "healthy"

    wait_for(f"{container} healthy", healthy, HEALTHY_TIMEOUT)
    took = time.monotonic() - started
    say(f"{label or container} healthy {took:.1f} s after start")
    return took


def uid_of(container: str) -> int:
    return int(sh(["docker", "exec", container, "id", "-u"]).strip())


def wait_for_fake(directory: Path, port: int) -> None:
    def up() -> bool:
        if not all((directory / n).exists() for n in ("ca.pem", "client.pem", "client.key")):
            return False
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex((HOST, port)) == 0

    wait_for("the fake ESIS", up, 60)


def smoke(base: str, operator: str, fake: Path, fake_port: int) -> None:
    """The operator's and an integrator's first hour, against the running containers."""
    with httpx.Client(base_url=base, timeout=60, trust_env=False) as http:

        def call(method: str, path: str, key: str, expected: int, **kw: Any) -> Any:
            headers = {"Authorization": f"Bearer {key}", **kw.pop("headers", {})}
            response = http.request(method, path, headers=headers, **kw)
            if response.status_code != expected:
                raise SystemExit(
                    f"image-test: {method} {path}: {response.status_code} (expected "
                    f"{expected}): {response.text[:2000]}"
                )
            return response.json() if response.content else None

        assert http.get("/readyz").json()["status"] == "ok"
        school = call(
            "POST", "/api/v1/schools", operator, 201, json={"brin": "12AB", "name": "De Regenboog"}
        )["key"]
        keys = f"/api/v1/schools/{school}/api-keys"
        admin = call("POST", keys, operator, 201, json={"role": "admin", "name": "smoke"})["secret"]
        esis = call("POST", keys, admin, 201, json={"role": "esis", "name": "smoke"})["secret"]
        pushed = call(
            "POST",
            f"/api/v1/schools/{school}/esis/snapshots",
            esis,
            201,
            content=EXAMPLE.read_bytes(),
            headers={"content-type": "application/json"},
        )
        say(f"pushed docs/examples/snapshot.json: run {pushed['status']}")
        call(
            "PUT",
            f"/api/v1/schools/{school}/esis/connection",
            admin,
            200,
            json={
                "url": f"https://{HOST}:{fake_port}{FAKE_PATH}",
                "ca_pem": (fake / "ca.pem").read_text(),
                "certificate": {
                    "cert_pem": (fake / "client.pem").read_text(),
                    "key_pem": (fake / "client.key").read_text(),
                },
                **AUTORISATIE,
            },
        )
        pulled = call("POST", f"/api/v1/schools/{school}/esis/pulls", admin, 201)
        if pulled["status"] not in {"stored", "applied"}:
            raise SystemExit(f"image-test: the pull did not succeed: {json.dumps(pulled)[:2000]}")
        say(f"pulled from the fake-esis container: run {pulled['status']}")
        ready = call("GET", f"/api/v1/schools/{school}/esis/readiness", admin, 200)
        if not ready["ready"]:
            raise SystemExit(f"image-test: not ready for activation: {json.dumps(ready)[:2000]}")
        call("POST", f"/api/v1/schools/{school}/esis/activation", admin, 201)
        students = call("GET", f"/api/v1/schools/{school}/students?limit=1000", admin, 200)
        guardians = call("GET", f"/api/v1/schools/{school}/guardians?limit=1000", admin, 200)
        if not students["items"] or not guardians["items"]:
            raise SystemExit("image-test: the roster read back is empty")
        sources = {s["provenance"]["source"] for s in students["items"]}
        say(
            f"roster read back: {len(students['items'])} students, "
            f"{len(guardians['items'])} guardians (source {', '.join(sorted(sources))})"
        )
        console(http, admin, school)


# Words each console language shows on a school's runs page, which formats dates and numbers
# with Babel: the image keeps only Babel's Dutch and English locale data (Dockerfile).
CONSOLE_WORDS = {"nl": "Synchronisaties", "en": "Sync runs"}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def console(http: httpx.Client, admin: str, school: str) -> None:
    """Sign in to the console with the admin key and read a page in Dutch and in English."""
    form = http.get("/console/login")
    token = CSRF.search(form.text)
    if form.status_code != 200 or token is None:
        raise SystemExit(f"image-test: console login page: {form.status_code}")
    signed_in = http.post(
        "/console/login",
        data={"key": admin, "csrf": token.group(1), "next": ""},
        follow_redirects=False,
    )
    if signed_in.status_code != 303:
        raise SystemExit(f"image-test: console sign-in: {signed_in.status_code}")
    for lang, word in CONSOLE_WORDS.items():
        page = http.get(f"/console/schools/{school}/runs", params={"lang": lang})
        if page.status_code != 200 or word not in page.text:
            raise SystemExit(
                f"image-test: console runs page in {lang}: {page.status_code}, "
                f"{word!r} {'found' if word in page.text else 'not found'}"
            )
    say("console signed in and read the runs page in Dutch and English")


def docker_env_args(env: dict[str, str]) -> list[str]:
    return [arg for k, v in env.items() for arg in ("-e", f"{k}={v}")]


def run_containers(image: str) -> float:
    """The stack with plain `docker run`; the time to healthy."""
    tag = uuid.uuid4().hex[:8]
    containers: list[str] = []
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database())
        fake = stack.enter_context(certificates_dir())

        def remove() -> None:
            for name in reversed(containers):
                subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
            if containers:
                say(f"removed containers {', '.join(containers)}")

        stack.callback(remove)
        api_port, fake_port = free_port(), free_port()
        env = {
            "ESIS_SYNC_DATABASE_URL": url,
            "ESIS_SYNC_SECRET_KEY": Fernet.generate_key().decode(),
            "ESIS_SYNC_HOST": HOST,
            "ESIS_SYNC_PORT": str(api_port),
            "ESIS_SYNC_LOG_LEVEL": "WARNING",
            "ESIS_SYNC_ALLOW_PRIVATE_ESIS_HOSTS": "true",  # the fake ESIS is on loopback
        }
        base = ["docker", "run", "--network", "host", *docker_env_args(env)]
        sh([*base, "--rm", image, "esis-sync", "migrate"])
        say("migrated in a container")
        operator = sh([*base, "--rm", image, "esis-sync", "create-operator-key"]).strip()
        operator = operator.splitlines()[-1]

        api = f"esis-image-test-api-{tag}"
        containers.append(api)
        started = time.monotonic()
        sh([*base, "-d", "--name", api, image])
        worker = f"esis-image-test-worker-{tag}"
        containers.append(worker)
        sh([*base, "-d", "--name", worker, "--no-healthcheck", image, "esis-sync", "worker"])
        took = wait_healthy(api, started)
        if not running(worker):
            raise SystemExit("image-test: the worker container stopped")

        esis = f"esis-image-test-fake-esis-{tag}"
        containers.append(esis)
        mount = ["-v", f"{fake}:/srv/var/fake-esis"]
        serve = ["--host", HOST, "--port", str(fake_port), "--directory", "/srv/var/fake-esis"]
        detached = [*base, "-d", "--name", esis, "--no-healthcheck", *mount]
        sh([*detached, image, "esis-sync", "fake-esis", *serve])
        wait_for_fake(fake, fake_port)
        smoke(f"http://{HOST}:{api_port}", operator, fake, fake_port)
        check_uids([api, worker, esis])
        return took


def check_uids(containers: list[str]) -> None:
    for name in containers:
        uid = uid_of(name)
        if uid == 0:
            raise SystemExit(f"image-test: {name} runs as root")
    say(f"no container runs as root (uid {uid})")


def run_compose(image: str) -> float:
    """docker-compose.yml with the host-network override; the time to healthy."""
    compose = compose_command()
    project = f"esis-image-test-{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database())
        fake = stack.enter_context(certificates_dir())
        api_port, fake_port = free_port(), free_port()
        env = dict(os.environ)
        env.update(
            ESIS_SYNC_SECRET_KEY=Fernet.generate_key().decode(),
            ESIS_SYNC_IMAGE=image,
            ESIS_SYNC_IMAGE_TEST_DATABASE_URL=url,
            ESIS_SYNC_IMAGE_TEST_API_PORT=str(api_port),
            ESIS_SYNC_IMAGE_TEST_FAKE_ESIS_PORT=str(fake_port),
            ESIS_SYNC_IMAGE_TEST_FAKE_ESIS_DIR=str(fake),
        )
        plain = [*compose, "-f", "docker-compose.yml"]
        sh([*plain, "config", "-q"], env=env)
        files = [*compose, "-p", project, "-f", "docker-compose.yml", "-f", str(OVERRIDE)]
        sh([*files, "config", "-q"], env=env)
        say("docker-compose.yml and the host-network override validate")

        def down() -> None:
            subprocess.run(
                [*files, "down", "-v", "--remove-orphans", "-t", "5"],
                env=env,
                capture_output=True,
                check=False,
            )
            say(f"compose project {project} removed")

        stack.callback(down)
        started = time.monotonic()
        sh([*files, "up", "-d", "--no-build", "migrate", "api", "worker", "fake-esis"], env=env)
        ids = {
            service: sh([*files, "ps", "-q", service], env=env).strip()
            for service in ("api", "worker", "fake-esis")
        }
        took = wait_healthy(ids["api"], started, "compose service api")
        if not running(ids["worker"]):
            raise SystemExit("image-test: the compose worker stopped")
        operator = sh(
            [*files, "exec", "-T", "api", "esis-sync", "create-operator-key", "--name", "smoke"],
            env=env,
        ).strip()
        wait_for_fake(fake, fake_port)
        smoke(f"http://{HOST}:{api_port}", operator.splitlines()[-1], fake, fake_port)
        check_uids(list(ids.values()))
        return took


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(f"image-test: stopped by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", choices=["run", "compose"])
    parser.add_argument("--no-build", action="store_true", help="use the image as it is")
    options = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    image = os.environ.get("ESIS_SYNC_IMAGE", "esis-sync:image-test")
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        say("docker info fails: is the Docker engine running?")
        return 1
    figures: dict[str, float] = {}
    if not options.no_build:
        figures["build"] = build(image)
        figures["build again (cached)"] = build(image)
    if options.only in (None, "run"):
        figures["healthy (docker run)"] = run_containers(image)
    if options.only in (None, "compose"):
        figures["healthy (compose)"] = run_compose(image)
    say("passed: " + ", ".join(f"{k} {v:.1f} s" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
