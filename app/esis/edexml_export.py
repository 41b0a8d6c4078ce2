"""Writes a school's current data as EDEXml 2.1 with the guardian block (`export_edexml`).

Other software in Dutch schools reads EDEXml, so the file validates against the official 2.1
schema plus this project's guardian block (`app/esis/xsd/EDEXML-2.1/EDEXML.verzorgers.xsd`),
and `read_edexml` reads it back as the same school.

What is written: the live records (not soft-deleted, not purged) and their live links:
groups (ESIS and local), students with their main group and composite groups, each
guardian as a `VerzorgersGegevensType` block under every student it is linked to, and the
active staff with their roles and groups. Records without an ESIS key (local ones) get a
stable generated key: a prefix and the first 12 hex digits of their id (`L-3f2a…` for a
student, `V-` guardian, `LK-` staff, `G-` group). National ids are not in the data.

Values the schema does not allow are fitted, never made invalid: text longer than the
element allows is cut to its maximum length (EDEXml allows e.g. 10 characters of
`voorvoegsel`, 6 of `voorletters-1`, 64 of a group's `naam`), an e-mail address longer than
256 characters, or a phone number of another form, is left out, a year level outside the
standard's codes is left out (a class without one is `jaargroep` C, combination group), a
role outside the standard's codes is written as `rolomschrijving`.

`write_edexml` renders a snapshot in the `EsisSnapshot` JSON shape, incrementally, to a
binary stream; `export_edexml` builds that shape from the database.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any
from zoneinfo import ZoneInfo

from lxml import etree
from sqlalchemy import Table, select
from sqlalchemy.orm import Session

# Imported for their tables in app.db.metadata.
import app.roster.models
import app.schools.models  # noqa: F401
from app.db import metadata
from app.errors import Conflict, NotFound, Unprocessable
from app.esis.edexml_validate import validate_edexml

__all__ = ["export_edexml", "school_year_of", "write_edexml"]

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
XSI = "http://www.w3.org/2001/XMLSchema-instance"
GUARDIAN_BLOCK = "VerzorgersGegevensType"
XSD_VERSION = "2.1"
AUTHOR = "esis-sync"

GENDERS = {"unknown": "0", "male": "1", "female": "2", "unspecified": "9"}
RELATIONS = {
    "father": "vader",
    "mother": "moeder",
    "caregiver": "verzorger",
    "legal_guardian": "voogd",
    "other": "overig",
}
# EDEXJaargroepType's numeric codes; a class without a year level is a combination group.
YEAR_LEVELS = frozenset({*range(0, 9), *range(11, 17)})
NO_YEAR_LEVEL = "C"
# EDEXLeerkrachtRolType; other roles are written as free text (rolomschrijving).
ROLES = frozenset(
    {
        "ADJ",
        "ADM",
        "CON",
        "DIR",
        "ICT",
        "IB",
        "KLA",
        "LRK",
        "LOS",
        "LOC",
        "OWA",
        "OUD",
        "RT",
        "SMW",
        "STA",
        "TAL",
        "VAK",
    }
)
KEY_PREFIXES = {"school_group": "G-", "student": "L-", "guardian": "V-", "staff": "LK-"}

# Maximum lengths of the schema's types (EDEXML.types.vast.xsd, EDEXML.types.verzorgers.xsd).
MAX_LENGTHS = {
    "naam": 64,
    "omschrijving": 256,
    "achternaam": 200,
    "voorvoegsel": 10,
    "voornamen": 200,
    "voorletters-1": 6,
    "roepnaam": 64,
    "rolomschrijving": 64,
    "verzorger voorvoegsel": 100,
    "verzorger voorletters": 100,
    "verzorger roepnaam": 100,
}
MAX_EMAIL = {"student": 256, "staff": 256, "guardian": 320}
_PHONE = re.compile(r"^[0-9+() \-]{6,50}$")
# Characters XML 1.0 cannot carry.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

Snapshot = Mapping[str, Any]
Row = dict[str, Any]


def school_year_of(day: dt.date) -> str:
    """The school year a day falls in: 1 August - 31 July."""
    start = day.year if day.month >= 8 else day.year - 1
    return f"{start}-{start + 1}"


def export_edexml(
    *, session: Session, school_id: uuid.UUID, now: dt.datetime | None = None
) -> bytes:
    """The school's current live data as an EDEXml 2.1 document (UTF-8 bytes).

    `schooljaar` is the school's current school year, or the school year of today (in the
    Netherlands) when it has none; `aanmaakdatum` is `now` (default: the current time).
    Raises NotFound for an unknown school and Conflict when the school has no students
    (EDEXml requires at least one `leerling`).
    """
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(AMSTERDAM)
    snapshot = load_snapshot(session=session, school_id=school_id, today=moment.date())
    if not snapshot["students"]:
        raise Conflict("the school has no students; an EDEXml file needs at least one leerling")
    out = io.BytesIO()
    write_edexml(snapshot, out, generated_at=moment)
    body = out.getvalue()
    try:
        validate_edexml(body)
    except Unprocessable as exc:  # pragma: no cover - a bug here, never the client's fault
        raise RuntimeError(f"the EDEXml export does not validate: {exc.detail}") from None
    return body


# --- the database -----------------------------------------------------------------------------


def _table(name: str) -> Table:
    return metadata.tables[name]


def _live(session: Session, name: str, school_id: uuid.UUID) -> list[Row]:
    t = _table(name)
    query = select(t).where(t.c.school_id == school_id, t.c.deleted_at.is_(None))
    if "tombstoned_at" in t.c:
        query = query.where(t.c.tombstoned_at.is_(None))
    return [dict(row) for row in session.execute(query).mappings()]


def _keys(rows: Sequence[Row], table: str) -> dict[uuid.UUID, str]:
    """Each record's key: its ESIS key, else a stable one made from its id."""
    taken = {row["esis_key"] for row in rows if row["esis_key"]}
    out: dict[uuid.UUID, str] = {}
    for row in rows:
        key = row["esis_key"]
        if not key:
            key = KEY_PREFIXES[table] + row["id"].hex[:12]
            if key in taken:
                key = KEY_PREFIXES[table] + row["id"].hex
        out[row["id"]] = key
    return out


