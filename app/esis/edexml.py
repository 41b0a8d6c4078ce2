"""Reads an EDEXml 2.0/2.1 document, plus this project's guardian block, into an EsisSnapshot.

The XML shape and the guardian block (`toevoegingen/blok xsi:type="VerzorgersGegevensType"`)
are described in `docs/esis-protocol.md`. Messages (errors and warnings) name elements, keys
and line numbers, and may quote a bad date or code; they never quote names, e-mail addresses
or national ids, which are not even read.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from lxml import etree
from pydantic import BaseModel, ValidationError

from app.errors import Unprocessable
from app.esis.schemas import (
    EsisSnapshot,
    Gender,
    GuardianOf,
    Relation,
    SnapshotGroup,
    SnapshotGuardian,
    SnapshotSchool,
    SnapshotStaff,
    SnapshotStudent,
)

__all__ = ["EdexmlRead", "read_edexml"]

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
GUARDIAN_BLOCK = "VerzorgersGegevensType"
MAX_ERRORS = 50
GROUP_TAGS = ("groep", "samengestelde_groep")

GENDERS = {"0": Gender.UNKNOWN, "1": Gender.MALE, "2": Gender.FEMALE, "9": Gender.UNSPECIFIED}
RELATIONS = {
    "vader": Relation.FATHER,
    "moeder": Relation.MOTHER,
    "verzorger": Relation.CAREGIVER,
    "voogd": Relation.LEGAL_GUARDIAN,
    "overig": Relation.OTHER,
}
# Jaargroep codes of the standard that are not a number (baby, dreumes, special education,
# combination group, not PO/VO, historical): they carry no year level.
NON_NUMERIC_YEAR_LEVELS = frozenset({"B", "D", "S", "V", "C", "N", "H"})
# The EDEXml element a model field comes from, for messages about a missing value.
FIELD_ELEMENTS = {
    "brin": "brincode",
    "branch": "dependancecode",
    "school_year": "schooljaar",
    "generated_at": "aanmaakdatum",
    "key": "@key",
    "name": "naam",
    "description": "omschrijving",
    "last_name": "achternaam",
    "name_prefix": "voorvoegsel",
    "first_names": "voornamen",
    "initials": "voorletters-1",
    "given_name": "roepnaam",
    "birth_date": "geboortedatum",
    "gender": "geslacht",
    "year_level": "jaargroep",
    "email": "emailadres",
    "phone": "telefoonnummer",
    "group": "groep",
    "composite_groups": "samengestelde_groepen",
    "roles": "rol",
    "groups": "groepen",
    "students": "leerling",
}

_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:Z|[+-]\d{2}:\d{2})?$")
_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
_FIRST_ELEMENT = re.compile(rb"<[A-Za-z_:]")
_SYNTAX_POSITION = re.compile(r"(, line \d+, column \d+|\s*Bytes:.*)$")

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class EdexmlRead:
    snapshot: EsisSnapshot
    warnings: list[str]


class _Invalid(Exception):
    """One problem in the document, with the line it is on."""

    def __init__(self, line: int | None, where: str, message: str) -> None:
        super().__init__(message)
        self.problem = {"field": f"line {line}, {where}" if line else where, "message": message}


def _unprocessable(problems: list[dict[str, str]]) -> Unprocessable:
    detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    if len(problems) > 5:
        detail += f" (and {len(problems) - 5} more)"
    return Unprocessable(detail, errors=problems)


def _fail(line: int | None, where: str, message: str) -> Unprocessable:
    return _unprocessable([_Invalid(line, where, message).problem])


def _line(el: etree._Element) -> int | None:
    line = el.sourceline  # lxml-stubs type this attribute badly
    return line if isinstance(line, int) else None


def _text(el: etree._Element | None) -> str | None:
    """The element's stripped text; whitespace-only or missing counts as absent."""
    if el is None:
        return None
    value = "".join(t for t in el.itertext() if isinstance(t, str)).strip()
    return value or None


