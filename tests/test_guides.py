"""The operator and integrator guides say what the service does: every command, setting and
path they name exists, and their Python examples run against the real app."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.auth.models import Role
from app.auth.service import create_key
from app.cli import cli
from app.config import Settings
from app.coupling import signing
from app.main import create_app
from app.migrations import upgrade

ROOT = Path(__file__).resolve().parent.parent
OPERATOR_MD = ROOT / "docs" / "operator.md"
INTEGRATOR_MD = ROOT / "docs" / "integrator.md"
GUIDES = (OPERATOR_MD, INTEGRATOR_MD)

FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
# `esis-sync <command> [<subcommand>]`, as typed (not `esis-sync.db` or `/srv/esis-sync/`).
COMMAND = re.compile(r"(?:^|[\s/`(])esis-sync[ \t]+([a-z][a-z0-9-]*)(?:[ \t]+([a-z][a-z0-9-]*))?")
SETTING = re.compile(r"\bESIS_SYNC_[A-Z0-9_]*[A-Z0-9]")
API_PATH = re.compile(r"/api/v1/[A-Za-z0-9_{}$<>.\-/…]*")
PROSE_CALL = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE) (/api/v1/[^\s`]*)")
PLACEHOLDER = re.compile(r"^(\{[^}]*\}|<[^>]*>|\$\{?\w+\}?)$")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _fenced(text: str, *languages: str) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if not languages or lang in languages]


def _code(text: str) -> list[str]:
    """Fenced blocks and inline code spans: where commands are written to be typed."""
    inline = re.findall(r"`([^`\n]+)`", FENCE.sub("", text))
    return _fenced(text) + inline


def _shell_lines(text: str) -> list[str]:
    """Logical lines of the shell blocks, continuation lines joined."""
    lines: list[str] = []
    for block in _fenced(text, "sh"):
        lines += block.replace("\\\n", " ").splitlines()
    return lines


# --- commands -------------------------------------------------------------------------------


def _subcommands(command: Any) -> dict[str, Any]:
    """A command group's commands by name; {} for a plain command."""
    return dict(getattr(command, "commands", {}))


def _options(command: Any) -> set[str]:
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


def _mentioned_commands(text: str) -> list[tuple[str, str | None, str]]:
    """(command, next word, the rest of the line before a comment) per mention."""
    found = []
    for snippet in _code(text):
        for line in snippet.splitlines():
            for match in COMMAND.finditer(line):
                rest = re.split(r"\s#|;|&&|\|", line[match.end() :], maxsplit=1)[0]
                found.append((match.group(1), match.group(2), rest))
    return found


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_every_command_named_exists_with_its_options(guide: Path) -> None:
    commands = _subcommands(typer.main.get_command(cli))
    assert {"migrate", "serve", "purge"} <= set(commands)
    for name, word, rest in _mentioned_commands(_text(guide)):
        assert name in commands, f"{guide.name}: `esis-sync {name}` is not a command"
        command = commands[name]
        if _subcommands(command):
            assert word in _subcommands(command), f"{guide.name}: `esis-sync {name} {word}`"
            command = _subcommands(command)[word]
        for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", rest):
            assert option in _options(command) | {"--help"}, (
                f"{guide.name}: `esis-sync {name}` has no option {option}"
            )


def test_the_operator_guide_covers_the_operator_commands() -> None:
    named = {name for name, _word, _rest in _mentioned_commands(_text(OPERATOR_MD))}
    assert {
        "migrate",
        "serve",
        "worker",
        "create-operator-key",
        "create-school",
        "pull",
        "purge",
        "generate-secret-key",
        "year-transition",
    } <= named


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_every_setting_named_exists(guide: Path) -> None:
    named = set(SETTING.findall(_text(guide)))
    unknown = {
        n for n in named if n.removeprefix("ESIS_SYNC_").lower() not in Settings.model_fields
    }
    assert not unknown, f"{guide.name} names settings that do not exist: {sorted(unknown)}"


def test_the_operator_guide_names_the_essential_settings() -> None:
    named = set(SETTING.findall(_text(OPERATOR_MD)))
    assert {
        "ESIS_SYNC_DATABASE_URL",
        "ESIS_SYNC_SECRET_KEY",
        "ESIS_SYNC_MAX_UPLOAD_BYTES",
        "ESIS_SYNC_MAX_SNAPSHOT_RECORDS",
        "ESIS_SYNC_PUSH_RATE_PER_MINUTE",
        "ESIS_SYNC_RETENTION_DAYS",
    } <= named


# --- paths ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bare_app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """The app's routes; creating it needs no migrated database."""
    url = f"sqlite:///{tmp_path_factory.mktemp('routes') / 'x.db'}"
    return create_app(Settings(database_url=url, _env_file=None))


