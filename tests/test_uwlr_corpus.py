"""Each answer of the corpus (tests/fixtures/uwlr-corpus, see its README) pulled from the fake
ESIS, through the HTTP API, on both databases: the outcome the coupling gives it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from fake_esis.pki import pkcs12_bytes
from fake_esis.server import DEFAULT_AUTORISATIE, FakeEsis, FakeEsisKit
from tests.factories import SchoolKeys, auth, make_school
from tests.merge_helpers import activate, one, rows
from tests.snapshots import Snapshot

CORPUS = Path(__file__).resolve().parent / "fixtures" / "uwlr-corpus"


def _answer(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def _school_of_the_corpus() -> Snapshot:
    """The corpus's school as ESIS pushed it once, with guardians (for activation)."""
    return {
        "school": {"brin": "12AB", "branch": "00", "school_year": "2026-2027"},
        "groups": [
            {"key": "G5A", "name": "Groep 5a", "year_level": 5},
            {"key": "LEES1", "name": "Leesgroep 1", "is_composite": True},
        ],
        "students": [
            {"key": "00001", "last_name": "Jansen", "given_name": "Sanne", "group": "G5A"},
            {"key": "00002", "last_name": "Bos", "given_name": "Daan", "group": "G5A"},
        ],
        "guardians": [
            {
                "key": f"V{n}",
                "last_name": "Ouder",
                "email": f"ouder{n}@example.nl",
                "students": [{"student": f"0000{n}", "relation": "mother"}],
            }
            for n in (1, 2)
        ],
        "staff": [{"key": "LK01", "last_name": "Bakker", "roles": ["LRK"], "groups": ["G5A"]}],
    }


def _connect(
    client: TestClient, school: SchoolKeys, esis: FakeEsis, kit: FakeEsisKit, **certificate: Any
) -> None:
    response = client.put(
        f"/api/v1/schools/{school.key}/esis/connection",
        json={
            "url": esis.url,
            "certificate": certificate
            or {"cert_pem": kit.client.cert.decode(), "key_pem": kit.client.key.decode()},
            "ca_pem": kit.ca.cert.decode(),
            **DEFAULT_AUTORISATIE,
        },
        headers=auth(school.admin),
    )
    assert response.status_code == 200, response.text


def _active(
    client: TestClient, db: sessionmaker[Session], esis: FakeEsis, kit: FakeEsisKit
) -> SchoolKeys:
    school = make_school(client, db)
    activate(client, school, _school_of_the_corpus())
    _connect(client, school, esis, kit)
    return school


def _pull(client: TestClient, school: SchoolKeys) -> dict[str, Any]:
    response = client.post(f"/api/v1/schools/{school.key}/esis/pulls", headers=auth(school.admin))
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


def test_r3_uwlr22_answer_with_eckids_and_no_guardians(
    client: TestClient, db: sessionmaker[Session], esis: FakeEsis, kit: FakeEsisKit
) -> None:
    school = _active(client, db, esis, kit)
    esis.script("12AB", "00", answer=_answer("uwlr22-eckid-no-guardians.xml"))
    run = _pull(client, school)
    assert run["status"] == "applied", run
    assert run["warnings"] == [], "xsdversie 2.2 needs no warning"
    student = one(db, "student", esis_key="00001")
    assert student["name_prefix"] is None  # R5: ESIS's new value is drift
    assert one(db, "drift_item", record_id=student["id"], field="name_prefix")["esis_value"] == "de"
    assert "guardian" not in run["counts"]
    assert all(g["missing_in_esis_since"] is None for g in rows(db, "guardian"))
    for snapshot in rows(db, "snapshot"):
        assert b"ketenid" not in snapshot["body"], "an ECK-iD was stored"


