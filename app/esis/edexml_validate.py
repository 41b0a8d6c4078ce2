"""Validates an EDEXml 2.0/2.1 document against the shipped XSDs, streaming and safely.

The schemas are the official EDEXml ones with `schooljaar` checked by a pattern, plus this
project's guardian block (`app/esis/xsd/README.md`). `validate_edexml` returns warnings and
raises `FormatError` (422) naming line, element and key of every problem it finds (up to
MAX_ERRORS); values are quoted only for dates and codes, never for names, e-mail addresses or
national ids.

How, in one pass with `lxml.etree.iterparse`:

* Safe parsing: no DTD (a DOCTYPE is refused before parsing where the bytes show it, else at
  the root element), no entity resolution, no network, libxml2's limits left on (no
  `huge_tree`, so its entity amplification guard and text size limits stay), at most
  MAX_DEPTH levels of nesting and MAX_UNIT_ELEMENTS elements in one record; only common
  encodings, and an encoding declaration that contradicts the bytes is refused.
* Streaming validation: XSD validation needs a tree, so each record (`school`, `vestiging`,
  `groep`, `samengestelde_groep`, `leerling`, `leerkracht`) is validated on its own when its
  end tag is read, against its type in the schema, then handed to the visitor (the reader)
  and removed from the tree. Memory is one record plus the skeleton, not the document. At
  the end the skeleton (root, `school`, the containers and the first record of each) is
  validated against the full schema, which checks the order and presence of the parts.
  The schema's identity constraints (unique keys, references to groups and vestigingen)
  cannot see removed records, so they are checked here while streaming, with the same
  rules, and left out of the skeleton's result.
* `toevoegingen/blok` elements whose `xsi:type` the shipped schemas do not know are removed
  before validation and reported once per type with a count (`warnings`).
* The schema is chosen by `school/xsdversie`: 2.0 when it says 2.0, else 2.1.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol, cast

from lxml import etree

from app.esis.errors import FormatError

__all__ = [
    "DEFAULT_VERSION",
    "MAX_DEPTH",
    "PARSER_OPTIONS",
    "EdexmlVisitor",
    "Problem",
    "safe_parser",
    "schema_path",
    "unprocessable",
    "validate_edexml",
]

XSD_DIR = Path(__file__).resolve().parent / "xsd"
SCHEMA_DIRS = {"2.1": "EDEXML-2.1", "2.0": "EDEXML-2.0"}
DEFAULT_VERSION = "2.1"
# Per version: the official schema plus the guardian block (see xsd/README.md).
ENTRY_SCHEMA = "EDEXML.verzorgers.xsd"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
BLOCK_BASE = "ToevoegingsBlokType"

MAX_DEPTH = 64
MAX_ERRORS = 50
# A record (one leerling with its guardians, one group, the school) has tens of elements.
MAX_UNIT_ELEMENTS = 10_000
# Distinct skipped block types reported one by one; more are summed up in one warning.
MAX_SKIPPED_TYPES = 20

# The safe parser settings, shared by every EDEXml parse in the project.
PARSER_OPTIONS: dict[str, bool] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}


def safe_parser() -> etree.XMLParser:
    """An XMLParser with PARSER_OPTIONS, for EDEXml read other than by `validate_edexml`."""
    options = PARSER_OPTIONS
    return etree.XMLParser(
        resolve_entities=options["resolve_entities"],
        no_network=options["no_network"],
        load_dtd=options["load_dtd"],
        huge_tree=options["huge_tree"],
        remove_comments=options["remove_comments"],
        remove_pis=options["remove_pis"],
    )


ROOT = "EDEX"
CONTAINERS: dict[str, tuple[str, ...]] = {
    "vestigingen": ("vestiging",),
    "groepen": ("groep", "samengestelde_groep"),
    "leerlingen": ("leerling",),
    "leerkrachten": ("leerkracht",),
}
RECORDS = frozenset({"school", *(tag for tags in CONTAINERS.values() for tag in tags)})
GROUP_TAGS = ("groep", "samengestelde_groep")

# Encodings a LAS export is written in; anything else is refused before parsing.
ENCODINGS = frozenset(
    {
        "utf-8",
        "utf8",
        "us-ascii",
        "ascii",
        "iso-8859-1",
        "iso8859-1",
        "latin1",
        "latin-1",
        "iso-8859-15",
        "windows-1252",
        "cp1252",
        "utf-16",
        "utf-16le",
        "utf-16be",
    }
)
WIDE_ENCODINGS = ("utf-16", "utf16", "utf-32", "utf32", "ucs-2", "ucs2", "ucs-4", "ucs4")

# Elements whose value may be quoted in a message: dates, codes and keys. Names, e-mail
# addresses, national ids, postcodes and the like are never quoted.
QUOTABLE = frozenset(
    {
        "schooljaar",
        "peildatum",
        "brincode",
        "dependancecode",
        "instellingsnummer",
        "schoolkey",
        "aanmaakdatum",
        "xsdversie",
        "geboortedatum",
        "geslacht",
        "start_ondw_jgr3",
        "jaargroep",
        "instroomdatum",
        "uitstroomdatum",
        "mutatiedatum",
        "etniciteit",
        "land",
        "land_vader",
        "land_moeder",
        "gewicht",
        "gewicht_nieuw",
        "rol",
        "relatie",
        "code",
        "@key",
    }
)
ENUMERATIONS = {
    "jaargroep": "is not a jaargroep code",
    "rol": "is not a rol code",
}
TYPE_PHRASES = {
    "xs:date": "is not a date",
    "xs:dateTime": "is not a date and time",
    "xs:integer": "is not a whole number",
    "xs:decimal": "is not a number",
    "xs:boolean": "is not true or false",
}

_FIRST_ELEMENT = re.compile(rb"<[A-Za-z_:]")
_DECLARATION = re.compile(rb"^(?:\xef\xbb\xbf)?<\?xml\s[^>]*?\bencoding\s*=\s*[\"']([^\"'>]{0,64})")
_SYNTAX_POSITION = re.compile(r"(, line \d+, column \d+|\s*Bytes:.*)$")
_PATH_STEP = re.compile(r"^(?:[^:\[\]]+:)?([^\[\]]+)(?:\[(\d+)\])?$")
_LIBXML = re.compile(r"^Element '([^']*)'(?:, attribute '([^']*)')?: (.*?)\.?$", re.S)
_ATOMIC = re.compile(
    r"^'(.*)' is not a valid value of the (?:local )?(?:atomic|list|union) type(?: '([^']*)')?$",
    re.S,
)
# libxml2 leaves the value out of some facet messages (the length ones).
_FACET = re.compile(r"^\[facet '(\w+)'\] The value (?:'(.*)' )?((?:is|has) .*)$", re.S)
_EXPECTED = re.compile(r"Expected is (?:one of )?\( (.*) \)")
_QUOTED = re.compile(r"'[^']*'")
_TYPE_NAME = re.compile(r"[^\w.\-]")


@dataclass(frozen=True)
class Problem:
    """One problem in the document: the line, the record it is in, what is wrong."""

    line: int | None
    where: str
    message: str

    def as_dict(self) -> dict[str, str]:
        field = f"line {self.line}, {self.where}" if self.line else self.where
        return {"field": field, "message": self.message}


def unprocessable(problems: Sequence[Problem]) -> FormatError:
    """One 422 listing every problem in document order."""
    ordered = sorted(problems, key=lambda p: p.line or 0)
    errors = [p.as_dict() for p in ordered]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    if len(errors) > 5:
        detail += f" (and {len(errors) - 5} more)"
    return FormatError(detail, errors=errors)


class EdexmlVisitor(Protocol):
    """Receives each record that is valid, before it is removed from the tree."""

    def item(self, kind: str, element: etree._Element, where: str) -> list[Problem]:
        """`kind` is the record's tag (`school`, `groep`, `leerling`, ...)."""
        ...

    def end(self) -> list[Problem]:
        """Called once after the last record, if the document was read to its end."""
        ...