def load_snapshot(*, session: Session, school_id: uuid.UUID, today: dt.date) -> dict[str, Any]:
    """The school's live data in the `EsisSnapshot` JSON shape (keys as in the export)."""
    schools = _table("school")
    school = session.execute(select(schools).where(schools.c.id == school_id)).mappings().first()
    if school is None:
        raise NotFound("school not found")

    groups = _live(session, "school_group", school_id)
    students = _live(session, "student", school_id)
    guardians = _live(session, "guardian", school_id)
    staff = [row for row in _live(session, "staff", school_id) if row["active"]]
    group_keys = _keys(groups, "school_group")
    student_keys = _keys(students, "student")
    guardian_keys = _keys(guardians, "guardian")
    staff_keys = _keys(staff, "staff")
    composite = {row["id"] for row in groups if row["is_composite"]}

    main: dict[uuid.UUID, list[tuple[dt.datetime, str]]] = defaultdict(list)
    composites: dict[uuid.UUID, list[str]] = defaultdict(list)
    for link in _live(session, "student_group", school_id):
        student, group = link["student_id"], link["group_id"]
        if student not in student_keys or group not in group_keys:
            continue
        if group in composite:
            composites[student].append(group_keys[group])
        else:
            main[student].append((link["created_at"], group_keys[group]))
    parents: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for link in _live(session, "student_guardian", school_id):
        student, guardian = link["student_id"], link["guardian_id"]
        if student in student_keys and guardian in guardian_keys:
            parents[guardian].append(
                {"student": student_keys[student], "relation": link["relation"]}
            )
    taught: dict[uuid.UUID, list[str]] = defaultdict(list)
    for link in _live(session, "staff_group", school_id):
        if link["staff_id"] in staff_keys and link["group_id"] in group_keys:
            taught[link["staff_id"]].append(group_keys[link["group_id"]])

    def person(row: Row, keys: dict[uuid.UUID, str]) -> dict[str, Any]:
        fields = ("last_name", "name_prefix", "initials", "given_name", "email")
        return {"key": keys[row["id"]], **{name: row[name] for name in fields}}

    return {
        "school": {
            "brin": school["brin"],
            "branch": school["branch"],
            "school_year": school["current_school_year"] or school_year_of(today),
        },
        "groups": sorted(
            (
                {
                    "key": group_keys[row["id"]],
                    "name": row["name"],
                    "description": row["description"],
                    "year_level": row["year_level"],
                    "is_composite": row["is_composite"],
                }
                for row in groups
            ),
            key=lambda g: str(g["key"]),
        ),
        "students": sorted(
            (
                {
                    **person(row, student_keys),
                    "first_names": row["first_names"],
                    "birth_date": row["birth_date"],
                    "gender": row["gender"],
                    "year_level": row["year_level"],
                    # One main group in EDEXml: the oldest link, should there be several.
                    "group": min(main[row["id"]])[1] if main[row["id"]] else None,
                    "composite_groups": sorted(composites[row["id"]]),
                }
                for row in students
            ),
            key=lambda s: str(s["key"]),
        ),
        "guardians": sorted(
            (
                {
                    **person(row, guardian_keys),
                    "phone": row["phone"],
                    "students": parents[row["id"]],
                }
                for row in guardians
                if parents[row["id"]]
            ),
            key=lambda g: str(g["key"]),
        ),
        "staff": sorted(
            (
                {
                    **person(row, staff_keys),
                    "roles": list(row["roles"] or []),
                    "groups": sorted(taught[row["id"]]),
                }
                for row in staff
            ),
            key=lambda s: str(s["key"]),
        ),
    }


