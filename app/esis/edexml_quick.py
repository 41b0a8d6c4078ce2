"""The quick read of an EDEXml document: a valid one, as a daily export is, read from its
tree in one pass (issue 18), giving what the careful reader gives.

The careful reader (`edexml.py`) is the visitor of the validator's walk: it validates each
record on its own, names every problem at its line, sets aside a record with a value it
cannot use, and builds and validates each model as it goes (about 150 us a student with its
guardians). Most documents have none of that to say. This one validates the whole tree
against the schema in one call, checks the rules the walk adds to the schema (unique keys
and eckids, references to groups and vestigingen, the size of a record) with sets, maps
every record onto plain values, and validates the snapshot in one call of pydantic's, as a
JSON body is.

Whatever it does not decide, it leaves to the careful reader: `read_valid` returns None for
a document the schema refuses, that breaks a rule, holds a value a conversion refuses or a
model does not take, a block of a type the schemas do not know, or a part near a size limit.
The careful reader then reads the same tree and says what is wrong (or sets the record
aside), so a document is refused, and a record set aside, only by it. For a document both
accept, the snapshot, its given fields and the warnings are the same
(tests/test_edexml_quick.py holds the two equal, document by document).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from lxml import etree

from app.esis.edexml_fields import (
    GROUP_TAGS,
    GUARDIAN_BLOCK,
    GUARDIAN_FIELDS,
    GUARDIANS_KIND,
    MANY_STUDENTS,
    NAME_FIELDS,
    RECORD_KIND,
    ROLE_TAGS,
    STUDENT_FIELDS,
    XSI_TYPE,
    EdexmlRead,
    block_type,
    warn_block,
    warn_differs,
    warn_left,
    warn_roepnaam,
)
from app.esis.edexml_nodes import (
    Invalid,
    Warnings,
    parse_date,
    parse_datetime,
    parse_gender,
    parse_relation,
    parse_year_level,
    text_of,
)
from app.esis.edexml_schemas import CONTAINERS, ROOT, borrow, give_back, known_block_types
from app.esis.edexml_validate import schema_version, too_big
from app.esis.schemas import ALL_KINDS, EsisSnapshot, derive_scope
from app.esis.xml import has_doctype

__all__ = ["read_valid"]

Values = dict[str, Any]


# Comments and processing instructions: the parsers drop them (`safe_parser`), so the text
# of a valid value is its element's `.text`; a tree that has them is read carefully.
_LOOSE = etree.XPath("boolean(//comment() | //processing-instruction())")


# A student's children that are not values: its references and its blocks.
_STUDENT_PARTS = frozenset({"groep", "samengestelde_groepen", "vestiging", "toevoegingen"})


class _Decline(Exception):
    """Something the quick read leaves to the careful reader."""


def read_valid(root: etree._Element, today: dt.date, *, parsed: bool = False) -> EdexmlRead | None:
    """The document's snapshot and warnings, or None when the careful reader must read it.

    `root` is not changed. `parsed`: by `safe_parser`, which drops comments and processing
    instructions (else the tree is looked through for them first)."""
    if root.tag != ROOT or has_doctype(root) or (not parsed and _LOOSE(root)):
        return None
    parts = [top for top in root if isinstance(top.tag, str)]
    school = next((top for top in parts if top.tag == "school"), None)
    if school is None:
        return None
    version, note = schema_version(school)
    schema = borrow(version)
    try:
        valid = schema.validate(root)
    finally:
        give_back(version, schema)
    if not valid or any(too_big(top, container=top.tag in CONTAINERS) for top in parts):
        return None
    read = _Read(today, known_block_types(version))
    try:
        snapshot = read.document(parts)
    except (_Decline, Invalid, ValueError):  # ValueError: a conversion's, or pydantic's
        return None
    notes = [note] if note is not None else []
    return EdexmlRead(snapshot=snapshot, warnings=notes + read.warnings.all())


def _texts(el: etree._Element) -> dict[Any, str | None]:
    """Each child's stripped text (None when blank) by its tag, the first child of a tag
    winning: what `Node.value` reads, without a conversion."""
    texts: dict[Any, str | None] = {}
    for child in el:
        if child.tag not in texts:
            texts[child.tag] = (child.text or "").strip() or None
    return texts


def _key(el: etree._Element) -> str:
    key = (el.get("key") or "").strip()
    if not key:
        raise _Decline
    return key


def _unique(seen: set[str], value: str | None) -> None:
    """The walk's identity rule: a non-blank value once (blank ones are not compared)."""
    value = (value or "").strip()
    if not value:
        return
    if value in seen:
        raise _Decline
    seen.add(value)