def schema_path(version: str = DEFAULT_VERSION) -> Path:
    """The entry XSD of a version: the official schema plus the guardian block."""
    return XSD_DIR / SCHEMA_DIRS[version] / ENTRY_SCHEMA


def validate_edexml(body: bytes, *, visitor: EdexmlVisitor | None = None) -> list[str]:
    """Validates `body`; returns warnings (skipped blocks), raises FormatError on errors.

    With a `visitor`, each valid record is handed to it while the document streams by; the
    visitor's problems are reported together with the schema's.
    """
    _check_prolog(body)
    run = _Run(visitor)
    try:
        run.stream(body)
        run.finish()
    except _Stop:
        pass
    except etree.XMLSyntaxError as exc:
        message = _SYNTAX_POSITION.sub("", exc.msg or "syntax error")
        raise _fail(exc.lineno or None, "document", f"malformed XML: {message}") from None
    finally:
        run.give_back()
    if run.problems:
        raise unprocessable(run.problems)
    return run.warnings()


# --- the prolog -------------------------------------------------------------------------------


def _fail(line: int | None, where: str, message: str) -> FormatError:
    return unprocessable([Problem(line, where, message)])


def _is_wide(body: bytes) -> bool:
    """UTF-16 or UTF-32 by byte order mark or by the zero bytes around `<`."""
    return body[:2] in (b"\xff\xfe", b"\xfe\xff") or body[:4] in (
        b"<\x00?\x00",
        b"\x00<\x00?",
        b"<\x00\x00\x00",
        b"\x00\x00\x00<",
    )


