"""The EDEXml export: valid EDEXml 2.1 with the guardian block, and read back as the same school."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy.orm import Session, sessionmaker

from app.coupling.export import export_edexml
from app.errors import Conflict, NotFound
from app.esis.edexml import read_edexml
from app.esis.edexml_validate import schema_path, validate_edexml
from app.esis.edexml_write import school_year_of
from app.esis.schemas import EsisSnapshot
from tests.factories import SchoolKeys, auth, make_school
from tests.merge_helpers import edit_locally, one, rows

FIXTURE = Path(__file__).parent / "fixtures" / "edexml" / "guardians-2.1.xml"
TODAY = dt.date(2026, 11, 28)
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def _ready(body: bytes) -> bytes:
    """The fixture's one guardian without e-mail gets one, so the school can be activated."""
    return body.replace(
        b"<voorletters>K</voorletters>",
        b"<voorletters>K</voorletters><emailadres>k@example.nl</emailadres>",
    )


def activated_school(
    client: TestClient, db: sessionmaker[Session]
) -> tuple[SchoolKeys, uuid.UUID, bytes]:
    """A school activated from the guardian fixture: its keys, its id and the body pushed."""
    school = make_school(client, db)
    body = _ready(FIXTURE.read_bytes())
    pushed = client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=body,
        headers={**auth(school.esis), "content-type": "application/xml"},
    )
    assert pushed.status_code == 201, pushed.text
    activated = client.post(
        f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
    )
    assert activated.status_code == 201, activated.text
    school_id: uuid.UUID = one(db, "school", key=school.key)["id"]
    return school, school_id, body


def export(db: sessionmaker[Session], school_id: uuid.UUID, now: dt.datetime = NOW) -> bytes:
    with db() as session:
        return export_edexml(session=session, school_id=school_id, now=now)


def shape(snapshot: EsisSnapshot) -> dict[str, Any]:
    """A snapshot as plain data, with the order of lists that carry no meaning taken out."""
    students = {}
    for s in snapshot.students:
        student = s.model_dump()
        student["composite_groups"] = sorted(student["composite_groups"])
        students[s.key] = student
    guardians = {}
    for g in snapshot.guardians:
        guardian = g.model_dump(exclude={"students"})
        guardian["students"] = sorted((link.student, link.relation) for link in g.students)
        guardians[g.key] = guardian
    staff = {}
    for m in snapshot.staff:
        member = m.model_dump()
        member["groups"] = sorted(member["groups"])
        staff[m.key] = member
    return {
        "school": snapshot.school.model_dump(exclude={"generated_at"}),
        "groups": {g.key: g.model_dump() for g in snapshot.groups},
        "students": students,
        "guardians": guardians,
        "staff": staff,
    }


def xpath_text(document: etree._Element, path: str) -> list[str]:
    found = document.xpath(path)
    assert isinstance(found, list)
    return [str(item) for item in found]


# --- the round trip ---------------------------------------------------------------------------