class _Node:
    """Collects one model's values from one element, remembering where each came from."""

    def __init__(self, el: etree._Element, where: str) -> None:
        self.el = el
        self.where = where
        self.values: dict[str, Any] = {}
        self.sources: dict[str, tuple[str, int | None]] = {}

    def value(self, tag: str, convert: Callable[[str], Any] | None = None) -> Any:
        """Child `tag`'s value (converted), or None when it is absent."""
        return self._lookup(tag, convert)[0]

    def put(self, name: str, tag: str, convert: Callable[[str], Any] | None = None) -> Any:
        """Sets field `name` from child `tag`, if present; returns the value."""
        value, line = self._lookup(tag, convert)
        if value is not None:
            self.values[name] = value
            self.sources[name] = (tag, line)
        return value

    def _lookup(self, tag: str, convert: Callable[[str], Any] | None) -> tuple[Any, int | None]:
        child = self.el.find(tag)
        text = _text(child)
        if text is None or child is None:
            return None, None
        try:
            return (convert(text) if convert is not None else text), _line(child)
        except ValueError as exc:
            raise _Invalid(_line(child), self.where, f"{tag} {exc}") from None

    def build(self, model: type[M]) -> M:
        try:
            return model.model_validate(self.values)
        except ValidationError as exc:
            raise _ValidationProblems(self, exc) from None


class _ValidationProblems(Exception):
    def __init__(self, node: _Node, exc: ValidationError) -> None:
        super().__init__("invalid values")
        self.problems: list[dict[str, str]] = []
        # include_input=False: the offending value may be a name or an e-mail address.
        for err in exc.errors(include_url=False, include_input=False):
            name = str(err["loc"][0]) if err["loc"] else ""
            tag, line = node.sources.get(name, (FIELD_ELEMENTS.get(name, name), _line(node.el)))
            self.problems.append(_Invalid(line, node.where, f"{tag}: {err['msg']}").problem)


def _date(text: str) -> dt.date:
    match = _DATE.match(text)
    try:
        if match is None:
            raise ValueError
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        raise ValueError(f"'{text[:32]}' is not a date") from None


def _datetime(text: str) -> dt.datetime:
    """An xs:dateTime; without a zone it is local time in the Netherlands."""
    match = _DATETIME.match(text)
    try:
        if match is None:
            raise ValueError
        base, fraction, zone = match.groups()
        micro = (fraction or ".0")[1:7].ljust(6, "0")
        value = dt.datetime.fromisoformat(
            f"{base}.{micro}{'+00:00' if zone == 'Z' else zone or ''}"
        )
    except ValueError:
        raise ValueError(f"'{text[:40]}' is not a date and time") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=AMSTERDAM)


def _year_level(text: str) -> int | None:
    if text.upper() in NON_NUMERIC_YEAR_LEVELS:
        return None
    if text.isascii() and text.isdigit():
        return int(text)
    raise ValueError(f"'{text[:16]}' is not a jaargroep code")


def _gender(text: str) -> Gender:
    if text not in GENDERS:
        raise ValueError(f"'{text[:16]}' is not one of 0, 1, 2, 9")
    return GENDERS[text]


def _relation(text: str) -> Relation:
    if text.lower() not in RELATIONS:
        raise ValueError(f"'{text[:32]}' is not one of {', '.join(RELATIONS)}")
    return RELATIONS[text.lower()]


def _key(el: etree._Element, where: str) -> str:
    key = (el.get("key") or "").strip()
    if not key:
        raise _Invalid(_line(el), where, f"{el.tag} has no key")
    return key


@dataclass
class _Guardian:
    node: _Node  # the first occurrence: its values win
    links: list[GuardianOf] = field(default_factory=list)


