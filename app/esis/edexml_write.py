"""Writes a snapshot as EDEXml 2.1 with the guardian block (`write_edexml`).

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
binary stream. The export (`app.coupling.export`) builds that shape from the database; the
fake ESIS writes its answers with it too.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import IO, Any
from zoneinfo import ZoneInfo

from lxml import etree

from app.esis.vocabulary import GENDER_CODES, NO_YEAR_LEVEL, RELATION_CODES, ROLES, YEAR_LEVELS

__all__ = ["KEY_PREFIXES", "school_year_of", "write_edexml"]

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
XSI = "http://www.w3.org/2001/XMLSchema-instance"
GUARDIAN_BLOCK = "VerzorgersGegevensType"
XSD_VERSION = "2.1"
AUTHOR = "esis-sync"

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
    if (code := RELATION_CODES.get(relation or "")) is not None:
        etree.SubElement(el, "relatie").text = code
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
    if (code := GENDER_CODES.get(row.get("gender") or "")) is not None:
        etree.SubElement(el, "geslacht").text = code
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


def write_edexml(
    snapshot: Snapshot,
    out: IO[bytes],
    *,
    generated_at: dt.datetime | None,
    author: str = AUTHOR,
) -> None:
    """Writes `snapshot` (the `EsisSnapshot` JSON shape) to `out` as EDEXml 2.1, record by
    record. The caller makes sure there is at least one student. Without `generated_at` the
    document has no `aanmaakdatum` (the schema allows that).
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
    if generated_at is not None:
        stamp = generated_at.astimezone(AMSTERDAM).replace(microsecond=0).isoformat()
        etree.SubElement(head, "aanmaakdatum").text = stamp
    etree.SubElement(head, "auteur").text = author
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