def _check_prolog(body: bytes) -> None:
    if _is_wide(body):
        return  # libxml2 reads the declaration; the root element check refuses a DOCTYPE
    declared = _DECLARATION.match(body)
    if declared is not None:
        name = declared.group(1).decode("ascii", "replace").strip()
        shown = _TYPE_NAME.sub("?", name)[:40]
        if name.lower().startswith(WIDE_ENCODINGS):
            raise _fail(1, "document", f"the declared encoding '{shown}' does not match the bytes")
        if name.lower() not in ENCODINGS:
            raise _fail(1, "document", f"encoding '{shown}' is not supported; use UTF-8")
    # A DOCTYPE can only come before the root element; this refuses it before libxml2 reads
    # any entity declaration in it.
    first = _FIRST_ELEMENT.search(body)
    doctype = body.find(b"<!DOCTYPE", 0, first.start() if first else len(body))
    if doctype >= 0:
        raise _fail(body.count(b"\n", 0, doctype) + 1, "document", "DOCTYPE is not allowed")


# --- the schemas ------------------------------------------------------------------------------

_FRAGMENTS = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:include schemaLocation="{entry}"/>
  <xs:element name="school" type="SchoolType"/>
  <xs:element name="vestiging" type="VestigingType"/>
  <xs:element name="groep" type="GroepType"/>
  <xs:element name="samengestelde_groep" type="SamengesteldeGroepType"/>
  <xs:element name="leerling" type="LeerlingType"/>
  <xs:element name="leerkracht" type="LeerkrachtType"/>
</xs:schema>"""

# Compiled schemas, lent to one run at a time: an XMLSchema object keeps the error log of
# its last validation on itself, so two threads must not share one. The pool grows to the
# number of validations that ever ran at once (half a MB and a few ms per schema).
_pool_lock = threading.Lock()
_pool: dict[str, list[etree.XMLSchema]] = {version: [] for version in SCHEMA_DIRS}


def _xsd_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def _build_schema(version: str) -> etree.XMLSchema:
    """The version's schema with the records as global elements, so that one record can be
    validated on its own; `EDEX` stays the global element for the skeleton."""
    base = XSD_DIR / SCHEMA_DIRS[version] / "esis-sync.records.xsd"
    document = etree.fromstring(
        _FRAGMENTS.format(entry=ENTRY_SCHEMA), _xsd_parser(), base_url=str(base)
    )
    return etree.XMLSchema(document)


def _borrow(version: str) -> etree.XMLSchema:
    with _pool_lock:
        if _pool[version]:
            return _pool[version].pop()
    return _build_schema(version)


def _give_back(version: str, schema: etree.XMLSchema) -> None:
    with _pool_lock:
        _pool[version].append(schema)


class _LogEntry(Protocol):
    """What lxml's error log entries carry (lxml-stubs do not describe them)."""

    message: str
    path: str | None
    line: int