class _Reader:
    def __init__(self, root: etree._Element, today: dt.date) -> None:
        self.root = root
        self.today = today
        self.warnings: list[str] = []
        self.problems: list[dict[str, str]] = []
        self.guardians: dict[str, _Guardian] = {}

    def collect(self, exc: Exception) -> None:
        if isinstance(exc, _Invalid):
            self.problems.append(exc.problem)
        elif isinstance(exc, _ValidationProblems):
            self.problems.extend(exc.problems)
        else:  # pragma: no cover - only the two above are raised on purpose
            raise exc
        if len(self.problems) >= MAX_ERRORS:
            raise _unprocessable(self.problems)

    def unique(self, seen: dict[str, int | None], key: str, el: etree._Element, where: str) -> None:
        if key in seen:
            raise _Invalid(_line(el), where, f"duplicate key (first at line {seen[key]})")
        seen[key] = _line(el)

    def blocks(
        self, el: etree._Element, where: str, *, guardians: bool = False
    ) -> list[etree._Element]:
        """The guardian blocks under `el/toevoegingen`; other blocks are skipped with a warning."""
        found: list[etree._Element] = []
        for blok in el.findall("toevoegingen/blok"):
            kind = (blok.get(XSI_TYPE) or "").strip().rpartition(":")[2][:64]
            if guardians and kind == GUARDIAN_BLOCK:
                found.append(blok)
            else:
                self.warnings.append(f"toevoegingen blok of type '{kind}' skipped ({where})")
        return found

    def names(self, node: _Node, *, initials: str = "voorletters-1") -> None:
        if node.put("last_name", "achternaam") is None and node.value("roepnaam") is not None:
            # EDEXml allows a roepnaam alone; the model needs a last name.
            node.put("last_name", "roepnaam")
            self.warnings.append(f"{node.where} has no achternaam; its roepnaam is the last name")
        node.put("name_prefix", "voorvoegsel")
        node.put("initials", initials)
        node.put("given_name", "roepnaam")
        node.put("email", "emailadres")

    def school(self) -> SnapshotSchool:
        el = self.root.find("school")
        if el is None:
            raise _fail(_line(self.root), "EDEX", "school is missing")
        node = _Node(el, "school")
        if node.put("brin", "brincode") is None and el.find("instellingsnummer") is not None:
            raise _fail(
                _line(el),
                "school",
                "brincode is missing (instellingsnummer, the "
                "Flemish school number, is not supported)",
            )
        node.put("branch", "dependancecode")
        node.put("school_year", "schooljaar")
        node.put("generated_at", "aanmaakdatum", _datetime)
        self.blocks(el, "school")
        try:
            return node.build(SnapshotSchool)
        except _ValidationProblems as exc:
            raise _unprocessable(exc.problems) from None

    def groups(self) -> list[SnapshotGroup]:
        out: list[SnapshotGroup] = []
        seen: dict[str, int | None] = {}
        for el in self.root.iterfind("groepen/*"):
            if el.tag not in GROUP_TAGS:
                continue
            try:
                key = _key(el, el.tag)
                node = _Node(el, f"{el.tag} key={key}")
                self.unique(seen, key, el, node.where)
                node.values.update(key=key, is_composite=el.tag == "samengestelde_groep")
                node.put("name", "naam")
                node.put("description", "omschrijving")
                if el.tag == "groep":
                    node.put("year_level", "jaargroep", _year_level)
                self.blocks(el, node.where)
                out.append(node.build(SnapshotGroup))
            except (_Invalid, _ValidationProblems) as exc:
                self.collect(exc)
        return out

    def students(self) -> list[SnapshotStudent]:
        leerlingen = self.root.find("leerlingen")
        if leerlingen is None:  # required by the XSD; never read as "all students left"
            raise _fail(_line(self.root), "EDEX", "leerlingen is missing")
        out: list[SnapshotStudent] = []
        seen: dict[str, int | None] = {}
        for el in leerlingen.iterfind("leerling"):
            try:
                key = _key(el, "leerling")
                node = _Node(el, f"leerling key={key}")
                self.unique(seen, key, el, node.where)
                left = node.value("uitstroomdatum", _date)
                if left is not None and left <= self.today:
                    self.warnings.append(f"{node.where} has left (uitstroomdatum); not included")
                    continue
                node.values["key"] = key
                self.names(node)
                node.put("first_names", "voornamen")
                node.put("birth_date", "geboortedatum", _date)
                node.put("gender", "geslacht", _gender)
                node.put("year_level", "jaargroep", _year_level)
                if (group := el.find("groep")) is not None:
                    node.values["group"] = _key(group, node.where)
                node.values["composite_groups"] = [
                    _key(ref, node.where)
                    for ref in el.iterfind("samengestelde_groepen/samengestelde_groep")
                ]
                for blok in self.blocks(el, node.where, guardians=True):
                    self.guardian_block(blok, key, node.where)
                out.append(node.build(SnapshotStudent))
            except (_Invalid, _ValidationProblems) as exc:
                self.collect(exc)
        return out

    def guardian_block(self, blok: etree._Element, student: str, student_where: str) -> None:
        for el in blok.iterfind("verzorger"):
            key = _key(el, f"verzorger in {student_where}")
            node = _Node(el, f"verzorger key={key}")
            relation = node.value("relatie", _relation)
            node.values["key"] = key
            self.names(node, initials="voorletters")
            node.put("phone", "telefoonnummer")
            known = self.guardians.setdefault(key, _Guardian(node))
            if any(link.student == student for link in known.links):
                continue
            known.links.append(GuardianOf(student=student, relation=relation))
            if known.node is not node and known.node.values != node.values:
                self.warnings.append(
                    f"verzorger key={key} in {student_where} differs from its first "
                    "occurrence; the first is kept"
                )

    def staff(self) -> list[SnapshotStaff]:
        out: list[SnapshotStaff] = []
        seen: dict[str, int | None] = {}
        for el in self.root.iterfind("leerkrachten/leerkracht"):
            try:
                key = _key(el, "leerkracht")
                node = _Node(el, f"leerkracht key={key}")
                self.unique(seen, key, el, node.where)
                node.values.update(key=key, active=True)
                self.names(node)
                # EDEXml 2.1 also puts roles on a group assignment; the model has one list.
                roles = [_text(rol) for rol in el.iterfind("rol")]
                refs = [ref for ref in el.iterfind("groepen/*") if ref.tag in GROUP_TAGS]
                roles += [_text(rol) for ref in refs for rol in ref.iterfind("rol")]
                node.values["roles"] = list(dict.fromkeys(r for r in roles if r))
                node.values["groups"] = list(dict.fromkeys(_key(ref, node.where) for ref in refs))
                self.blocks(el, node.where)
                out.append(node.build(SnapshotStaff))
            except (_Invalid, _ValidationProblems) as exc:
                self.collect(exc)
        return out

    def guardian_models(self) -> list[SnapshotGuardian]:
        out: list[SnapshotGuardian] = []
        for guardian in self.guardians.values():
            guardian.node.values["students"] = guardian.links
            try:
                out.append(guardian.node.build(SnapshotGuardian))
            except _ValidationProblems as exc:
                self.collect(exc)
        return out


