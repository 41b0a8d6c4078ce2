"""Reads an EDEXml 2.0/2.1 document, plus this project's guardian block, into an EsisSnapshot.

The XML shape and the guardian block (`toevoegingen/blok xsi:type="VerzorgersGegevensType"`)
are described in `docs/esis-protocol.md`. Messages (errors and warnings) name elements, keys
and line numbers, and may quote a bad date or code; they never quote names, e-mail addresses
or national ids, which are not even read.

The document is parsed safely and validated against the shipped XSDs by
`app.esis.edexml_validate.validate_edexml`, which streams it (or walks its tree): this reader
is its visitor and maps each record once it is valid, before it is dropped from memory. A
document with any problem is refused as a whole, with every problem found (up to 50), but
for a record with a value that cannot be used, which is set aside (`leniency.py`). The
pieces the models are built with (a record's values and their lines, the value conversions,
the compaction of a large read, the warnings) are `edexml_nodes.py`.
"""

from __future__ import annotations

import datetime as dt

from lxml import etree

from app.esis.edexml_fields import (
    GROUP_TAGS,
    GUARDIAN_BLOCK,
    GUARDIAN_FIELDS,
    GUARDIANS_KIND,
    KEPT_ENTITY,
    MANY_STUDENTS,
    NAME_FIELDS,
    RECORD_KIND,
    ROLE_TAGS,
    STUDENT_FIELDS,
    EdexmlRead,
    block_type,
    warn_block,
    warn_differs,
    warn_left,
    warn_roepnaam,
)
from app.esis.edexml_nodes import (
    AMSTERDAM,
    ONE_BY_ONE,
    Compactor,
    Invalid,
    Node,
    ValidationProblems,
    Warnings,
    assemble,
    key_of,
    parse_date,
    parse_datetime,
    parse_gender,
    parse_relation,
    parse_year_level,
    same_values,
    source_line,
    tag_of,
    text_of,
)
from app.esis.edexml_quick import read_valid
from app.esis.edexml_validate import (
    WHOLE_MAX_BYTES,
    Problem,
    parse_whole,
    unprocessable,
    validate_edexml,
)
from app.esis.errors import FormatError
from app.esis.leniency import KeptRecord, set_aside_dependents
from app.esis.schemas import (
    ALL_KINDS,
    EsisSnapshot,
    GuardianOf,
    Relation,
    SnapshotGroup,
    SnapshotGuardian,
    SnapshotSchool,
    SnapshotStaff,
    SnapshotStudent,
    derive_scope,
)
from app.esis.xml import release_heap

__all__ = ["EdexmlRead", "read_edexml"]

# Shared by every GuardianOf (see Compactor); the models are frozen.
LINK_FIELDS = {"student", "relation"}


