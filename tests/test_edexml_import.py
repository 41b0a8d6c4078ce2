"""EDEXml imports before activation, and activation after EDEXml (R2) with the official sample."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import SchoolKeys, auth, make_school
from tests.merge_helpers import counts, one, rows

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "edexml" / "guardians-2.1.xml"
OFFICIAL = (
    ROOT / "tests" / "fixtures" / "edexml" / "official" / "EDEXML-2.1" / "EDEXML.Voorbeeld.2.1.xml"
)


def _import(client: TestClient, school: SchoolKeys, body: bytes, query: str = "") -> Response:
    response: Response = client.post(
        f"/api/v1/schools/{school.key}/imports/edexml{query}",
        content=body,
        headers={**auth(school.admin), "content-type": "application/xml"},
    )
    return response


def _with_emails(body: bytes) -> bytes:
    """The fixture has one guardian without e-mail; give it one so the school is ready (R1)."""
    return body.replace(
        b"<voorletters>K</voorletters>",
        b"<voorletters>K</voorletters><emailadres>k@example.nl</emailadres>",
    )


def test_import_creates_edexml_records(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db)
    response = _import(client, school, FIXTURE.read_bytes())
    assert response.status_code == 201, response.text
    run = response.json()
    assert (run["kind"], run["status"]) == ("import", "applied")
    students = rows(db, "student")
    assert students
    assert {s["source"] for s in students} == {"edexml"}
    assert counts(run, "student")["added"] == len(students)
    assert {e["source"] for e in rows(db, "event") if e["kind"] == "created"} >= {"edexml"}
    assert any("skipped" in w for w in run["warnings"])


def test_a_later_file_updates_unedited_fields_and_reports_absent_records(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    first = FIXTURE.read_bytes()
    assert _import(client, school, first).status_code == 201
    student = one(db, "student", esis_key="00001")
    edited = client.patch(
        f"/api/v1/schools/{school.key}/students/{student['id']}",
        json={"given_name": "Sannie"},
        headers=auth(school.admin),
    )
    assert edited.status_code == 200
    later = first.replace(b"<roepnaam>Sanne</roepnaam>", b"<roepnaam>Suzanne</roepnaam>")
    later = later.replace(
        b"<voornamen>Sanne Maria</voornamen>", b"<voornamen>Suzanne Maria</voornamen>"
    )
    later = re.sub(rb'<leerling key="00002".*?</leerling>', b"", later, flags=re.DOTALL)
    run = _import(client, school, later).json()
    assert run["status"] == "applied", run
    kept = one(db, "student", id=student["id"])
    assert kept["given_name"] == "Sannie"  # edited locally: kept
    assert kept["first_names"] == "Suzanne Maria"  # never edited: follows the file
    assert [a["key"] for a in run["report"]["absent"] if a["entity"] == "student"] == ["00002"]
    assert one(db, "student", esis_key="00002")["deleted_at"] is None
    removed = _import(client, school, later, "?remove_missing=true").json()
    assert removed["report"]["removed"] >= 1
    assert one(db, "student", esis_key="00002")["deleted_at"] is not None


def test_import_is_refused_after_activation(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db)
    body = _with_emails(FIXTURE.read_bytes())
    client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=body,
        headers={**auth(school.esis), "content-type": "application/xml"},
    )
    activated = client.post(
        f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
    )
    assert activated.status_code == 201, activated.text
    refused = _import(client, school, body)
    assert refused.status_code == 409
    assert "R4" in refused.json()["detail"]


def test_hostile_or_broken_files_are_4xx_and_nothing_is_stored(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    hostile = [
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<EDEX>&e;</EDEX>",
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b"<EDEX>&b;</EDEX>",
        FIXTURE.read_bytes()[:2000],
        b"<NOTEDEX/>",
        b"this is not xml",
    ]
    for body in hostile:
        response = _import(client, school, body)
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"] == "application/problem+json"
    wrong_type = client.post(
        f"/api/v1/schools/{school.key}/imports/edexml",
        content=b"{}",
        headers={**auth(school.admin), "content-type": "application/json"},
    )
    assert wrong_type.status_code == 415
    assert rows(db, "snapshot") == []
    assert rows(db, "student") == []


def _with_guardians(body: bytes) -> bytes:
    """The official sample with a guardian block under every student (ESIS's extension)."""
    counter = iter(range(1, 10_000))

    def add(match: re.Match[bytes]) -> bytes:
        n = next(counter)
        blok = (
            b'<blok xsi:type="VerzorgersGegevensType"><code>verzorgers</code>'
            b'<verzorger key="V%04d"><relatie>moeder</relatie><achternaam>Ouder</achternaam>'
            b"<emailadres>ouder%d@example.nl</emailadres></verzorger></blok>" % (n, n)
        )
        leerling = match.group(0)
        if b"<toevoegingen>" in leerling:  # join the vendor blocks already there
            return leerling.replace(b"<toevoegingen>", b"<toevoegingen>" + blok, 1)
        # The schema puts toevoegingen just before a leerling's mutatiedatum, if any.
        block = b"<toevoegingen>" + blok + b"</toevoegingen>"
        return re.sub(
            rb"(<mutatiedatum>|</leerling>)", lambda m: block + m.group(1), leerling, count=1
        )

    return re.sub(rb"<leerling [^>]*>.*?</leerling>", add, body, flags=re.DOTALL)


def test_r2_activation_after_edexml_matches_every_record_of_the_official_sample(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db, brin="99ZZ")
    official = OFFICIAL.read_bytes()
    imported = _import(client, school, official)
    assert imported.status_code == 201, imported.text
    before = {name: len(rows(db, name)) for name in ("student", "school_group", "staff")}
    esis = _with_guardians(official)
    pushed = client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=esis,
        headers={**auth(school.esis), "content-type": "application/xml"},
    )
    assert pushed.status_code == 201, pushed.text
    activated = client.post(
        f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
    )
    assert activated.status_code == 201, activated.text
    report = activated.json()["report"]
    after = {name: len(rows(db, name)) for name in ("student", "school_group", "staff")}
    assert after == before  # no duplicates
    matched = {(m["entity"], m["by"]) for m in report["matched"]}
    assert matched == {("student", "key"), ("group", "key"), ("staff", "key")}
    assert len(report["matched"]) == sum(before.values())
    assert report["unmatched"] == []
    assert {m["entity"] for m in report["created"]} == {"guardian"}
    assert {s["source"] for s in rows(db, "student")} == {"esis"}