def _routes(app: FastAPI) -> list[tuple[list[str], set[str]]]:
    """Each path of the app (from its OpenAPI document) as segments, with its methods."""
    verbs = {"get", "post", "put", "patch", "delete"}
    return [
        (path.strip("/").split("/"), {m.upper() for m in item if m in verbs})
        for path, item in app.openapi()["paths"].items()
    ]


def _normalize(path: str) -> str | None:
    """The path part of a mention; None for an abbreviation (`…/`)."""
    if "..." in path or "…" in path:
        return None
    return path.rstrip("./")


def _methods_of(app: FastAPI, path: str) -> set[str]:
    """Methods of every route the path matches. A route's `{param}` matches any segment; a
    placeholder in the guide (`{school}`, `$ID`, `<id>`) matches only a route's parameter."""
    parts = path.strip("/").split("/")
    methods: set[str] = set()
    for template, route_methods in _routes(app):
        if len(template) != len(parts):
            continue
        if all(
            t == p or (t.startswith("{") and t.endswith("}"))
            for t, p in zip(template, parts, strict=True)
        ) and not any(
            PLACEHOLDER.match(p) and not t.startswith("{")
            for t, p in zip(template, parts, strict=True)
        ):
            methods |= route_methods
    return methods


def _curl_calls(text: str) -> list[tuple[str, str]]:
    """(method, path) of every curl call in the shell blocks."""
    calls = []
    for line in _shell_lines(text):
        if not re.search(r"\bcurl\b", line):
            continue
        found = API_PATH.search(line) or re.search(r"/(healthz|readyz|metrics)\b", line)
        assert found is not None, f"a curl line without a service path: {line}"
        explicit = re.search(r"-X\s+([A-Z]+)", line)
        sends = re.search(r"\s(-d|--data|--data-binary)\s", line)
        method = explicit.group(1) if explicit else ("POST" if sends else "GET")
        calls.append((method, found.group(0)))
    return calls


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_every_api_path_named_is_a_route(bare_app: FastAPI, guide: Path) -> None:
    paths = {_normalize(p) for p in API_PATH.findall(_text(guide))} - {None}
    assert len(paths) >= 8, f"{guide.name}: too few paths found; is the pattern still right?"
    for path in paths:
        assert path is not None
        assert _methods_of(bare_app, path), f"{guide.name}: {path} is not a route of the app"


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_every_curl_and_named_call_uses_a_method_the_route_has(
    bare_app: FastAPI, guide: Path
) -> None:
    text = _text(guide)
    calls = _curl_calls(text) + PROSE_CALL.findall(text)
    assert len(calls) >= 8
    for method, raw in calls:
        path = _normalize(raw.split("?", 1)[0])
        if path is None:
            continue
        assert method in _methods_of(bare_app, path), f"{guide.name}: {method} {path}"


def test_the_health_endpoints_named_exist(bare_app: FastAPI) -> None:
    text = _text(OPERATOR_MD)
    for path in ("/healthz", "/readyz", "/metrics"):
        assert f"`{path}`" in text
        assert "GET" in _methods_of(bare_app, path), path


def test_every_python_example_compiles() -> None:
    blocks = _fenced(_text(INTEGRATOR_MD), "python")
    assert len(blocks) >= 3
    for number, block in enumerate(blocks):
        compile(block, f"integrator.md python block {number}", "exec")


# --- the Python examples, run ----------------------------------------------------------------


def _example(defines: str) -> dict[str, Any]:
    """Run the guide's Python block that defines `defines`, as a module (not as __main__)."""
    blocks = [b for b in _fenced(_text(INTEGRATOR_MD), "python") if f"def {defines}(" in b]
    assert len(blocks) == 1, f"integrator.md: one python block should define {defines}()"
    namespace: dict[str, Any] = {"__name__": "integrator_example"}
    exec(compile(blocks[0], f"integrator.md:{defines}", "exec"), namespace)
    return namespace


def test_the_signing_example_agrees_with_the_service() -> None:
    sign = _example("sign")["sign"]
    cases = [
        ("msg_2Qx", 1_764_340_000, b'{"school": {"brin": "12AB"}}'),
        ("b6a0c6b2-13f4-4d0e-9c1e-0b6f0f1c9a55", 1_700_000_000, b"<EDEX>\n\xc3\xa9</EDEX>\r\n"),
        ("x", 0, b""),
    ]
    for msg_id, timestamp, body in cases:
        secret = signing.PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
        ours = sign(secret, msg_id, timestamp, body)
        assert ours.startswith("v1,")
        assert ours == signing.sign(secret, msg_id, timestamp, body)
        assert ours != signing.sign(secret, msg_id, timestamp + 1, body)