def _entries(schema: etree.XMLSchema) -> list[_LogEntry]:
    return cast("list[_LogEntry]", list(cast(Iterable[Any], schema.error_log)))


@cache
def known_block_types(version: str) -> frozenset[str]:
    """Names of the `ToevoegingsBlokType` extensions the shipped schemas define."""
    names: set[str] = set()
    files = [*sorted((XSD_DIR / SCHEMA_DIRS[version]).glob("*.xsd"))]
    files += sorted(XSD_DIR.glob("*.xsd"))
    for path in files:
        tree = etree.parse(str(path), _xsd_parser())
        found = tree.xpath(
            "//xs:complexType[xs:complexContent/xs:extension/@base=$base]/@name",
            namespaces={"xs": "http://www.w3.org/2001/XMLSchema"},
            base=BLOCK_BASE,
        )
        names.update(str(name) for name in cast(list[Any], found))
    return frozenset(names)


# --- schema messages --------------------------------------------------------------------------


def _subject(element: str, attribute: str | None) -> tuple[str, str]:
    """The element (or `element @attribute`) a message is about, and its QUOTABLE name."""
    if attribute is None:
        return element, element
    name = "xsi:type" if attribute == XSI_TYPE else attribute.rpartition("}")[2]
    return f"{element} @{name}", f"@{name}"


def _phrase_facet(subject: str, quotable: bool, facet: str, value: str | None, rest: str) -> str:
    shown = f"{subject} '{(value or '')[:40]}'" if quotable else subject
    element = subject.partition(" ")[0]
    if facet == "enumeration":
        if element in ENUMERATIONS and " @" not in subject:
            return f"{shown} {ENUMERATIONS[element]}"
        allowed = [v.strip("'") for v in re.findall(r"'[^']*'", rest.partition("{")[2])]
        if 0 < len(allowed) <= 8:
            return f"{shown} is not one of {', '.join(allowed)}"
        return f"{shown} is not an allowed code"
    if facet == "pattern":
        pattern = rest.rpartition("pattern ")[2].strip("'")
        return f"{shown} does not match the pattern {pattern}"
    limits = re.findall(r"'(\d+)'", rest)
    limit = limits[-1] if limits else "?"
    if facet == "maxLength":
        return f"{subject} is longer than {limit} characters"
    if facet == "minLength":
        return f"{subject} is empty" if limit == "1" else f"{subject} is shorter than {limit}"
    if facet == "length":
        return f"{subject} is not {limit} characters long"
    return f"{shown} is not allowed by the schema ({facet})"


def _phrase(message: str) -> tuple[str, str]:
    """(subject, message) in this project's words for a libxml2 schema message."""
    match = _LIBXML.match(message.strip())
    if match is None:
        return "", _QUOTED.sub("'…'", message.strip().rstrip("."))
    element, attribute, rest = match.groups()
    element = element.rpartition("}")[2]
    subject, name = _subject(element, attribute)
    quotable = name in QUOTABLE
    if atomic := _ATOMIC.match(rest):
        value, type_name = atomic.groups()
        phrase = TYPE_PHRASES.get(type_name or "", "is not valid")
        return subject, f"{subject} '{value[:40]}' {phrase}" if quotable else f"{subject} {phrase}"
    if facet := _FACET.match(rest):
        name, value, tail = facet.groups()
        return subject, _phrase_facet(subject, quotable and value is not None, name, value, tail)
    expected = _EXPECTED.search(rest)
    wanted = expected.group(1) if expected else ""
    if rest.startswith("This element is not expected"):
        return subject, f"{element} is not expected here" + (
            f" (expected: {wanted})" if wanted else ""
        )
    if rest.startswith("Missing child element"):
        if "," in wanted:
            return subject, f"an element is missing; expected one of {wanted}"
        return subject, f"{wanted or 'a child element'} is missing"
    if required := re.match(r"^The attribute '([^']*)' is required but missing$", rest):
        return subject, f"{element} has no {required.group(1)}"
    if rest.startswith("The attribute") and rest.endswith("is not allowed"):
        return subject, f"{subject} is not allowed"
    if rest.startswith("Character content other than whitespace is not allowed"):
        return subject, f"{element} has text where only elements are allowed"
    if rest.startswith("Element content is not allowed") or rest.startswith(
        "Character content is not allowed"
    ):
        return subject, f"{element} may not have this content"
    if rest.startswith("The type definition is abstract"):
        return subject, f"{element} has no xsi:type"
    if rest.startswith("The QName value"):
        return subject, f"{subject}: the type is not known"
    return subject, f"{subject}: {_QUOTED.sub(chr(39) + '…' + chr(39), rest)}"