class _Reader:
    """The visitor of `validate_edexml`: maps each valid record onto the snapshot's models."""

    def __init__(self, today: dt.date) -> None:
        self.today = today
        self.warnings = Warnings()
        # Each guardian is built and validated at its first occurrence, whose values win; the
        # links of later occurrences are added to its `students` list while the document is
        # read (the model is frozen to its users, who only get it afterwards).
        self.guardians: dict[str, SnapshotGuardian] = {}
        self.bad_guardians: set[str] = set()  # refused at their first occurrence
        # The students of a guardian linked to more than MANY_STUDENTS, by the guardian's key:
        # looked up, not searched, and its list appended to, not copied (a review found one
        # guardian of 5,000 students in a 1 MB body took 11 s).
        self.many: dict[str, set[str]] = {}
        self.compact = Compactor()
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
            self.present.add(RECORD_KIND[kind])
        try:
            if kind == "school":
                self.school(element)
            elif kind in GROUP_TAGS:
                self.group(element)
            elif kind == "leerling":
                self.student(element)
            elif kind == "leerkracht":
                self.staff_member(element)
        except (Invalid, ValidationProblems) as exc:
            problems = [exc.problem] if isinstance(exc, Invalid) else exc.problems
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
            self.keep("guardian", key, [tag_of(p.message) for p in problems])
            return True
        entity = KEPT_ENTITY.get(kind)
        key = (element.get("key") or "").strip()
        if entity is None or not key:
            return False
        self.present.add(RECORD_KIND[kind])
        self.keep(entity, key, [tag_of(p.message) for p in problems])
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

    def blocks(self, node: Node, *, guardians: bool = False) -> list[etree._Element]:
        """The guardian blocks under the record's `toevoegingen`; other blocks are skipped with
        a warning.

        Blocks of types the schemas do not know were removed (and reported) by the validator.
        """
        found: list[etree._Element] = []
        if "toevoegingen" not in node.children:
            return found  # most groups and staff: no toevoegingen at all
        # el.findall("toevoegingen/blok"), without ElementPath's generators.
        extras = node.el.iterchildren("toevoegingen")
        for blok in [b for t in extras for b in t.iterchildren("blok")]:
            kind = block_type(blok)
            if guardians and kind == GUARDIAN_BLOCK:
                found.append(blok)
            else:
                warn_block(self.warnings, kind, node.where)
        return found

    def names(self, node: Node, fields: tuple[tuple[str, str], ...] = NAME_FIELDS) -> None:
        """The last name, then `fields` (the other names and what else the record has)."""
        if node.put("last_name", "achternaam") is None and node.value("roepnaam") is not None:
            # EDEXml allows a roepnaam alone; the model needs a last name.
            node.put("last_name", "roepnaam")
            warn_roepnaam(self.warnings, node.where)
        node.fill(fields)

    def school(self, el: etree._Element) -> None:
        node = Node(el, "school")
        if node.put("brin", "brincode") is None and el.find("instellingsnummer") is not None:
            raise unprocessable(
                [
                    Problem(
                        source_line(el),
                        "school",
                        "brincode is missing (instellingsnummer, the "
                        "Flemish school number, is not supported)",
                    )
                ]
            )
        node.put("branch", "dependancecode")
        node.put("school_year", "schooljaar")
        node.put("generated_at", "aanmaakdatum", parse_datetime)
        self.blocks(node)
        try:
            self.school_model = node.build(SnapshotSchool)
        except ValidationProblems as exc:
            raise unprocessable(exc.problems) from None

    def group(self, el: etree._Element) -> None:
        key = key_of(el, el.tag)
        node = Node(el, str(el.tag), key)
        node.values.update(key=key, is_composite=el.tag == "samengestelde_groep")
        node.put("name", "naam")
        node.put("description", "omschrijving")
        if el.tag == "groep":
            node.put("year_level", "jaargroep", parse_year_level)
        self.blocks(node)
        self.groups.append(node.build(SnapshotGroup, self.compact))

    def student(self, el: etree._Element) -> None:
        key = key_of(el, "leerling")
        node = Node(el, "leerling", key)
        left = node.value("uitstroomdatum", parse_date)
        if left is not None and left <= self.today:
            warn_left(self.warnings, node.where)
            return
        node.values["key"] = key
        self.names(node, STUDENT_FIELDS)
        node.put("birth_date", "geboortedatum", parse_date)
        node.put("gender", "geslacht", parse_gender)
        node.put("year_level", "jaargroep", parse_year_level)
        where = node.where
        if (group := node.children.get("groep")) is not None:  # el.find("groep")
            node.values["group"] = key_of(group, where)
        node.values["composite_groups"] = (
            [
                key_of(ref, where)
                for refs in el.iterchildren("samengestelde_groepen")
                for ref in refs.iterchildren("samengestelde_groep")
            ]
            if "samengestelde_groepen" in node.children
            else []
        )
        student = node.build(SnapshotStudent, self.compact)
        for blok in self.blocks(node, guardians=True):
            self.present.add(GUARDIANS_KIND)
            self.guardian_block(blok, student.key, where)
        self.students.append(student)

    def guardian_block(self, blok: etree._Element, student: str, student_where: str) -> None:
        """`student` is the key of the student model, shared by its links."""
        for el in blok.iterchildren("verzorger"):  # blok.iterfind("verzorger")
            key = (el.get("key") or "").strip()
            if not key:
                key_of(el, f"verzorger in {student_where}")  # raises: no key
            node = Node(el, "verzorger", key)
            try:
                relation = node.value("relatie", parse_relation)
            except Invalid as exc:
                self.bad_guardians.add(key)
                self.keep("guardian", key, exc.tags)
                continue
            node.values["key"] = key
            self.names(node, GUARDIAN_FIELDS)
            known = self.guardians.get(key)
            if known is None:
                if key in self.bad_guardians:
                    continue
                node.values["students"] = [self.link(student, relation)]
                try:
                    model = node.build(SnapshotGuardian, self.compact)
                except ValidationProblems as exc:
                    self.bad_guardians.add(key)
                    self.keep("guardian", key, exc.tags)  # the student is read still
                    continue
                self.guardians[model.key] = model  # the model's key: one string less
                continue
            many = self.many.get(key)
            if many is not None:  # a guardian of many students: their keys in a set
                if student in many:
                    continue
                many.add(student)
                known.students.append(self.link(student, relation))  # its own list, growing
            else:
                if any(known_link.student == student for known_link in known.students):
                    continue
                # A list of the exact length, not append's spare room: a third of a board's
                # guardians have a second student.
                links = [*known.students, self.link(student, relation)]
                object.__setattr__(known, "students", links)  # frozen to its users
                if len(links) > MANY_STUDENTS:
                    self.many[key] = {link.student for link in links}
            if not same_values(known, node.values):
                warn_differs(self.warnings, key, student_where)

    @staticmethod
    def link(student: str, relation: Relation | None) -> GuardianOf:
        """What `assemble(GuardianOf, LINK_FIELDS, {"student": ..., "relation": ...})` builds,
        written out: one per link of a guardian. Both values are valid already (the student's
        key, a Relation or None)."""
        if not ONE_BY_ONE:
            return assemble(GuardianOf, LINK_FIELDS, {"student": student, "relation": relation})
        link = GuardianOf.__new__(GuardianOf)
        object.__setattr__(link, "student", student)  # frozen to its users
        object.__setattr__(link, "relation", relation)
        object.__setattr__(link, "__pydantic_fields_set__", LINK_FIELDS)
        object.__setattr__(link, "__pydantic_extra__", None)
        object.__setattr__(link, "__pydantic_private__", None)
        return link

    def staff_member(self, el: etree._Element) -> None:
        key = key_of(el, "leerkracht")
        node = Node(el, "leerkracht", key)
        node.values.update(key=key, active=True)
        self.names(node)
        # EDEXml 2.1 also puts roles on a group assignment; the model has one list. A free
        # text role (rolomschrijving) is a role too.
        roles = [text_of(rol) for rol in el if rol.tag in ROLE_TAGS]
        refs = [ref for ref in el.iterfind("groepen/*") if ref.tag in GROUP_TAGS]
        roles += [text_of(rol) for ref in refs for rol in ref if rol.tag in ROLE_TAGS]
        node.values["roles"] = list(dict.fromkeys(r for r in roles if r))
        node.values["groups"] = list(dict.fromkeys(key_of(ref, node.where) for ref in refs))
        self.blocks(node)
        self.staff.append(node.build(SnapshotStaff, self.compact))