class _Read:
    def __init__(self, today: dt.date, known_blocks: frozenset[str]) -> None:
        self.today = today
        self.known_blocks = known_blocks
        self.warnings = Warnings()
        self.present: set[str] = set()
        self.groups: dict[str, bool] = {}  # key -> composite
        self.branches: set[str] = set()
        self.keys: dict[str, set[str]] = {
            "leerling": set(),
            "leerkracht": set(),
            "eckid leerling": set(),
            "eckid leerkracht": set(),
        }
        self.guardians: dict[str, Values] = {}
        self.many: dict[str, set[str]] = {}  # as `_Reader.many`

    def document(self, parts: list[etree._Element]) -> EsisSnapshot:
        school: Values | None = None
        records: dict[str, list[Values]] = {"groups": [], "students": [], "staff": []}
        for top in parts:
            if top.tag == "school":
                if school is None:
                    school = self.school(top)
                continue
            if top.tag == "leerlingen" and not records["students"]:
                records["students"] = self.students(top)
                continue
            if top.tag not in CONTAINERS:
                raise _Decline  # the schema refuses it; reached only if it did not
            for el in top:
                tag = el.tag
                if not isinstance(tag, str):
                    continue
                if tag not in CONTAINERS[str(top.tag)]:
                    raise _Decline
                if tag in RECORD_KIND:
                    self.present.add(RECORD_KIND[tag])
                if tag == "vestiging":
                    _unique(self.branches, el.get("key"))
                elif tag in GROUP_TAGS:
                    records["groups"].append(self.group(el, tag))
                else:
                    records["staff"].append(self.staff_member(el))
        if school is None:
            raise _Decline
        scope = derive_scope(self.present)
        return EsisSnapshot.model_validate(
            {
                "school": school,
                "carries": None if scope == ALL_KINDS else sorted(scope),
                **records,
                "guardians": list(self.guardians.values()),
            }
        )

    def blocks(self, el: etree._Element, where: str, *, guardians: bool = False) -> list[Any]:
        """As `_Reader.blocks`: the guardian blocks, the others warned of; a type the schemas
        do not know (the walk would remove it first, with a warning of its own) declines."""
        found: list[etree._Element] = []
        for extra in el.iterchildren("toevoegingen"):
            for blok in extra.iterchildren("blok"):
                kind = block_type(blok)
                if kind not in self.known_blocks or blok.get(XSI_TYPE) != kind:
                    raise _Decline
                if guardians and kind == GUARDIAN_BLOCK:
                    found.append(blok)
                else:
                    warn_block(self.warnings, kind, where)
        return found

    def names(self, values: Values, text: Any, kind: str, key: str, fields: Any) -> None:
        """As `_Reader.names`: the last name (or the roepnaam, warned of), then `fields`.
        `text`: each child's stripped text by its tag, None when blank (`_texts`)."""
        last = text.get("achternaam")
        if last is None:
            last = text.get("roepnaam")
            if last is not None:
                warn_roepnaam(self.warnings, f"{kind} key={key}")
        if last is not None:
            values["last_name"] = last
        for name, tag in fields:
            if (value := text.get(tag)) is not None:
                values[name] = value

    def school(self, el: etree._Element) -> Values:
        text = _texts(el)
        values: Values = {}
        for name, tag in (
            ("brin", "brincode"),
            ("branch", "dependancecode"),
            ("school_year", "schooljaar"),
        ):
            if (value := text.get(tag)) is not None:
                values[name] = value
        if "brin" not in values:
            raise _Decline
        if (value := text.get("aanmaakdatum")) is not None:
            values["generated_at"] = parse_datetime(value)
        self.blocks(el, "school")
        return values

    def group(self, el: etree._Element, tag: str) -> Values:
        key = _key(el)
        if key in self.groups:
            raise _Decline
        self.groups[key] = tag == "samengestelde_groep"
        text = _texts(el)
        values: Values = {"key": key, "is_composite": tag == "samengestelde_groep"}
        if (name := text.get("naam")) is not None:
            values["name"] = name
        if (description := text.get("omschrijving")) is not None:
            values["description"] = description
        if (
            tag == "groep"
            and (level := text.get("jaargroep")) is not None
            and (year := parse_year_level(level)) is not None
        ):
            values["year_level"] = year
        self.blocks(el, f"{tag} key={key}")
        return values

    def refs(self, refs: list[tuple[etree._Element, bool]]) -> None:
        """The walk's rule for references: to a group of this document, of the right kind."""
        groups = self.groups
        for ref, composite in refs:
            key = (ref.get("key") or "").strip()
            if groups.get(key) is not composite:
                raise _Decline

    def students(self, container: etree._Element) -> list[Values]:
        """What `_Reader.student` and `_Reader.guardian_block` read, in their order: most of
        a read's time, so written out for speed."""
        out: list[Values] = []
        students = self.keys["leerling"]
        eckids = self.keys["eckid leerling"]
        groups = self.groups
        branches = self.branches
        today = self.today
        for el in container:
            if el.tag != "leerling":
                raise _Decline  # the schema refuses it; reached only if it did not
            key = _key(el)
            _unique(students, key)
            _unique(eckids, el.get("eckid"))
            text: dict[Any, str | None] = {}
            group: str | None = None
            composite: list[str] = []
            extras = False
            for child in el:
                tag = child.tag
                if tag not in _STUDENT_PARTS:
                    if tag not in text:
                        text[tag] = (child.text or "").strip() or None
                elif tag == "groep":
                    ref = (child.get("key") or "").strip()
                    if groups.get(ref) is not False:
                        raise _Decline  # the walk's rule for references, as `refs`
                    if group is None:
                        group = ref
                elif tag == "samengestelde_groepen":
                    for member in child.iterchildren("samengestelde_groep"):
                        ref = (member.get("key") or "").strip()
                        if groups.get(ref) is not True:
                            raise _Decline
                        composite.append(ref)
                elif tag == "vestiging":
                    if (child.get("key") or "").strip() not in branches:
                        raise _Decline
                else:
                    extras = True
            if (day := text.get("uitstroomdatum")) is not None and parse_date(day) <= today:
                warn_left(self.warnings, f"leerling key={key}")
                continue
            values: Values = {"key": key}
            self.names(values, text, "leerling", key, STUDENT_FIELDS)
            if (day := text.get("geboortedatum")) is not None:
                values["birth_date"] = parse_date(day)
            if (gender := text.get("geslacht")) is not None:
                values["gender"] = parse_gender(gender)
            if (level := text.get("jaargroep")) is not None and (
                (year := parse_year_level(level)) is not None
            ):
                values["year_level"] = year
            if group is not None:
                values["group"] = group  # not blank: no group has a blank key
            values["composite_groups"] = composite
            out.append(values)
            if extras:
                where = f"leerling key={key}"
                for blok in self.blocks(el, where, guardians=True):
                    self.present.add(GUARDIANS_KIND)
                    for guardian in blok.iterchildren("verzorger"):
                        self.guardian(guardian, key, where)
        if out or students:
            self.present.add(RECORD_KIND["leerling"])
        return out

    def guardian(self, el: etree._Element, student: str, student_where: str) -> None:
        """As `_Reader.guardian_block`, for one verzorger: its first occurrence gives its
        values, later ones add their link (once per student), warned of when they differ."""
        key = _key(el)
        text = _texts(el)
        relation = parse_relation(named) if (named := text.get("relatie")) is not None else None
        values: Values = {"key": key}
        self.names(values, text, "verzorger", key, GUARDIAN_FIELDS)
        link = {"student": student, "relation": relation}
        known = self.guardians.get(key)
        if known is None:
            values["students"] = [link]
            self.guardians[key] = values
            return
        links = known["students"]
        many = self.many.get(key)
        if many is not None:  # as `_Reader.guardian_block`: a set beyond MANY_STUDENTS
            if student in many:
                return
            many.add(student)
        elif any(known_link["student"] == student for known_link in links):
            return
        elif len(links) >= MANY_STUDENTS:
            self.many[key] = {known_link["student"] for known_link in links} | {student}
        links.append(link)
        if len(known) - 1 != len(values) or any(
            known.get(name) != value for name, value in values.items()
        ):
            warn_differs(self.warnings, key, student_where)

    def staff_member(self, el: etree._Element) -> Values:
        key = _key(el)
        _unique(self.keys["leerkracht"], key)
        _unique(self.keys["eckid leerkracht"], el.get("eckid"))
        assignments = [ref for groups in el.iterchildren("groepen") for ref in groups]
        self.refs([(ref, ref.tag != "groep") for ref in assignments if isinstance(ref.tag, str)])
        where = f"leerkracht key={key}"
        values: Values = {"key": key, "active": True}
        self.names(values, _texts(el), "leerkracht", key, NAME_FIELDS)
        refs = [ref for ref in assignments if ref.tag in GROUP_TAGS]
        roles = [text_of(rol) for rol in el if rol.tag in ROLE_TAGS]
        roles += [text_of(rol) for ref in refs for rol in ref if rol.tag in ROLE_TAGS]
        values["roles"] = list(dict.fromkeys(r for r in roles if r))
        values["groups"] = list(dict.fromkeys(_key(ref) for ref in refs))
        self.blocks(el, where)
        return values