def _is_identity(message: str) -> bool:
    return any(
        part in message for part in ("identity-constraint", "key-sequence", "keyref", "Duplicate")
    )


# --- the run ----------------------------------------------------------------------------------


class _Stop(Exception):
    """MAX_ERRORS problems were found: stop reading."""


def _line(el: etree._Element) -> int | None:
    line = el.sourceline  # lxml-stubs type this attribute badly
    return line if isinstance(line, int) else None


def _label(el: etree._Element) -> str:
    if el.tag == "school" or el.tag == ROOT:
        return str(el.tag)
    key = (el.get("key") or "").strip()
    return f"{el.tag} key={key[:100]}" if key else str(el.tag)


@dataclass
class _Skipped:
    count: int
    first: str


@dataclass
class _Container:
    tag: str
    kept: int = 0  # records seen; the first stays in the tree for the skeleton


@dataclass
class _Run:
    visitor: EdexmlVisitor | None
    version: str = DEFAULT_VERSION
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, _Skipped] = field(default_factory=dict)
    skipped_other: int = 0  # blocks of types beyond the first MAX_SKIPPED_TYPES
    seen: set[tuple[int | None, str, str]] = field(default_factory=set)
    root: etree._Element | None = None
    school_seen: bool = False
    container: _Container | None = None
    unexpected: int = 0
    # Identity constraints of EDEXML.structuur.xsd: key -> line of its first record.
    keys: dict[str, dict[str, int | None]] = field(
        default_factory=lambda: {
            name: {}
            for name in (
                "vestiging",
                "groep",
                "leerling",
                "leerkracht",
                "eckid leerling",
                "eckid leerkracht",
            )
        }
    )
    composite: set[str] = field(default_factory=set)
    borrowed: dict[str, etree.XMLSchema] = field(default_factory=dict)

    def schema(self) -> etree.XMLSchema:
        if self.version not in self.borrowed:
            self.borrowed[self.version] = _borrow(self.version)
        return self.borrowed[self.version]

    def give_back(self) -> None:
        for version, schema in self.borrowed.items():
            _give_back(version, schema)
        self.borrowed.clear()

    # problems

    def add(self, problems: Sequence[Problem]) -> None:
        self.problems.extend(problems)
        if len(self.problems) >= MAX_ERRORS:
            raise _Stop

    def schema_problems(self, schema: etree.XMLSchema, base: etree._Element) -> list[Problem]:
        out: list[Problem] = []
        for entry in _entries(schema):
            if base.tag == ROOT and _is_identity(entry.message):
                continue  # checked while streaming; the skeleton lacks most records
            chain = _resolve(base, entry.path)
            where = _where(chain)
            subject, message = _phrase(entry.message)
            line = entry.line or _line(chain[-1])
            if (line, where, subject or message) in self.seen:
                continue
            self.seen.add((line, where, subject or message))
            out.append(Problem(line, where, message))
        return out

    # streaming

    def stream(self, body: bytes) -> None:
        depth = 0
        unit = 0
        events = etree.iterparse(io.BytesIO(body), events=("start", "end"), **PARSER_OPTIONS)
        for event, el in events:
            if event == "start":
                depth += 1
                if depth == 1:
                    self.start_root(el)
                elif depth == 2:
                    unit = 0
                    self.container = _Container(str(el.tag)) if el.tag in CONTAINERS else None
                elif depth == 3 and self.container is not None:
                    unit = 0
                unit += 1
                if depth > MAX_DEPTH:
                    raise _fail(
                        _line(el), "document", f"elements are nested deeper than {MAX_DEPTH}"
                    )
                if unit > MAX_UNIT_ELEMENTS:
                    raise _fail(
                        _line(el),
                        "document",
                        f"more than {MAX_UNIT_ELEMENTS} elements in one record",
                    )
                continue
            if depth == 2:
                self.end_top(el)
            elif depth == 3:
                self.end_child(el)
            depth -= 1

    def start_root(self, el: etree._Element) -> None:
        if getattr(el.getroottree().docinfo, "doctype", ""):
            raise _fail(_line(el), "document", "DOCTYPE is not allowed")
        if el.tag != ROOT:
            raise _fail(_line(el), "document", f"root element is not EDEX: '{el.tag}'"[:120])
        self.root = el

    def end_top(self, el: etree._Element) -> None:
        if el.tag == "school" and not self.school_seen:
            self.school_seen = True
            self.choose_version(el)
            self.record(el)
        elif el.tag not in CONTAINERS:
            self.keep_unexpected(el)
        self.container = None

    def end_child(self, el: etree._Element) -> None:
        parent = el.getparent()
        if self.container is None:
            if parent is not None and parent.tag != "school":
                parent.remove(el)  # inside an unexpected element: not needed for its error
            return
        if el.tag not in CONTAINERS[self.container.tag]:
            self.keep_unexpected(el)
            return
        self.container.kept += 1
        self.record(el)
        if self.container.kept > 1 and parent is not None:
            # The first record stays for the skeleton. Events come a chunk behind the parser,
            # so the tail may be read already: it goes with the record and is checked here.
            if el.tail and el.tail.strip():
                message = f"{parent.tag} has text after {_label(el)}; only elements are allowed"
                self.add([Problem(_line(el), ROOT, message)])
            parent.remove(el)

    def keep_unexpected(self, el: etree._Element) -> None:
        """Kept, emptied, for the skeleton's error; MAX_ERRORS of them at most."""
        tail = el.tail
        el.clear()
        el.tail = tail  # whitespace, or text the skeleton's validation reports
        self.unexpected += 1
        if self.unexpected > MAX_ERRORS:
            self.problems.append(
                Problem(_line(el), "document", f"more than {MAX_ERRORS} unexpected elements")
            )
            raise _Stop

    def choose_version(self, school: etree._Element) -> None:
        declared = (school.findtext("xsdversie") or "").strip()
        if declared.startswith("2.0"):
            self.version = "2.0"
        elif declared and not declared.startswith("2.1"):
            shown = _TYPE_NAME.sub("?", declared)[:16]
            self.notes.append(
                f"xsdversie '{shown}' is not 2.0 or 2.1; the file was validated as EDEXml 2.1"
            )

    def record(self, el: etree._Element) -> None:
        where = _label(el)
        self.skip_blocks(el, where)
        schema = self.schema()
        problems = [] if schema.validate(el) else self.schema_problems(schema, el)
        problems += self.identity(el, where, valid=not problems)
        if not problems and self.visitor is not None:
            problems = self.visitor.item(str(el.tag), el, where)
        self.add(problems)

    def skip_blocks(self, el: etree._Element, where: str) -> None:
        known = known_block_types(self.version)
        for extra in el.findall("toevoegingen"):
            for blok in extra.findall("blok"):
                declared = blok.get(XSI_TYPE)
                if declared is None:
                    continue  # the schema says what is wrong
                name = declared.strip().rpartition(":")[2]
                if name in known:
                    if name != declared:
                        blok.set(XSI_TYPE, name)  # the reader ignores the prefix too
                    continue
                extra.remove(blok)
                shown = _TYPE_NAME.sub("?", name)[:64]
                if shown in self.skipped:
                    self.skipped[shown].count += 1
                elif len(self.skipped) < MAX_SKIPPED_TYPES:
                    self.skipped[shown] = _Skipped(1, where)
                else:
                    self.skipped_other += 1
            if len(extra) == 0:
                el.remove(extra)

    def identity(self, el: etree._Element, where: str, *, valid: bool) -> list[Problem]:
        out: list[Problem] = []
        tag = str(el.tag)
        if tag == "school":
            return out

        def unique(table: str, value: str | None, what: str) -> None:
            value = (value or "").strip()
            if not value:
                return
            seen = self.keys[table]
            if value in seen:
                out.append(
                    Problem(_line(el), where, f"duplicate {what} (first at line {seen[value]})")
                )
            else:
                seen[value] = _line(el)

        unique("groep" if tag in GROUP_TAGS else tag, el.get("key"), "key")
        if tag == "samengestelde_groep":
            self.composite.add((el.get("key") or "").strip())
        if tag in ("leerling", "leerkracht"):
            unique(f"eckid {tag}", el.get("eckid"), "eckid")
        if not valid:
            return out
        refs: list[tuple[etree._Element, bool]] = []
        if tag == "leerling":
            refs += [(ref, False) for ref in el.findall("groep")]
            refs += [(ref, True) for ref in el.findall("samengestelde_groepen/samengestelde_groep")]
            for ref in el.findall("vestiging"):
                key = (ref.get("key") or "").strip()
                if key not in self.keys["vestiging"]:
                    message = f"vestiging '{key[:100]}' is not in vestigingen"
                    out.append(Problem(_line(ref), where, message))
        elif tag == "leerkracht":
            refs += [(ref, ref.tag != "groep") for ref in el.iterfind("groepen/*")]
        for ref, composite in refs:
            key = (ref.get("key") or "").strip()
            shown = key[:100]
            if key not in self.keys["groep"]:
                message = f"{ref.tag} '{shown}' is not in groepen"
            elif composite == (key in self.composite):
                continue
            elif composite:
                message = f"{ref.tag} '{shown}' is a groep, not a samengestelde_groep"
            else:
                message = f"{ref.tag} '{shown}' is a samengestelde_groep, not a groep"
            out.append(Problem(_line(ref), where, message))
        return out

    def finish(self) -> None:
        if self.root is None:  # pragma: no cover - iterparse raises on an empty document
            raise _fail(None, "document", "no root element")
        schema = self.schema()
        if not schema.validate(self.root):
            self.add(self.schema_problems(schema, self.root))
        if self.visitor is not None:
            self.add(self.visitor.end())

    def warnings(self) -> list[str]:
        out = list(self.notes)
        for name, skipped in self.skipped.items():
            if skipped.count == 1:
                out.append(f"toevoegingen blok of type '{name}' skipped ({skipped.first})")
            else:
                out.append(
                    f"toevoegingen blok of type '{name}' skipped {skipped.count} times "
                    f"(first in {skipped.first})"
                )
        if self.skipped_other:
            out.append(
                f"{self.skipped_other} more toevoegingen blokken of other unknown types skipped"
            )
        return out


def _resolve(base: etree._Element, path: str | None) -> list[etree._Element]:
    """The elements along a libxml2 error path (`/leerling/toevoegingen/blok[2]/...`)."""
    chain = [base]
    steps = [s for s in (path or "").split("/") if s][1:]
    for step in steps:
        match = _PATH_STEP.match(step)
        if match is None:
            break
        name, index = match.group(1), int(match.group(2) or 1)
        children = [c for c in chain[-1] if c.tag == name]
        if len(children) < index:
            break
        chain.append(children[index - 1])
    return chain


def _where(chain: list[etree._Element]) -> str:
    """The record a problem is in: a guardian, else the record, else the school or EDEX."""
    for el in reversed(chain):
        if el.tag == "verzorger":
            return _label(el)
    for el in chain:  # root first: a record comes before any group reference in it
        if el.tag in RECORDS:
            return _label(el)
    return ROOT