def _parse(body: bytes) -> etree._Element:
    # A DOCTYPE can only come before the root element; the scan refuses it before lxml reads
    # any entity declaration in it.
    first = _FIRST_ELEMENT.search(body)
    doctype = body.find(b"<!DOCTYPE", 0, first.start() if first else len(body))
    if doctype >= 0:
        raise _fail(body.count(b"\n", 0, doctype) + 1, "document", "DOCTYPE is not allowed")
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        message = _SYNTAX_POSITION.sub("", exc.msg or "syntax error")
        raise _fail(exc.lineno, "document", f"malformed XML: {message}") from None
    # The byte scan cannot read e.g. a UTF-16 document; lxml's own view settles it.
    if getattr(root.getroottree().docinfo, "doctype", ""):
        raise _fail(1, "document", "DOCTYPE is not allowed")
    if root.tag != "EDEX":
        raise _fail(_line(root), "document", f"root element is not EDEX: '{root.tag}'"[:120])
    return root


def read_edexml(body: bytes, *, today: dt.date | None = None) -> EdexmlRead:
    """Maps an EDEXml document onto a snapshot; raises Unprocessable on a bad document.

    `today` (default: today in the Netherlands) decides whether an `uitstroomdatum` is past.
    """
    root = _parse(body)
    reader = _Reader(root, today or dt.datetime.now(AMSTERDAM).date())
    school = reader.school()
    groups = reader.groups()
    students = reader.students()
    staff = reader.staff()
    guardians = reader.guardian_models()
    if reader.problems:
        raise _unprocessable(reader.problems)
    snapshot = EsisSnapshot(
        school=school, groups=groups, students=students, guardians=guardians, staff=staff
    )
    return EdexmlRead(snapshot=snapshot, warnings=reader.warnings)
