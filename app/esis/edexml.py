"""Reads an EDEXml 2.0/2.1 document, plus this project's guardian block, into an EsisSnapshot.

The XML shape and the guardian block (`toevoegingen/blok xsi:type="VerzorgersGegevensType"`)
are described in `docs/esis-protocol.md`. Messages (errors and warnings) name elements, keys
and line numbers, and may quote a bad date or code; they never quote names, e-mail addresses
or national ids, which are not even read.

The document is parsed safely and validated against the shipped XSDs by
`app.esis.edexml_validate.validate_edexml`, which streams: this reader is its visitor and maps
each record once it is valid, before it is dropped from memory. A document with any problem
is refused as a whole, with every problem found (up to 50).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from lxml import etree
from pydantic import BaseModel, ValidationError

from app.esis.edexml_validate import Problem, unprocessable, validate_edexml
from app.esis.leniency import KeptRecord, set_aside_dependents
from app.esis.schemas import (
    ALL_KINDS,
    EsisSnapshot,
    Gender,
    GuardianOf,
    Kind,
    Relation,
    SnapshotGroup,
    SnapshotGuardian,
    SnapshotSchool,
    SnapshotStaff,
    SnapshotStudent,
    derive_scope,
)
from app.esis.vocabulary import GENDERS, NON_NUMERIC_YEAR_LEVELS, RELATIONS

__all__ = ["EdexmlRead", "read_edexml"]

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
GUARDIAN_BLOCK = "VerzorgersGegevensType"
GROUP_TAGS = ("groep", "samengestelde_groep")
# The records a bad value sets aside instead of refusing the document (leniency.py).
KEPT_ENTITY = {
    "groep": "group",
    "samengestelde_groep": "group",
    "leerling": "student",
    "leerkracht": "staff",
}
# The kind of records an element is: what a document carries follows from what it holds.
RECORD_KIND = {
    "groep": Kind.GROUPS,
    "samengestelde_groep": Kind.GROUPS,
    "leerling": Kind.STUDENTS,
    "leerkracht": Kind.STAFF,
}
# Shared by every GuardianOf (see _Compactor); the models are frozen.
LINK_FIELDS = {"student", "relation"}
# Warnings of one kind listed one by one; more are counted in one summary warning, so that a
# board export with thousands of left students does not make a report of thousands of lines.
MAX_WARNINGS_PER_KIND = 20

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

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class EdexmlRead:
    snapshot: EsisSnapshot
    warnings: list[str]
    # Records with a value that cannot be used: left as they are by the merge (leniency.py).
    kept: list[KeptRecord] = field(default_factory=list)


class _Invalid(Exception):
    """One problem in the document, with the line it is on (and the element, when one)."""

    def __init__(self, line: int | None, where: str, message: str, tag: str = "") -> None:
        super().__init__(message)
        self.problem = Problem(line, where, message)
        self.tags = [(tag, message.removeprefix(f"{tag} ") if tag else message)]


def _line(el: etree._Element) -> int | None:
    line = el.sourceline  # lxml-stubs type this attribute badly
    return line if isinstance(line, int) else None


def _text(el: etree._Element | None) -> str | None:
    """The element's stripped text; whitespace-only or missing counts as absent."""
    if el is None:
        return None
    if len(el) == 0:  # a leaf, as every simple-typed element of a valid document is
        value = el.text or ""
    else:
        value = "".join(t for t in el.itertext() if isinstance(t, str))
    return value.strip() or None


class _Compactor:
    """Makes the models of one read smaller: a board export holds ~250,000 of them.

    After a model is validated it is rebuilt with `model_construct` from its own validated
    values (so nothing changes but object identity), sharing equal values of fields that
    repeat (names, group keys, birth dates) and one `__pydantic_fields_set__` per set of
    given fields (pydantic keeps a new set in every instance otherwise; the models are
    frozen, so the shared sets never change). The table of shared values is bounded: the
    common values come early, and unique ones would only fill it.
    """

    SHARED = frozenset(
        {"last_name", "name_prefix", "initials", "given_name", "birth_date", "group", "name"}
    )
    MAX_SHARED = 20_000

    def __init__(self) -> None:
        self.values: dict[Any, Any] = {}
        self.fields: dict[frozenset[str], set[str]] = {}

    def share(self, value: Any) -> Any:
        known = self.values.get(value)
        if known is not None:
            return known
        if len(self.values) < self.MAX_SHARED:
            self.values[value] = value
        return value

    def __call__(self, model: M) -> M:
        values = dict(model.__dict__)
        for name in self.SHARED.intersection(values):
            if values[name] is not None:
                values[name] = self.share(values[name])
        if groups := values.get("composite_groups"):
            values["composite_groups"] = [self.share(g) for g in groups]
        given = model.__pydantic_fields_set__
        shared = self.fields.setdefault(frozenset(given), set(given))
        return type(model).model_construct(_fields_set=shared, **values)