@dataclass(frozen=True)
class Service:
    client: TestClient
    operator: str


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The real app on a migrated SQLite database, with an operator key."""
    url = f"sqlite:///{tmp_path_factory.mktemp('guides') / 'guides.db'}"
    upgrade(url)
    app = create_app(Settings(database_url=url, _env_file=None))
    with app.state.sessionmaker.begin() as session:
        _key, operator = create_key(
            session=session, role=Role.OPERATOR, name="guides", school_id=None, created_by="test"
        )
    with TestClient(app) as client:
        yield Service(client=client, operator=operator)
    app.state.engine.dispose()


def _school(service: Service, brin: str) -> dict[str, str]:
    """A school and one key per role; returns the secrets by role."""
    op = {"Authorization": f"Bearer {service.operator}"}
    made = service.client.post("/api/v1/schools", headers=op, json={"brin": brin, "name": brin})
    assert made.status_code == 201, made.text
    keys = {}
    for role in ("admin", "reader", "esis"):
        key = service.client.post(
            f"/api/v1/schools/{brin}00/api-keys", headers=op, json={"role": role, "name": role}
        )
        assert key.status_code == 201, key.text
        keys[role] = key.json()["secret"]
    return keys


def _guide_snapshot(brin: str) -> bytes:
    """The JSON snapshot of the integrator guide, for school `brin`."""
    found = re.search(r"cat > snapshot.json <<'EOF'\n(.*?)\nEOF\n", _text(INTEGRATOR_MD), re.DOTALL)
    assert found is not None
    snapshot = json.loads(found.group(1))
    snapshot["school"]["brin"] = brin
    return json.dumps(snapshot).encode()


def test_a_push_signed_as_the_guide_shows_is_accepted(service: Service) -> None:
    keys = _school(service, "21AB")
    example = _example("signed_headers")
    made = service.client.post(
        "/api/v1/schools/21AB00/esis/signing-secrets",
        headers={"Authorization": f"Bearer {keys['admin']}"},
    )
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    body = _guide_snapshot("21AB")
    base = {"Authorization": f"Bearer {keys['esis']}", "Content-Type": "application/json"}
    url = "/api/v1/schools/21AB00/esis/snapshots"

    unsigned = service.client.post(url, content=body, headers=base)
    assert unsigned.status_code == 401
    assert unsigned.json()["type"] == "/problems/signature"

    first = service.client.post(
        url, content=body, headers={**base, **example["signed_headers"](secret, body)}
    )
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "stored"  # the coupling is not active yet

    msg_id = "msg_retry"
    again = [
        service.client.post(
            url, content=body, headers={**base, **example["signed_headers"](secret, body, msg_id)}
        )
        for _ in range(2)
    ]
    assert [r.status_code for r in again] == [200, 200]
    assert all(r.headers["Idempotent-Replayed"] == "true" for r in again)
    assert {r.json()["id"] for r in again} == {first.json()["id"]}


def test_the_retrying_push_example_pushes_once(service: Service) -> None:
    keys = _school(service, "22AB")
    push = _example("push")["push"]
    body = _guide_snapshot("22AB")
    client = service.client
    client.headers["Authorization"] = f"Bearer {keys['esis']}"
    try:
        first = push(client, "22AB00", body, "esis-22AB00-2026-11-28")
        again = push(client, "22AB00", body, "esis-22AB00-2026-11-28")
        other = push(client, "22AB00", body.replace(b"Sanne", b"Sanna"), "esis-22AB00-2026-11-28")
    finally:
        del client.headers["Authorization"]
    assert first.status_code == 201, first.text
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (200, "true")
    assert again.json()["id"] == first.json()["id"]
    assert other.status_code == 409  # the key was used with another body: not retried
    assert other.json()["type"] == "/problems/conflict"


def test_the_feed_example_reads_every_event_once_and_resumes(
    service: Service, tmp_path: Path
) -> None:
    keys = _school(service, "23AB")
    feed = _example("catch_up")
    seen: list[dict[str, Any]] = []
    feed["SCHOOL"] = "23AB00"
    feed["CURSOR_FILE"] = tmp_path / "events.cursor"
    feed["PAGE"] = 2  # several pages, and one that is not full
    feed["handle"] = seen.append
    client = service.client
    client.headers["Authorization"] = f"Bearer {keys['reader']}"
    try:
        handled = feed["catch_up"](client)
        assert handled == len(seen) >= 4  # the school and its three keys
        assert [e["seq"] for e in seen] == list(range(1, handled + 1))
        assert feed["CURSOR_FILE"].read_text()

        assert feed["catch_up"](client) == 0  # nothing new: nothing handled again

        renamed = client.patch(
            "/api/v1/schools/23AB00",
            json={"name": "De Linde"},
            headers={"Authorization": f"Bearer {keys['admin']}"},
        )
        assert renamed.status_code == 200, renamed.text
        assert feed["catch_up"](client) == 1  # resumes from the stored cursor
    finally:
        del client.headers["Authorization"]
    assert seen[-1]["seq"] == handled + 1
    assert (seen[-1]["entity"], seen[-1]["kind"]) == ("school", "updated")