def read_edexml(
    body: bytes | etree._Element,
    *,
    today: dt.date | None = None,
    whole_max_bytes: int = WHOLE_MAX_BYTES,
) -> EdexmlRead:
    """Maps an EDEXml document onto a snapshot; raises FormatError on a bad document.

    A document parsed whole (bytes of at most `whole_max_bytes`, see `validate_edexml`, or
    a tree) is read quickly when it is valid (`edexml_quick.read_valid`); otherwise, and for
    a body that streams, it is validated record by record (`validate_edexml`), each record
    mapped once it is valid, every problem named. `today` (default: today in the
    Netherlands) decides whether an `uitstroomdatum` is past.
    """
    today = today or dt.datetime.now(AMSTERDAM).date()
    if not isinstance(body, bytes):
        return read_valid(body, today) or _careful(body, today, whole_max_bytes)
    root = parse_whole(body, whole_max_bytes)
    if root is None:
        return _careful(body, today, 0)  # streams: `parse_whole` said so already
    error: FormatError | None = None
    try:
        read = read_valid(root, today, parsed=True) or _careful(root, today, whole_max_bytes)
    except FormatError as exc:
        # Its traceback holds the frames that held the tree: the tree would outlive the trim.
        error = exc.with_traceback(None)
        error.__context__ = None
    root = None  # the last reference to the tree: libxml2 frees it here
    release_heap()
    if error is not None:
        raise error from None
    return read


def _careful(body: bytes | etree._Element, today: dt.date, whole_max_bytes: int) -> EdexmlRead:
    """Each record validated on its own and mapped by `_Reader`, every problem named."""
    reader = _Reader(today)
    warnings = validate_edexml(body, visitor=reader, whole_max_bytes=whole_max_bytes)
    snapshot, kept = set_aside_dependents(reader.snapshot(), reader.kept)
    return EdexmlRead(
        snapshot=snapshot,
        warnings=warnings + reader.warnings.all() + [k.warning() for k in kept],
        kept=kept,
    )