def test_r3_geenwijzigingen_is_a_run_that_changes_nothing(
    client: TestClient, db: sessionmaker[Session], esis: FakeEsis, kit: FakeEsisKit
) -> None:
    school = _active(client, db, esis, kit)
    before = rows(db, "student")
    esis.script("12AB", "00", answer=_answer("geenwijzigingen.xml"))
    run = _pull(client, school)
    assert run["status"] == "no_changes", run
    assert run["error"] is None
    assert esis.served("12AB", "00") == 1, "not retried"
    assert rows(db, "student") == before
    listed = client.get(
        f"/api/v1/schools/{school.key}/sync-runs", headers=auth(school.admin)
    ).json()
    assert listed["items"][0]["status"] == "no_changes"


def test_r3_geengegevens_is_a_problem_for_an_admin_never_an_empty_school(
    client: TestClient, db: sessionmaker[Session], esis: FakeEsis, kit: FakeEsisKit
) -> None:
    school = _active(client, db, esis, kit)
    before = rows(db, "student")
    esis.script("12AB", "00", answer=_answer("geengegevens.xml"))
    run = _pull(client, school)
    assert run["status"] == "failed", run
    assert run["error"]["slug"] == "esis-no-data"
    assert run["error"]["extra"]["transient"] is False
    assert "geengegevens" in run["error"]["detail"]
    assert esis.served("12AB", "00") == 1, "not retried as transient"
    assert rows(db, "student") == before
    assert all(s["missing_in_esis_since"] is None for s in rows(db, "student"))


def test_r3_empty_optional_elements_are_absent_values(
    client: TestClient, db: sessionmaker[Session], esis: FakeEsis, kit: FakeEsisKit
) -> None:
    school = _active(client, db, esis, kit)
    esis.script("12AB", "00", answer=_answer("empty-elements.xml"))
    run = _pull(client, school)
    assert run["status"] == "applied", run
    assert any("empty elements read as absent values" in w for w in run["warnings"])
    student = one(db, "student", esis_key="00001")
    assert student["esis_values"]["name_prefix"] is None
    assert student["esis_values"]["email"] is None


def test_r3_a_school_named_by_schoolkey_alone(
    client: TestClient, db: sessionmaker[Session], esis: FakeEsis, kit: FakeEsisKit
) -> None:
    school = make_school(client, db)
    _connect(client, school, esis, kit)
    esis.script("12AB", "00", answer=_answer("schoolkey-only.xml"))
    run = _pull(client, school)
    assert run["status"] == "stored", run  # not active yet: kept for readiness
    readiness = client.get(
        f"/api/v1/schools/{school.key}/esis/readiness", headers=auth(school.admin)
    ).json()
    assert readiness["snapshot_id"] is not None  # the stored answer reads again
    assert readiness["students_without_guardian"]["count"] == 1


def test_r3_a_role_that_is_not_a_code_is_kept_as_text(
    client: TestClient, db: sessionmaker[Session], esis: FakeEsis, kit: FakeEsisKit
) -> None:
    school = _active(client, db, esis, kit)
    esis.script("12AB", "00", answer=_answer("role-not-a-code.xml"))
    run = _pull(client, school)
    assert run["status"] == "applied", run
    assert any("not an EDEXml role code; kept as text" in w for w in run["warnings"])
    assert one(db, "staff", esis_key="LK01")["esis_values"]["roles"] == ["Groepsleerkracht"]


def test_r3_a_legacy_encrypted_pkcs12_connects(
    client: TestClient, db: sessionmaker[Session], esis: FakeEsis, kit: FakeEsisKit
) -> None:
    school = make_school(client, db)
    legacy = pkcs12_bytes(kit.client.cert, kit.client.key, "geheim", legacy=True)
    _connect(
        client,
        school,
        esis,
        kit,
        pkcs12_base64=base64.b64encode(legacy).decode(),
        password="geheim",
    )
    esis.script("12AB", "00", answer=_answer("uwlr22-eckid-no-guardians.xml"))
    run = _pull(client, school)
    assert run["status"] == "stored", run
    assert esis.requests[-1].client_subject is not None
