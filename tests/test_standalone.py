"""The project stands alone: no link, file or doc leads outside the repository, and the example
snapshots the docs show are accepted by the service as they are."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.auth.dependencies import PUSH
from app.auth.models import Role
from app.esis.edexml import read_edexml
from app.esis.schemas import EsisSnapshot
from tests.factories import auth, make_school

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"

# Only the CI script may name the machine's helper beside the clone (and only runs it when
# it is there); this file names the patterns, so it is exempt too.
ALLOWED_OUTSIDE = {".ci/run", "tests/test_standalone.py"}
OUTSIDE = re.compile("|".join(re.escape(p) for p in ("../" + "shared", "/" + "work/")))

# [text](target) and [text]: target; images too. Code spans are removed first.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


def _tracked() -> list[Path]:
    """The repository's files (git's view when there is one, else the tree minus caches)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "var", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
        return [
            p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)
        ]


def _markdown() -> list[Path]:
    return sorted(p for p in _tracked() if p.suffix == ".md")


def _links(text: str) -> list[str]:
    text = CODE.sub("", text)
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)


def broken_links(path: Path) -> list[str]:
    """Relative links of a markdown file that do not resolve to a file or folder inside the
    repository (anchors and absolute URLs are not checked here)."""
    broken = []
    for target in _links(path.read_text(encoding="utf-8")):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or target.startswith("#"):
            continue
        if not parts.path:
            continue
        resolved = (path.parent / unquote(parts.path)).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(target)
    return broken


def test_the_link_checker_finds_what_it_should() -> None:
    page = ROOT / "docs" / "_probe.md"
    text = (
        "[ok](api.md) [ok too](../README.md#quick-start) [web](https://example.org/x.md)\n"
        "[out](../../elsewhere/domain.md) [missing](nothing-here.md) `[code](nowhere.md)`\n"
        "[ref]: ../../outside.md\n"
    )
    page.write_text(text)
    try:
        expected = ["../../elsewhere/domain.md", "nothing-here.md", "../../outside.md"]
        assert broken_links(page) == expected
    finally:
        page.unlink()


def test_no_markdown_link_leaves_the_repository() -> None:
    markdown = _markdown()
    assert ROOT / "README.md" in markdown
    assert any(p.parent == ROOT / "docs" for p in markdown)
    broken = {str(p.relative_to(ROOT)): links for p in markdown if (links := broken_links(p))}
    assert broken == {}


def test_nothing_names_a_path_outside_the_repository() -> None:
    found = []
    for path in _tracked():
        rel = str(path.relative_to(ROOT))
        if rel in ALLOWED_OUTSIDE:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{rel}:{number}: {line.strip()}")
    assert found == []


def test_the_two_example_snapshots_are_the_same_school() -> None:
    """docs/examples/snapshot.json and snapshot.xml describe the same data (EDEXml has no
    school name)."""
    from_json = EsisSnapshot.model_validate_json((EXAMPLES / "snapshot.json").read_bytes())
    read = read_edexml((EXAMPLES / "snapshot.xml").read_bytes(), today=dt.date(2026, 11, 28))
    assert read.warnings == []
    assert read.snapshot.model_dump() == {
        **from_json.model_dump(),
        "school": {**from_json.school.model_dump(), "name": None},
    }
    assert from_json.guardians, "the example shows the guardian block"


def test_the_example_snapshots_push(client: TestClient, db: sessionmaker[Session]) -> None:
    """What docs/snapshot-formats.md shows is accepted as it is, in both formats."""
    school = make_school(client, db)
    pushed = client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=(EXAMPLES / "snapshot.json").read_bytes(),
        headers={**auth(school.esis), "content-type": "application/json"},
    )
    assert pushed.status_code == 201, pushed.text
    assert pushed.json()["status"] == "stored"
    xml = (EXAMPLES / "snapshot.xml").read_bytes()
    # The same data, generated a minute later: a new snapshot, not a replay.
    xml = xml.replace(b"2026-11-27T16:55:00+01:00", b"2026-11-27T16:56:00+01:00")
    pushed = client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=xml,
        headers={**auth(school.esis), "content-type": "application/xml"},
    )
    assert pushed.status_code == 201, pushed.text
    readiness = client.get(
        f"/api/v1/schools/{school.key}/esis/readiness", headers=auth(school.admin)
    )
    assert readiness.status_code == 200
    assert readiness.json()["ready"] is True, readiness.json()
    counts = json.loads((EXAMPLES / "snapshot.json").read_text())
    activated = client.post(
        f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
    )
    assert activated.status_code == 201, activated.text
    students = client.get(f"/api/v1/schools/{school.key}/students", headers=auth(school.reader))
    assert len(students.json()["items"]) == len(counts["students"])


def _role_rows(doc: Path) -> dict[str, str]:
    rows = re.findall(r"^\| `(esis|reader|admin|operator)` \| (.+) \|$", doc.read_text(), re.M)
    return dict(rows)


def test_the_roles_tables_say_only_the_esis_role_pushes(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    """An integrator read that `operator` may do everything; its push got 403."""
    assert {Role.ESIS} == PUSH
    for doc in (ROOT / "docs" / "api.md", ROOT / "docs" / "integrator.md"):
        rows = _role_rows(doc)
        assert set(rows) == {"esis", "reader", "admin", "operator"}, doc
        assert "push" in rows["esis"]
        operator = rows["operator"]
        assert "not" in operator.lower() and "push" in operator, (doc.name, operator)
        assert "403" in operator, (doc.name, operator)
    school = make_school(client, db)
    pushed = client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=(EXAMPLES / "snapshot.json").read_bytes(),
        headers={**auth(school.operator), "content-type": "application/json"},
    )
    assert pushed.status_code == 403
