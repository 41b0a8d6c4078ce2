"""The OpenAPI document, taken whole by a client generator, drives the real service.

`openapi-python-client` generates a client from `app.openapi()` once per session and must
not warn (a warning means an operation or a response was dropped). Then the coupling's main
path runs against `esis-sync serve` on a free port, through nothing but the generated code:
push, readiness, activation, a paged list, PATCH with `If-Match`, drift and the events.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from app.config import Settings
from app.main import create_app
from tests import procs
from tests.snapshots import changed, find, school_snapshot

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "docs" / "openapi-python-client.yaml"
PACKAGE = "esis_sync_client"


def _spec(directory: Path) -> dict[str, Any]:
    app = create_app(Settings(database_url=f"sqlite:///{directory / 'spec.db'}"))
    return app.openapi()


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ModuleType]]:
    """The generator's output and the generated package, imported from a temporary dir."""
    directory = tmp_path_factory.mktemp("client")
    spec = directory / "openapi.json"
    spec.write_text(json.dumps(_spec(directory)))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--output-path",
            str(directory / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(CONFIG),
            "--fail-on-warning",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    sys.path.insert(0, str(directory))
    try:
        package = importlib.import_module(PACKAGE) if done.returncode == 0 else ModuleType("x")
        yield output + f"\n(exit {done.returncode})", package
    finally:
        sys.path.remove(str(directory))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _op(tag: str, name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.api.{tag}.{name}")


def _model(name: str) -> Any:
    return getattr(importlib.import_module(f"{PACKAGE}.models"), name)


def test_the_generator_takes_every_operation_without_a_warning(
    generated: tuple[str, ModuleType],
) -> None:
    output, _package = generated
    assert "(exit 0)" in output, output
    assert "WARNING" not in output.upper(), output
    assert "error" not in output.lower(), output
    # The XML operations are kept, with their real media type.
    push = Path(_op("esis", "push_snapshot").__file__).read_text()
    assert '"Content-Type"] = "application/xml"' in push
    assert _op("edexml", "import_edexml").sync_detailed is not None
    assert "File(payload=" in Path(_op("edexml", "export_edexml").__file__).read_text()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_generated_client_drives_push_activation_edits_drift_and_events(
    backend: str, generated: tuple[str, ModuleType], tmp_path: Path
) -> None:
    output, package = generated
    assert "(exit 0)" in output, output
    with procs.fresh_database(backend, tmp_path) as url:
        operator_secret = procs.operator_key(url)
        with procs.running(url, tmp_path / "logs") as service:
            _drive(package, service.base_url, operator_secret)


def _drive(package: ModuleType, base_url: str, operator_secret: str) -> None:
    def client(token: str) -> Any:
        return package.AuthenticatedClient(
            base_url=base_url, token=token, raise_on_unexpected_status=True
        )

    operator = client(operator_secret)
    school = _op("schools", "create_school").sync(
        client=operator, body=_model("SchoolCreate")(brin="12AB", name="De Regenboog")
    )
    assert school.key == "12AB00"

    def key(role: str) -> str:
        made = _op("schools", "create_api_key").sync(
            "12AB00",
            client=operator,
            body=_model("ApiKeyCreate")(role=_model("Role")(role), name=role),
        )
        return str(made.secret)

    esis, admin = client(key("esis")), client(key("admin"))

    snap = school_snapshot(students=5)
    pushed = _op("esis", "push_snapshot").sync_detailed(
        "12AB00", client=esis, body=_model("EsisSnapshot").from_dict(snap)
    )
    assert pushed.status_code == 201, pushed.content
    assert pushed.parsed.status.value == "stored"
    assert pushed.headers["X-Request-ID"]

    readiness = _op("esis", "get_activation_readiness").sync("12AB00", client=admin)
    assert readiness.ready is True
    assert readiness.students_without_guardian.count == 0

    run = _op("esis", "activate_coupling").sync("12AB00", client=admin)
    assert run.kind.value == "activation"
    assert run.counts["student"].added == 5

    keys: list[str] = []
    cursor: Any = package.types.UNSET
    while True:
        page = _op("roster", "list_students").sync("12AB00", client=admin, limit=2, cursor=cursor)
        keys += [s.provenance.esis_key for s in page.items]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert sorted(keys) == [f"S{i:04d}" for i in range(1, 6)]  # each once, none skipped

    guardians = _op("roster", "list_guardians").sync("12AB00", client=admin, q="ouder1@")
    guardian_id = guardians.items[0].id
    read = _op("roster", "get_guardian").sync_detailed("12AB00", guardian_id, client=admin)
    etag = read.headers["ETag"]
    edit = _model("GuardianUpdate")(phone="+31600000001")
    patched = _op("roster", "update_guardian").sync_detailed(
        "12AB00", guardian_id, client=admin, body=edit, if_match=etag
    )
    assert patched.status_code == 200
    assert patched.parsed.phone == "+31600000001"
    stale = _op("roster", "update_guardian").sync_detailed(
        "12AB00", guardian_id, client=admin, body=edit, if_match=etag
    )
    assert stale.status_code == 412
    assert stale.parsed.type_ == "/problems/precondition-failed"
    assert stale.parsed.current_etag == patched.headers["ETag"]

    # ESIS changes the phone that was edited here: R5 keeps ours and shows drift.
    later = changed(snap)
    find(later, "guardians", "V0001")["phone"] = "+31699999999"
    again = _op("esis", "push_snapshot").sync(
        "12AB00", client=esis, body=_model("EsisSnapshot").from_dict(later)
    )
    assert again.status.value == "applied"
    drift = _op("sync", "list_drift").sync("12AB00", client=admin, field="phone")
    assert [(d.our_value, d.esis_value) for d in drift.items] == [("+31600000001", "+31699999999")]

    events = _op("events", "list_events").sync(
        "12AB00", client=admin, entity_id=guardian_id, limit=1000
    )
    kinds = [e.kind for e in events.items]
    assert "updated" in kinds and "drift-opened" in kinds
    opened = next(e for e in events.items if e.kind == "drift-opened")
    assert opened.changes["phone"].esis == "+31699999999"
    follow = _op("events", "list_events").sync("12AB00", client=admin, after=events.next_cursor)
    assert follow.items == [] and follow.next_cursor == events.next_cursor

    exported = _op("edexml", "export_edexml").sync("12AB00", client=admin)
    assert exported.payload.read().startswith(b"<?xml")