class _Node:
    """Collects one model's values from one element, remembering where each came from."""

    def __init__(self, el: etree._Element, where: str) -> None:
        # The first child of each name: what `find(tag)` gives, for a lookup per field.
        self.children: dict[str, etree._Element] = {}
        for child in el:
            self.children.setdefault(str(child.tag), child)
        self.line = _line(el)
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
        child = self.children.get(tag)
        text = _text(child)
        if text is None or child is None:
            return None, None
        try:
            return (convert(text) if convert is not None else text), _line(child)
        except ValueError as exc:
            raise _Invalid(_line(child), self.where, f"{tag} {exc}", tag) from None

    def build(self, model: type[M], compact: _Compactor | None = None) -> M:
        try:
            built = model.model_validate(self.values)
        except ValidationError as exc:
            raise _ValidationProblems(self, exc) from None
        return built if compact is None else compact(built)


class _ValidationProblems(Exception):
    def __init__(self, node: _Node, exc: ValidationError) -> None:
        super().__init__("invalid values")
        self.problems: list[Problem] = []
        self.tags: list[tuple[str, str]] = []
        # include_input=False: the offending value may be a name or an e-mail address.
        for err in exc.errors(include_url=False, include_input=False):
            name = str(err["loc"][0]) if err["loc"] else ""
            tag, line = node.sources.get(name, (FIELD_ELEMENTS.get(name, name), node.line))
            self.problems.append(_Invalid(line, node.where, f"{tag}: {err['msg']}").problem)
            self.tags.append((tag, err["msg"]))


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


def _tag_of(message: str) -> tuple[str, str]:
    """(element, reason) of a schema problem: "geboortedatum '2019-02-30' is not a date"."""
    head, _, rest = message.partition(" ")
    head = head.rstrip(":")
    return (
        (head, rest) if rest and head.replace("_", "").replace("-", "").isalnum() else ("", message)
    )


def _key(el: etree._Element, where: str) -> str:
    key = (el.get("key") or "").strip()
    if not key:
        raise _Invalid(_line(el), where, f"{el.tag} has no key")
    return key


def _same_values(model: SnapshotGuardian, values: dict[str, Any]) -> bool:
    """Whether a later occurrence of a guardian says what its first one (`model`) said."""
    given = {name: value for name, value in model.__dict__.items() if value is not None}
    given.pop("students", None)
    return given == values


@dataclass
class _Warnings:
    """Warnings in document order; at most MAX_WARNINGS_PER_KIND of each kind."""

    items: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    summaries: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, text: str, summary: str) -> None:
        """`summary` is formatted with `n`, the number of warnings left out."""
        self.counts[kind] += 1
        if self.counts[kind] <= MAX_WARNINGS_PER_KIND:
            self.items.append(text)
        else:
            self.summaries.setdefault(kind, summary)

    def all(self) -> list[str]:
        extra = [
            summary.format(n=self.counts[kind] - MAX_WARNINGS_PER_KIND)
            for kind, summary in self.summaries.items()
        ]
        return self.items + extra