# --- the document -----------------------------------------------------------------------------


def _clean(value: Any, limit: int | None = None) -> str | None:
    """Text for an element: XML-safe, cut to `limit`; None when empty."""
    if value is None:
        return None
    text = _NOT_XML.sub("", str(value)).strip()
    if limit is not None:
        text = text[:limit].rstrip()
    return text or None


def _add(parent: etree._Element, tag: str, value: Any, limit: int | None = None) -> None:
    text = _clean(value, limit if limit is not None else MAX_LENGTHS.get(tag))
    if text is not None:
        etree.SubElement(parent, tag).text = text


def _email(value: Any, kind: str) -> str | None:
    text = _clean(value)
    return text if text is not None and len(text) <= MAX_EMAIL[kind] else None


def _names(el: etree._Element, row: Mapping[str, Any], *, guardian: bool = False) -> bool:
    """The name elements; False when there is no name to write (the record is left out)."""
    last = _clean(row.get("last_name"), MAX_LENGTHS["achternaam"])
    given_limit = MAX_LENGTHS["verzorger roepnaam" if guardian else "roepnaam"]
    if last is None and (guardian or _clean(row.get("given_name"), given_limit) is None):
        return False
    if last is not None:
        etree.SubElement(el, "achternaam").text = last
        if guardian:
            _add(el, "voorvoegsel", row.get("name_prefix"), MAX_LENGTHS["verzorger voorvoegsel"])
            _add(el, "voorletters", row.get("initials"), MAX_LENGTHS["verzorger voorletters"])
        else:
            _add(el, "voorvoegsel", row.get("name_prefix"))
            _add(el, "voornamen", row.get("first_names"))
            _add(el, "voorletters-1", row.get("initials"))
    _add(el, "roepnaam", row.get("given_name"), given_limit)
    return True


def _group(row: Mapping[str, Any]) -> etree._Element:
    tag = "samengestelde_groep" if row.get("is_composite") else "groep"
    el = etree.Element(tag, key=str(row["key"]))
    _add(el, "naam", row.get("name") or row["key"])
    if tag == "groep":
        level = row.get("year_level")
        etree.SubElement(el, "jaargroep").text = (
            str(level) if level in YEAR_LEVELS else NO_YEAR_LEVEL
        )
    _add(el, "omschrijving", row.get("description"))
    return el


def _guardian(row: Mapping[str, Any], relation: str | None) -> etree._Element | None:
    el = etree.Element("verzorger", key=str(row["key"]))
    if relation in RELATIONS:
        etree.SubElement(el, "relatie").text = RELATIONS[relation]
    if not _names(el, row, guardian=True):
        return None
    if (email := _email(row.get("email"), "guardian")) is not None:
        etree.SubElement(el, "emailadres").text = email
    phone = _clean(row.get("phone"))
    if phone is not None and _PHONE.match(phone):
        etree.SubElement(el, "telefoonnummer").text = phone
    return el