def test_export_validates_against_the_shipped_xsd_with_the_guardian_block(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    _, school_id, _ = activated_school(client, db)
    body = export(db, school_id)
    schema = etree.XMLSchema(etree.parse(str(schema_path("2.1"))))
    document = etree.fromstring(body)
    assert schema.validate(document), schema.error_log
    assert validate_edexml(body) == []  # and without any block skipped
    assert xpath_text(document, "/EDEX/school/*/text()") == [
        "2026-2027",
        "12AB",
        "00",
        "2026-11-28T13:00:00+01:00",
        "esis-sync",
        "2.1",
    ]


def test_export_read_back_is_the_same_school(client: TestClient, db: sessionmaker[Session]) -> None:
    _, school_id, pushed = activated_school(client, db)
    original = read_edexml(pushed, today=TODAY).snapshot
    exported = read_edexml(export(db, school_id), today=TODAY).snapshot
    assert shape(exported) == shape(original)
    # The fixture's parts, to be sure the comparison compares something.
    assert {s.key for s in exported.students} == {"00001", "00002", "00003", "00005"}
    assert len(exported.guardians) == 5
    assert {g.key for g in exported.groups if g.is_composite} == {"LEES1"}
    assert {m.key: m.groups for m in exported.staff}["LK01"] == ["G5A", "LEES1"]


def test_export_maps_codes_back_to_edexml(client: TestClient, db: sessionmaker[Session]) -> None:
    _, school_id, _ = activated_school(client, db)
    document = etree.fromstring(export(db, school_id))
    genders = {
        key: xpath_text(document, f'//leerling[@key="{key}"]/geslacht/text()')
        for key in ("00001", "00002", "00003")
    }
    assert genders == {"00001": ["2"], "00002": ["1"], "00003": ["9"]}
    relations = {
        key: sorted(set(xpath_text(document, f'//verzorger[@key="{key}"]/relatie/text()')))
        for key in ("V0001", "V0002", "V0004", "V0006", "V0007")
    }
    assert relations == {
        "V0001": ["moeder"],
        "V0002": ["vader"],
        "V0004": ["voogd"],
        "V0006": ["verzorger"],
        "V0007": ["overig"],
    }
    # A guardian of two students (siblings) is under each of them.
    assert xpath_text(document, '//verzorger[@key="V0001"]/../../../@key') == ["00001", "00002"]
    assert xpath_text(document, '//leerling[@key="00001"]/groep/@key') == ["G5A"]
    assert xpath_text(document, '//leerkracht[@key="LK02"]/rol/text()') == ["IB", "LRK"]
    text = etree.tostring(document)
    for national_id in (b"123456782", b"101234567", b"987654321", b"eckid", b"bsn"):
        assert national_id not in text


# --- what is and is not exported -------------------------------------------------------------


def test_deleted_records_and_their_links_are_left_out(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school, school_id, _ = activated_school(client, db)
    student = one(db, "student", school_id=school_id, esis_key="00003")
    deleted = client.delete(
        f"/api/v1/schools/{school.key}/students/{student['id']}", headers=auth(school.admin)
    )
    assert deleted.status_code == 204, deleted.text
    snapshot = read_edexml(export(db, school_id), today=TODAY).snapshot
    assert "00003" not in {s.key for s in snapshot.students}
    # V0004 and V0007 are the guardians of 00003 only: nowhere to put them.
    assert {g.key for g in snapshot.guardians} == {"V0001", "V0002", "V0006"}


def test_values_the_schema_does_not_allow_are_fitted(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    _, school_id, _ = activated_school(client, db)
    student = one(db, "student", school_id=school_id, esis_key="00001")
    edit_locally(db, "student", student["id"], name_prefix="van der van den", initials="ABCDEFGH")
    group = one(db, "school_group", school_id=school_id, esis_key="G6B")
    edit_locally(db, "school_group", group["id"], year_level=10, name="Groep 6b " + "x" * 80)
    body = export(db, school_id)
    assert validate_edexml(body) == []
    snapshot = read_edexml(body, today=TODAY).snapshot
    first = next(s for s in snapshot.students if s.key == "00001")
    assert (first.name_prefix, first.initials) == ("van der va", "ABCDEF")  # 10 and 6 at most
    g6b = next(g for g in snapshot.groups if g.key == "G6B")
    assert g6b.year_level is None  # 10 is no EDEXml jaargroep code: C, combination group
    assert g6b.name == "Groep 6b " + "x" * 55  # 64 characters at most


# --- local records ----------------------------------------------------------------------------


def local_school(client: TestClient, db: sessionmaker[Session]) -> tuple[SchoolKeys, uuid.UUID]:
    """A school never activated, with only local records made through the roster API."""
    school = make_school(client, db, brin="34CD", branch="01")
    base = f"/api/v1/schools/{school.key}"
    headers = auth(school.admin)

    def create(collection: str, data: dict[str, Any]) -> str:
        made = client.post(f"{base}/{collection}", json=data, headers=headers)
        assert made.status_code == 201, made.text
        record_id: str = made.json()["id"]
        return record_id

    group = create("groups", {"name": "Instromers", "year_level": 1})
    reading = create("groups", {"name": "Leesclub", "is_composite": True})
    student = create(
        "students",
        {
            "last_name": "Smit",
            "given_name": "Bo",
            "birth_date": "2021-02-03",
            "gender": "female",
            "group_ids": [group, reading],
        },
    )
    create(
        "guardians",
        {
            "last_name": "Smit",
            "email": "smit@example.nl",
            "phone": "+31 6 1234 5678",
            "students": [{"student_id": student, "relation": "legal_guardian"}],
        },
    )
    create("staff", {"last_name": "Vos", "roles": ["LRK", "leesmoeder"], "group_ids": [group]})
    school_id: uuid.UUID = one(db, "school", key=school.key)["id"]
    return school, school_id


def test_local_records_get_stable_generated_keys(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    _, school_id = local_school(client, db)
    body = export(db, school_id)
    assert export(db, school_id) == body  # the same data, the same file
    snapshot = read_edexml(body, today=TODAY).snapshot
    [student] = snapshot.students
    student_id = one(db, "student", school_id=school_id)["id"]
    assert student.key == "L-" + student_id.hex[:12]
    [guardian] = snapshot.guardians
    assert guardian.key.startswith("V-")
    assert [(link.student, link.relation) for link in guardian.students] == [
        (student.key, "legal_guardian")
    ]
    assert guardian.phone == "+31 6 1234 5678"
    groups = {g.name: g for g in snapshot.groups}
    assert student.group == groups["Instromers"].key
    assert student.composite_groups == [groups["Leesclub"].key]
    assert all(g.key.startswith("G-") for g in snapshot.groups)
    [member] = snapshot.staff
    assert member.key.startswith("LK-")
    assert member.roles == ["LRK", "leesmoeder"]  # the second as rolomschrijving
    assert member.groups == [groups["Instromers"].key]
    assert (snapshot.school.brin, snapshot.school.branch) == ("34CD", "01")


def test_a_school_without_a_school_year_gets_the_one_of_today(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    _, school_id = local_school(client, db)
    assert one(db, "school", id=school_id)["current_school_year"] is None
    summer = dt.datetime(2027, 7, 31, 20, 0, tzinfo=dt.UTC)  # 22:00 in Amsterdam
    autumn = dt.datetime(2027, 7, 31, 22, 30, tzinfo=dt.UTC)  # 1 August in Amsterdam
    years = [
        read_edexml(export(db, school_id, now), today=TODAY).snapshot.school.school_year
        for now in (summer, autumn)
    ]
    assert years == ["2026-2027", "2027-2028"]


def test_school_year_runs_from_august_to_july() -> None:
    assert school_year_of(dt.date(2026, 7, 31)) == "2025-2026"
    assert school_year_of(dt.date(2026, 8, 1)) == "2026-2027"
    assert school_year_of(dt.date(2027, 1, 1)) == "2026-2027"


def test_a_school_without_students_cannot_be_exported(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    with pytest.raises(Conflict):
        export(db, one(db, "school", key=school.key)["id"])
    with pytest.raises(NotFound):
        export(db, uuid.uuid4())
    assert rows(db, "student") == []