class _Reader:
    """The visitor of `validate_edexml`: maps each valid record onto the snapshot's models."""

    def __init__(self, today: dt.date) -> None:
        self.today = today
        self.warnings = _Warnings()
        # Each guardian is built and validated at its first occurrence, whose values win; the
        # links of later occurrences are appended to its `students` list while the document is
        # read (the model is frozen to its users, who only get it afterwards).
        self.guardians: dict[str, SnapshotGuardian] = {}
        self.bad_guardians: set[str] = set()  # refused at their first occurrence
        self.compact = _Compactor()
        self.school_model: SnapshotSchool | None = None
        self.groups: list[SnapshotGroup] = []
        self.students: list[SnapshotStudent] = []
        self.staff: list[SnapshotStaff] = []
        self.guardian_models: list[SnapshotGuardian] = []
        # Record kinds the document holds; guardians once any guardian block is seen (even
        # one without verzorgers): a document without any carries no guardians at all.
        self.present: set[str] = set()
        self.kept: list[KeptRecord] = []

    # EdexmlVisitor

    def item(
        self,
        kind: str,
        element: etree._Element,
        where: str,  # noqa: ARG002 (EdexmlVisitor's; the reader names the record itself)
    ) -> list[Problem]:
        if kind in RECORD_KIND:
            self.present.add(RECORD_KIND[kind].value)
        try:
            if kind == "school":
                self.school(element)
            elif kind in GROUP_TAGS:
                self.group(element)
            elif kind == "leerling":
                self.student(element)
            elif kind == "leerkracht":
                self.staff_member(element)
        except (_Invalid, _ValidationProblems) as exc:
            problems = [exc.problem] if isinstance(exc, _Invalid) else exc.problems
            entity = KEPT_ENTITY.get(kind)
            key = (element.get("key") or "").strip()
            if entity is None or not key:
                return problems  # the school, or a record without a key: the whole refused
            self.keep(entity, key, exc.tags)
            if entity == "student":
                self.keep_guardians_of(element, key)
        return []

    def set_aside(self, kind: str, element: etree._Element, problems: list[Problem]) -> bool:
        if kind == "verzorger":
            # One guardian of a student the schema refuses: set aside alone (with its links);
            # its other occurrences are skipped, as for a value the reader refuses.
            key = (element.get("key") or "").strip()
            if not key:
                return False
            self.bad_guardians.add(key)
            self.keep("guardian", key, [_tag_of(p.message) for p in problems])
            return True
        entity = KEPT_ENTITY.get(kind)
        key = (element.get("key") or "").strip()
        if entity is None or not key:
            return False
        self.present.add(RECORD_KIND[kind].value)
        self.keep(entity, key, [_tag_of(p.message) for p in problems])
        if entity == "student":
            self.keep_guardians_of(element, key)
        return True

    def keep_guardians_of(self, element: etree._Element, key: str) -> None:
        """A student set aside: its guardians are only known through it, so they stay too."""
        for v in element.iterfind("toevoegingen/blok/verzorger"):
            if v_key := (v.get("key") or "").strip():
                self.kept.append(
                    KeptRecord("guardian", v_key, "leerling", f"its student {key} is set aside")
                )

    def keep(self, entity: str, key: str, tags: list[tuple[str, str]]) -> None:
        self.kept.extend(KeptRecord(entity, key, tag, reason) for tag, reason in tags)

    def end(self) -> list[Problem]:
        self.guardian_models = list(self.guardians.values())
        self.guardians.clear()
        return []

    def snapshot(self) -> EsisSnapshot:
        if self.school_model is None:  # pragma: no cover - the schema requires a school
            raise unprocessable([Problem(None, "EDEX", "school is missing")])
        scope = derive_scope(self.present)
        return EsisSnapshot(
            school=self.school_model,
            # Stated only when partial: a whole school reads the same as its JSON twin.
            carries=None if scope == ALL_KINDS else sorted(scope),
            groups=self.groups,
            students=self.students,
            guardians=self.guardian_models,
            staff=self.staff,
        )

    # records

    def blocks(
        self, el: etree._Element, where: str, *, guardians: bool = False
    ) -> list[etree._Element]:
        """The guardian blocks under `el/toevoegingen`; other blocks are skipped with a warning.

        Blocks of types the schemas do not know were removed (and reported) by the validator.
        """
        found: list[etree._Element] = []
        for blok in el.findall("toevoegingen/blok"):
            kind = (blok.get(XSI_TYPE) or "").strip().rpartition(":")[2][:64]
            if guardians and kind == GUARDIAN_BLOCK:
                found.append(blok)
            else:
                self.warnings.add(
                    f"blok {kind}",
                    f"toevoegingen blok of type '{kind}' skipped ({where})",
                    f"toevoegingen blok of type '{kind}' skipped in {{n}} more elements",
                )
        return found

    def names(self, node: _Node, *, initials: str = "voorletters-1") -> None:
        if node.put("last_name", "achternaam") is None and node.value("roepnaam") is not None:
            # EDEXml allows a roepnaam alone; the model needs a last name.
            node.put("last_name", "roepnaam")
            self.warnings.add(
                "roepnaam",
                f"{node.where} has no achternaam; its roepnaam is the last name",
                "{n} more records have no achternaam; their roepnaam is the last name",
            )
        node.put("name_prefix", "voorvoegsel")
        node.put("initials", initials)
        node.put("given_name", "roepnaam")
        node.put("email", "emailadres")

    def school(self, el: etree._Element) -> None:
        node = _Node(el, "school")
        if node.put("brin", "brincode") is None and el.find("instellingsnummer") is not None:
            raise unprocessable(
                [
                    Problem(
                        _line(el),
                        "school",
                        "brincode is missing (instellingsnummer, the "
                        "Flemish school number, is not supported)",
                    )
                ]
            )
        node.put("branch", "dependancecode")
        node.put("school_year", "schooljaar")
        node.put("generated_at", "aanmaakdatum", _datetime)
        self.blocks(el, "school")
        try:
            self.school_model = node.build(SnapshotSchool)
        except _ValidationProblems as exc:
            raise unprocessable(exc.problems) from None

    def group(self, el: etree._Element) -> None:
        key = _key(el, el.tag)
        node = _Node(el, f"{el.tag} key={key}")
        node.values.update(key=key, is_composite=el.tag == "samengestelde_groep")
        node.put("name", "naam")
        node.put("description", "omschrijving")
        if el.tag == "groep":
            node.put("year_level", "jaargroep", _year_level)
        self.blocks(el, node.where)
        self.groups.append(node.build(SnapshotGroup, self.compact))

    def student(self, el: etree._Element) -> None:
        key = _key(el, "leerling")
        node = _Node(el, f"leerling key={key}")
        left = node.value("uitstroomdatum", _date)
        if left is not None and left <= self.today:
            self.warnings.add(
                "left",
                f"{node.where} has left (uitstroomdatum); not included",
                "{n} more students have left (uitstroomdatum); not included",
            )
            return
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
        student = node.build(SnapshotStudent, self.compact)
        for blok in self.blocks(el, node.where, guardians=True):
            self.present.add(Kind.GUARDIANS.value)
            self.guardian_block(blok, student.key, node.where)
        self.students.append(student)

    def guardian_block(self, blok: etree._Element, student: str, student_where: str) -> None:
        """`student` is the key of the student model, shared by its links."""
        for el in blok.iterfind("verzorger"):
            key = _key(el, f"verzorger in {student_where}")
            node = _Node(el, f"verzorger key={key}")
            try:
                relation = node.value("relatie", _relation)
            except _Invalid as exc:
                self.bad_guardians.add(key)
                self.keep("guardian", key, exc.tags)
                continue
            node.values["key"] = key
            self.names(node, initials="voorletters")
            node.put("phone", "telefoonnummer")
            # Both values are valid already (the student's key, a Relation or None).
            link = GuardianOf.model_construct(
                _fields_set=LINK_FIELDS, student=student, relation=relation
            )
            known = self.guardians.get(key)
            if known is None:
                if key in self.bad_guardians:
                    continue
                node.values["students"] = [link]
                try:
                    model = node.build(SnapshotGuardian, self.compact)
                except _ValidationProblems as exc:
                    self.bad_guardians.add(key)
                    self.keep("guardian", key, exc.tags)  # the student is read still
                    continue
                self.guardians[model.key] = model  # the model's key: one string less
                continue
            if any(known_link.student == student for known_link in known.students):
                continue
            known.students.append(link)
            if not _same_values(known, node.values):
                self.warnings.add(
                    "guardian",
                    f"verzorger key={key} in {student_where} differs from its first "
                    "occurrence; the first is kept",
                    "{n} more verzorgers differ from their first occurrence; the first is kept",
                )

    def staff_member(self, el: etree._Element) -> None:
        key = _key(el, "leerkracht")
        node = _Node(el, f"leerkracht key={key}")
        node.values.update(key=key, active=True)
        self.names(node)
        # EDEXml 2.1 also puts roles on a group assignment; the model has one list. A free
        # text role (rolomschrijving) is a role too.
        role_tags = ("rol", "rolomschrijving")
        roles = [_text(rol) for rol in el if rol.tag in role_tags]
        refs = [ref for ref in el.iterfind("groepen/*") if ref.tag in GROUP_TAGS]
        roles += [_text(rol) for ref in refs for rol in ref if rol.tag in role_tags]
        node.values["roles"] = list(dict.fromkeys(r for r in roles if r))
        node.values["groups"] = list(dict.fromkeys(_key(ref, node.where) for ref in refs))
        self.blocks(el, node.where)
        self.staff.append(node.build(SnapshotStaff, self.compact))


def read_edexml(body: bytes, *, today: dt.date | None = None) -> EdexmlRead:
    """Maps an EDEXml document onto a snapshot; raises FormatError on a bad document.

    The document is validated first (`validate_edexml`, streaming): each record is mapped
    once it is valid. `today` (default: today in the Netherlands) decides whether an
    `uitstroomdatum` is past.
    """
    reader = _Reader(today or dt.datetime.now(AMSTERDAM).date())
    warnings = validate_edexml(body, visitor=reader)
    snapshot, kept = set_aside_dependents(reader.snapshot(), reader.kept)
    return EdexmlRead(
        snapshot=snapshot,
        warnings=warnings + reader.warnings.all() + [k.warning() for k in kept],
        kept=kept,
    )