def test_cli_imports_a_file(tmp_path: Path) -> None:
    env = {**os.environ, "ESIS_SYNC_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=120,
            check=False,
        )

    assert cli("migrate").returncode == 0
    assert cli("create-school", "12AB", "De Regenboog").returncode == 0
    done = cli("import-edexml", "12AB00", str(FIXTURE))
    assert done.returncode == 0, done.stderr
    assert "imported" in done.stdout
    wrong = cli("import-edexml", "99ZZ00", str(FIXTURE))
    assert wrong.returncode == 1


def test_export_route_round_trips_the_school(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db)
    assert _import(client, school, FIXTURE.read_bytes()).status_code == 201
    exported = client.get(
        f"/api/v1/schools/{school.key}/exports/edexml", headers=auth(school.admin)
    )
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("application/xml")
    from app.esis.edexml import read_edexml

    again = read_edexml(exported.content).snapshot
    assert {s.key for s in again.students} == {s["esis_key"] for s in rows(db, "student")}
    reader = client.get(f"/api/v1/schools/{school.key}/exports/edexml", headers=auth(school.reader))
    assert reader.status_code == 403  # personal data of the whole school: admins only


def test_a_claimed_2_gb_body_is_refused_before_it_is_read(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    response = client.post(
        f"/api/v1/schools/{school.key}/imports/edexml",
        content=b"<EDEX/>",
        headers={
            **auth(school.admin),
            "content-type": "application/xml",
            "content-length": str(2 * 1024**3),
        },
    )
    assert response.status_code == 413
    assert rows(db, "snapshot") == []
