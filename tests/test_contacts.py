"""Guardian contact files (CSV), on both databases, through HTTP, a pull from the fake ESIS and
the command line: readiness (R1) and the match at activation (R2) for a school whose ESIS sends
no guardians; additions and corrections after activation; ESIS leads where it sends guardians."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from app.cli import cli
from app.config import get_settings
from tests.factories import SchoolKeys, auth, make_school
from tests.merge_helpers import FakeEsisPulls, activate, push, rows
from tests.snapshots import Snapshot, school_snapshot

SAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "contacts.csv"
TABLES = ("guardian", "student_guardian", "event", "contact_file")


def _no_guardians(snap: Snapshot) -> Snapshot:
    out = copy.deepcopy(snap)
    del out["guardians"]
    return out


def upload(
    client: TestClient, school: SchoolKeys, body: bytes, *, dry_run: bool = False
) -> Response:
    response: Response = client.post(
        f"/api/v1/schools/{school.key}/imports/contacts",
        params={"dry_run": "true"} if dry_run else {},
        content=body,
        headers={**auth(school.admin), "content-type": "text/csv"},
    )
    return response


def _readiness(client: TestClient, school: SchoolKeys) -> dict[str, Any]:
    response = client.get(
        f"/api/v1/schools/{school.key}/esis/readiness", headers=auth(school.admin)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _state(db: sessionmaker[Session]) -> dict[str, int]:
    return {table: len(rows(db, table)) for table in TABLES}


def test_r1_r2_a_pull_only_school_becomes_ready_from_a_contact_file_and_activates(
    client: TestClient, db: sessionmaker[Session], fake_esis_pulls: FakeEsisPulls
) -> None:
    school = make_school(client, db)
    fake_esis_pulls.connect(client, school)
    pulled = fake_esis_pulls.pull(client, school, _no_guardians(school_snapshot(students=4)))
    assert pulled.status_code == 201, pulled.text
    assert pulled.json()["status"] == "stored"
    before = _readiness(client, school)
    assert not before["ready"]
    assert before["students_without_guardian"]["count"] == 4
    refused = client.post(
        f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
    )
    assert refused.status_code == 409

    kept = upload(client, school, SAMPLE.read_bytes())
    assert kept.status_code == 200, kept.text
    assert kept.json() | {"students": 4, "guardians": 3} == kept.json()
    assert kept.json()["applied"] is False
    assert not rows(db, "guardian")  # kept for activation, not yet in the roster
    assert _readiness(client, school)["ready"] is True

    activated = client.post(
        f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
    )
    assert activated.status_code == 201, activated.text
    report = activated.json()["report"]["contacts"]
    # Ouder3 is one guardian of two students (one e-mail address): 3 guardians, 4 links.
    assert report["counts"] == {
        "matched": 0,
        "created": 3,
        "updated": 0,
        "links_added": 4,
        "unmatched": 0,
    }
    assert [c["line"] for c in report["created"]] == [2, 3, 4]
    guardians = rows(db, "guardian")
    assert {g["source"] for g in guardians} == {"contacts"}
    assert {g["last_name"] for g in guardians} == {"Ouder1", "Müller", "Ouder3"}
    events = [e for e in rows(db, "event") if e["entity"] in ("guardian", "student_guardian")]
    assert len(events) == 7 and {e["source"] for e in events} == {"contacts"}
    actors = {e["actor"] for e in events}
    assert len(actors) == 1 and "esis" not in actors  # the admin who uploaded the file
    marks = [m["by"] for g in guardians for m in g["local_edits"].values()]
    assert marks and set(marks) == actors  # R5: edits, so ESIS would not overwrite them
    assert {link["relation"] for link in rows(db, "student_guardian")} == {
        "mother",
        "father",
        "caregiver",
    }
    assert not rows(db, "contact_file")  # matched: its job is done

    # The next day's pull (still no guardians) leaves them exactly as they are.
    later = fake_esis_pulls.pull(client, school, _no_guardians(school_snapshot(students=4)))
    assert later.status_code == 201, later.text
    assert all(g["missing_in_esis_since"] is None for g in rows(db, "guardian"))


def _active_without_guardians(
    client: TestClient, db: sessionmaker[Session]
) -> tuple[SchoolKeys, Snapshot]:
    school = make_school(client, db)
    snap = _no_guardians(school_snapshot(students=4))
    stored = push(client, school, snap)
    assert stored.json()["status"] == "stored", stored.text
    assert upload(client, school, SAMPLE.read_bytes()).status_code == 200
    response = client.post(
        f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
    )
    assert response.status_code == 201, response.text
    return school, snap


def test_r4_after_activation_a_contact_file_adds_and_corrects_guardians(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, _ = _active_without_guardians(client, db)
    body = (
        b"student_key,last_name,given_name,relation,email,phone\n"
        b"S0001,Ouder1,Anna,mother,ouder1@example.nl,0201234567\n"  # corrects the phone
        b"S0002,Jansen,Piet,father,piet@example.nl,\n"  # a second guardian for S0002
    )
    before = _state(db)
    preview = upload(client, school, body, dry_run=True)
    assert preview.status_code == 200, preview.text
    assert (
        preview.json()["report"]["counts"] | {"created": 1, "updated": 1}
        == (preview.json()["report"]["counts"])
    )
    assert _state(db) == before  # a dry run writes nothing

    done = upload(client, school, body)
    assert done.status_code == 200, done.text
    report = done.json()["report"]
    assert report["counts"]["matched"] == 1 and report["counts"]["created"] == 1
    assert report["updated"][0]["fields"] == ["phone"]
    anna = next(g for g in rows(db, "guardian") if g["given_name"] == "Anna")
    assert anna["phone"] == "0201234567"
    assert "phone" in anna["local_edits"]
    piet = next(g for g in rows(db, "guardian") if g["given_name"] == "Piet")
    assert piet["source"] == "contacts"
    assert len(rows(db, "student_guardian")) == 5


def test_r4_a_school_whose_esis_sends_guardians_refuses_contact_files(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    activate(client, school, school_snapshot(students=4))
    before = _state(db)
    refused = upload(client, school, SAMPLE.read_bytes())
    assert refused.status_code == 409, refused.text
    assert "ESIS leads for guardians" in refused.json()["detail"]
    assert _state(db) == before


HEADER_EN = "Student key,Last name,Given name,Relation,E-mail,Phone\n"
HEADER_NL = "LEERLINGNUMMER;ACHTERNAAM;ROEPNAAM;RELATIE;E-MAIL;TELEFOON\n"


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ((HEADER_EN + "S0001,Çelik,Ayşe,mother,a@example.nl,\n").encode(), "Çelik"),
        ((HEADER_EN + "S0001,Çelik,Ayşe,mother,a@example.nl,\n").encode("utf-8-sig"), "Çelik"),
        ((HEADER_NL + "S0001;Müller;Jürgen;vader;j@example.nl;\n").encode("cp1252"), "Müller"),
        ((HEADER_NL + "S0001;Müller;Jürgen;vader;j@example.nl;\r\n").encode("utf-8"), "Müller"),
    ],
    ids=["utf8-comma", "utf8-bom", "cp1252-semicolon", "utf8-semicolon-crlf"],
)
def test_contact_files_in_each_encoding_and_separator(
    client: TestClient, db: sessionmaker[Session], body: bytes, name: str
) -> None:
    school, _ = _active_without_guardians(client, db)
    done = upload(client, school, body)
    assert done.status_code == 200, done.text
    assert done.json()["report"]["counts"]["created"] == 1
    assert name in {g["last_name"] for g in rows(db, "guardian")}


def test_a_bad_contact_file_is_refused_with_every_line_and_column(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, _ = _active_without_guardians(client, db)
    body = (
        b"leerlingnummer;achternaam leerling;geboortedatum;achternaam;relatie;e-mail\n"
        b"S0001;;;Goed;moeder;goed@example.nl\n"
        b"S9999;;;Onbekend;vader;x@example.nl\n"
        b";Leerling2;30-02-2017;Datum;vader;d@example.nl\n"
        b"S0003;;;Relatie;oom;r@example.nl\n"
        b"S0004;;;Adres;moeder;geen-adres\n"
        b";Niemand;01-01-2017;Zoek;moeder;z@example.nl\n"
    )
    before = _state(db)
    refused = upload(client, school, body)
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["type"].endswith("/problems/validation")
    found = {(e["line"], e["column"]) for e in problem["errors"]}
    assert {(4, 3), (5, 5), (6, 6)} <= found  # date, relation, e-mail: found while reading
    assert _state(db) == before  # nothing applied

    # Readable rows whose student cannot be found are listed too, never guessed.
    unknown = (
        b"leerlingnummer;achternaam leerling;geboortedatum;achternaam\n"
        b"S0001;;;Goed\n"
        b"S9999;;;Onbekend\n"
        b";Niemand;01-01-2017;Zoek\n"
    )
    refused = upload(client, school, unknown)
    assert refused.status_code == 422, refused.text
    assert [(e["line"], e["column"]) for e in refused.json()["errors"]] == [(3, 1), (4, 2)]
    assert _state(db) == before


def test_two_students_with_the_same_name_and_birth_date_are_not_guessed(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = _no_guardians(school_snapshot(students=2))
    snap["students"][1] |= {"last_name": "Leerling1", "birth_date": "2017-02-11"}
    assert push(client, school, snap).status_code in (200, 201, 202)
    refused = upload(
        client, school, b"achternaam leerling,geboortedatum,achternaam\nLeerling1,2017-02-11,X\n"
    )
    assert refused.status_code == 422, refused.text
    assert "2 students" in refused.json()["errors"][0]["message"]
    assert not rows(db, "contact_file")


def test_contact_file_limits_and_shape(client: TestClient, db: sessionmaker[Session]) -> None:
    school, _ = _active_without_guardians(client, db)
    wrong_type = client.post(
        f"/api/v1/schools/{school.key}/imports/contacts",
        content=b"x",
        headers={**auth(school.admin), "content-type": "application/json"},
    )
    assert wrong_type.status_code == 415
    too_big = upload(client, school, b"leerlingnummer,achternaam\n" + b"S0001,X\n" * 300_000)
    assert too_big.status_code == 413, too_big.text
    no_header = upload(client, school, b"voornaam,kleur\nA,rood\n")
    assert no_header.status_code == 422
    assert {e["message"] for e in no_header.json()["errors"]} >= {"unknown column 'kleur'"}
    reader = client.post(
        f"/api/v1/schools/{school.key}/imports/contacts",
        content=SAMPLE.read_bytes(),
        headers={**auth(school.reader), "content-type": "text/csv"},
    )
    assert reader.status_code == 403


@pytest.fixture
def run(database_url: str) -> Iterator[Callable[..., Result]]:
    runner = CliRunner()
    env = {
        "ESIS_SYNC_DATABASE_URL": database_url,
        "ESIS_SYNC_SECRET_KEY": Fernet.generate_key().decode(),
    }

    def invoke(*args: str) -> Result:
        get_settings.cache_clear()
        return runner.invoke(cli, list(args), env=env)

    yield invoke
    get_settings.cache_clear()


def test_cli_import_contacts(
    client: TestClient, db: sessionmaker[Session], run: Callable[..., Result], tmp_path: Path
) -> None:
    school = make_school(client, db)
    assert push(client, school, _no_guardians(school_snapshot(students=4))).status_code in (
        200,
        201,
        202,
    )
    dry = run("import-contacts", school.key, str(SAMPLE), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run" in dry.stdout and not rows(db, "contact_file")
    kept = run("import-contacts", school.key, str(SAMPLE))
    assert kept.exit_code == 0, kept.output
    assert "4 rows kept for activation: 3 guardians of 4 students" in kept.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("leerlingnummer;achternaam\nS9999;X\n")
    refused = run("import-contacts", school.key, str(bad))
    assert refused.exit_code == 1
    assert "line 2, column 1" in refused.output