def _student(
    row: Mapping[str, Any], guardians: Iterable[tuple[Mapping[str, Any], str | None]]
) -> etree._Element | None:
    el = etree.Element("leerling", key=str(row["key"]))
    if not _names(el, row):
        return None
    _add(el, "geboortedatum", row.get("birth_date"))
    if (gender := row.get("gender")) in GENDERS:
        etree.SubElement(el, "geslacht").text = GENDERS[gender]
    if (level := row.get("year_level")) in YEAR_LEVELS:
        etree.SubElement(el, "jaargroep").text = str(level)
    if row.get("group"):
        etree.SubElement(el, "groep", key=str(row["group"]))
    if row.get("composite_groups"):
        refs = etree.SubElement(el, "samengestelde_groepen")
        for key in row["composite_groups"]:
            etree.SubElement(refs, "samengestelde_groep", key=str(key))
    if (email := _email(row.get("email"), "student")) is not None:
        etree.SubElement(el, "emailadres").text = email
    verzorgers = [v for g, rel in guardians if (v := _guardian(g, rel)) is not None]
    if verzorgers:
        blok = etree.SubElement(etree.SubElement(el, "toevoegingen"), "blok")
        blok.set(f"{{{XSI}}}type", GUARDIAN_BLOCK)
        etree.SubElement(blok, "code").text = "verzorgers"
        blok.extend(verzorgers)
    return el


def _staff(row: Mapping[str, Any]) -> etree._Element | None:
    el = etree.Element("leerkracht", key=str(row["key"]))
    if not _names(el, row):
        return None
    if (email := _email(row.get("email"), "staff")) is not None:
        etree.SubElement(el, "emailadres").text = email
    for role in dict.fromkeys(row.get("roles") or []):
        text = _clean(role)
        if text is None:
            continue
        if text in ROLES:
            etree.SubElement(el, "rol").text = text
        else:
            _add(el, "rolomschrijving", text)
    groups = list(dict.fromkeys(row.get("groups") or []))
    if groups:
        refs = etree.SubElement(el, "groepen")
        for key, composite in groups:
            etree.SubElement(refs, "samengestelde_groep" if composite else "groep", key=key)
    return el


def write_edexml(snapshot: Snapshot, out: IO[bytes], *, generated_at: dt.datetime) -> None:
    """Writes `snapshot` (the `EsisSnapshot` JSON shape) to `out` as EDEXml 2.1, record by
    record. The caller makes sure there is at least one student.
    """
    composite = {str(g["key"]) for g in snapshot.get("groups", []) if g.get("is_composite")}
    linked: dict[str, list[tuple[Mapping[str, Any], str | None]]] = defaultdict(list)
    for guardian in snapshot.get("guardians", []):
        for link in guardian.get("students", []):
            linked[str(link["student"])].append((guardian, link.get("relation")))

    school = snapshot["school"]
    head = etree.Element("school")
    etree.SubElement(head, "schooljaar").text = str(school["school_year"])
    etree.SubElement(head, "brincode").text = str(school["brin"]).upper()
    etree.SubElement(head, "dependancecode").text = str(school.get("branch") or "00")
    stamp = generated_at.astimezone(AMSTERDAM).replace(microsecond=0).isoformat()
    etree.SubElement(head, "aanmaakdatum").text = stamp
    etree.SubElement(head, "auteur").text = AUTHOR
    etree.SubElement(head, "xsdversie").text = XSD_VERSION

    def section(xf: Any, tag: str, elements: Iterable[etree._Element | None]) -> None:
        """The container with its records, or nothing when there are none."""
        records = (el for el in elements if el is not None)
        first = next(records, None)
        if first is None:
            return
        xf.write("\n")
        with xf.element(tag):
            xf.write("\n")
            xf.write(first, pretty_print=True)
            for el in records:
                xf.write(el, pretty_print=True)

    staff_rows = [
        {**row, "groups": [(str(key), str(key) in composite) for key in row.get("groups") or []]}
        for row in snapshot.get("staff", [])
    ]
    with etree.xmlfile(out, encoding="UTF-8") as xf:
        xf.write_declaration()
        with xf.element("EDEX", nsmap={"xsi": XSI}):
            xf.write("\n")
            xf.write(head, pretty_print=True)
            section(xf, "groepen", (_group(g) for g in snapshot.get("groups", [])))
            students = snapshot.get("students", [])
            section(xf, "leerlingen", (_student(s, linked[str(s["key"])]) for s in students))
            section(xf, "leerkrachten", (_staff(s) for s in staff_rows))
            xf.write("\n")
