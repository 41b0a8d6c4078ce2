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
  rules; the compiled schemas leave them out (`edexml_schemas`).
* `toevoegingen/blok` elements whose `xsi:type` the shipped schemas do not know are removed
  before validation and reported once per type with a count (`warnings`).
* The schema is chosen by `school/xsdversie`: 2.0 when it says 2.0, else 2.1.
* A body of at most WHOLE_MAX_BYTES is parsed whole and its tree walked (`_Run.walk`) with
  the same checks, in the same order, as it would stream: libxml2 builds a tree faster than
  it hands out events, and the walk visits only records and the parts around them (`_whole`
  says which bodies, and why the others stream: a wide encoding, dense markup, a syntax
  error, which streaming names at its line as it always has).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NoReturn, Protocol, cast

from lxml import etree

from app.esis.edexml_messages import (
    Problem,
    entries,
    fail,
    is_identity,
    label,
    line_of,
    phrase,
    record_of,
    resolve,
    unprocessable,
)
from app.esis.edexml_schemas import (
    CONTAINERS,
    DEFAULT_VERSION,
    GROUP_TAGS,
    ROOT,
    XSI_TYPE,
    borrow,
    give_back,
    known_block_types,
    schema_path,
)
from app.esis.errors import FormatError
from app.esis.xml import (
    ENCODINGS,
    WIDE_ENCODINGS,
    blanks_droppable,
    declared_encoding,
    doctype_line,
    has_doctype,
    is_wide,
    release_heap,
    safe_iterparse,
    safe_parser,
    syntax_message,
)

__all__ = [
    "DEFAULT_VERSION",
    "MAX_DEPTH",
    "WHOLE_MAX_BYTES",
    "EdexmlVisitor",
    "Problem",
    "parse_whole",
    "schema_path",
    "schema_version",
    "too_big",
    "unprocessable",
    "validate_edexml",
]

MAX_DEPTH = 64
MAX_ERRORS = 50
# A record (one leerling with its guardians, one group, the school) has tens of elements.
MAX_UNIT_ELEMENTS = 10_000
# Distinct skipped block types reported one by one; more are summed up in one warning.
MAX_SKIPPED_TYPES = 20
# Bodies up to this size are parsed whole (see the module's docstring): a school of up to
# about 1,450 students, most schools. A tree is about 4 times its body when whitespace
# between elements is dropped (at most about 8 MB), 7 times when it is kept
# (`blanks_droppable`). libxml2 takes it from the C heap, which keeps it after the read
# unless it is given back (`release_heap`, after each whole read): without that, a
# 1,000-student school's 1.4 MB (a 6 MB tree) raised the server's peak by 5 MB (issue 18,
# where the bound of 150 MB is measured) for a read 15 to 30 ms shorter, and the bound was
# 1 MiB. Larger bodies stream, in the memory of one record.
WHOLE_MAX_BYTES = 2 * 1024 * 1024
# And only bodies with at most this many `<` and `=` (elements, attributes, namespace
# declarations: what the tree's nodes are made of): an EDEXml file has about one per 20
# bytes (73,000 in the 1,000-student school's 1.4 MB), while 1 MB of `<a/>` (250,000
# elements) would be a tree of 45 MB. This bounds the tree at about 27 MB, whatever the body
# (measured: 24 MB for 100,000 marks of `<a/>x`, 36 MB for 150,000), and still takes a 2 MiB
# file of that density whole (about 105,000).
WHOLE_MAX_MARKUP = 110_000

_TYPE_NAME = re.compile(r"[^\w.\-]")


class EdexmlVisitor(Protocol):
    """Receives each record that is valid, before it is removed from the tree."""

    def item(self, kind: str, element: etree._Element, where: str) -> list[Problem]:
        """`kind` is the record's tag (`school`, `groep`, `leerling`, ...)."""
        ...

    def end(self) -> list[Problem]:
        """Called once after the last record, if the document was read to its end."""
        ...

    def set_aside(self, kind: str, element: etree._Element, problems: list[Problem]) -> bool:
        """A record the schema refuses for its values: whether the visitor sets it aside
        (leniency per record) instead of the document being refused. `kind` is the record's
        tag, or `verzorger` for one guardian of a student whose only problems are in it."""
        ...


def validate_edexml(
    body: bytes | etree._Element,
    *,
    visitor: EdexmlVisitor | None = None,
    whole_max_bytes: int = WHOLE_MAX_BYTES,
) -> list[str]:
    """Validates `body`; returns warnings (skipped blocks), raises FormatError on errors.

    With a `visitor`, each valid record is handed to it while the document streams by; the
    visitor's problems are reported together with the schema's.

    `body` may also be a document already parsed (its root element, `EDEX`): a UWLR answer's
    EDEXml, which `uwlr_soap` has in a tree. It is walked (`_Run.walk`) with the same checks
    in the same order as the bytes would stream, without writing it out and parsing it
    again; the records are removed from it as they are read. Lines are the tree's own (for
    an answer, the lines of the SOAP message as ESIS sent it; the stored copy lacks the ECK-iDs,
    and the line breaks before them).

    Bytes of at most `whole_max_bytes` are parsed whole and walked the same way; 0 streams
    every body (the tests hold the two ways equal).
    """
    run = _Run(visitor)
    root: etree._Element | None = None
    error: FormatError | None = None
    try:
        if isinstance(body, bytes):
            _check_prolog(body)
            root = _whole(body, whole_max_bytes) if whole_max_bytes > 0 else None
            if root is None:
                run.stream(body)
            else:
                run.walk(root)
        else:
            run.walk(body)
        run.finish()
    except _Stop:
        pass
    except etree.XMLSyntaxError as exc:
        message = syntax_message(exc)
        error = fail(exc.lineno or None, "document", f"malformed XML: {message}")
    except FormatError as exc:
        # Raised inside the walk: its traceback holds the walk's frames, and they hold
        # elements of the tree, which would outlive `release_heap` below.
        error = exc.with_traceback(None)
        error.__context__ = None
    finally:
        run.give_back()
    if root is not None:
        root = run.root = None  # the last references to the tree: libxml2 frees it here
        release_heap()
    if error is not None:
        raise error from None
    if run.problems:
        raise unprocessable(run.problems)
    return run.warnings()


def _check_prolog(body: bytes) -> None:
    if is_wide(body):
        return  # libxml2 reads the declaration; the root element check refuses a DOCTYPE
    name = declared_encoding(body)
    if name is not None:
        shown = _TYPE_NAME.sub("?", name)[:40]
        if name.lower().startswith(WIDE_ENCODINGS):
            raise fail(1, "document", f"the declared encoding '{shown}' does not match the bytes")
        if name.lower() not in ENCODINGS:
            raise fail(1, "document", f"encoding '{shown}' is not supported; use UTF-8")
    line = doctype_line(body)
    if line is not None:
        raise fail(line, "document", "DOCTYPE is not allowed")


def parse_whole(body: bytes, max_bytes: int = WHOLE_MAX_BYTES) -> etree._Element | None:
    """What `validate_edexml` does first with bytes: the prolog checked (FormatError), then
    the document parsed whole, or None for a body that streams (see `_whole`). The tree can
    be read (`edexml_quick`) or handed to `validate_edexml`; whoever parsed it gives the heap
    back after it is dropped (`release_heap`)."""
    _check_prolog(body)
    return _whole(body, max_bytes) if max_bytes > 0 else None


def schema_version(school: etree._Element) -> tuple[str, str | None]:
    """The schema a document is validated with, by its `school/xsdversie`: 2.0 when it says
    2.0, else 2.1, with a note when it says something else."""
    declared = (school.findtext("xsdversie") or "").strip()
    if declared.startswith("2.0"):
        return "2.0", None
    if declared and not declared.startswith("2.1"):
        shown = _TYPE_NAME.sub("?", declared)[:16]
        return DEFAULT_VERSION, (
            f"xsdversie '{shown}' is not 2.0 or 2.1; the file was validated as EDEXml 2.1"
        )
    return DEFAULT_VERSION, None


def too_big(top: etree._Element, *, container: bool) -> bool:
    """Whether a part of the document may break MAX_UNIT_ELEMENTS (a container's records are
    units of their own, another part is one): then the walk counts it unit by unit."""
    if container:
        return bool(_BIG_CHILD(top, n=MAX_UNIT_ELEMENTS))
    return cast(float, _COUNT(top)) > MAX_UNIT_ELEMENTS


def _whole(body: bytes, max_bytes: int) -> etree._Element | None:
    """The document parsed whole, or None for a body that streams: one larger than
    `max_bytes` or with more markup than WHOLE_MAX_MARKUP (the memory of its tree), one in
    UTF-16 or UTF-32 (lxml reads a UTF-32 byte order mark that the stream's parser takes
    for UTF-16: the two would disagree), one that does not parse (streaming names the
    syntax error at its line, as it always has).

    Whitespace between elements is not kept in the tree (nothing reads it: the schema
    ignores it in element content, the walk strips every text it looks at), which halves
    the tree, unless libxml2's rule for blank text could take blanks off a value too
    (`blanks_droppable`: a comment, CDATA or a processing instruction in the root, or a
    blank before a carriage return): such a body keeps all of it, as the stream does."""
    if len(body) > max_bytes or is_wide(body):
        return None
    if body.count(b"<") + body.count(b"=") > WHOLE_MAX_MARKUP:
        return None
    try:
        return etree.fromstring(body, safe_parser(remove_blank_text=blanks_droppable(body)))
    except etree.XMLSyntaxError:
        return None


# --- the run ----------------------------------------------------------------------------------


_COUNT = etree.XPath("count(descendant-or-self::*)")
# Whether a child of the context element has more than $n elements (itself included).
_BIG_CHILD = etree.XPath("boolean(*[count(descendant-or-self::*) > $n])")


@functools.cache
def _below(steps: int) -> etree.XPath:
    """Whether an element lies `steps` levels below the context element."""
    return etree.XPath("boolean(" + "/".join(["*"] * steps) + ")")


class _Stop(Exception):
    """MAX_ERRORS problems were found: stop reading."""


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
            self.borrowed[self.version] = borrow(self.version)
        return self.borrowed[self.version]

    def give_back(self) -> None:
        for version, schema in self.borrowed.items():
            give_back(version, schema)
        self.borrowed.clear()

    # problems

    def add(self, problems: Sequence[Problem]) -> None:
        self.problems.extend(problems)
        if len(self.problems) >= MAX_ERRORS:
            raise _Stop

    def schema_problems(self, schema: etree.XMLSchema, base: etree._Element) -> list[Problem]:
        out: list[Problem] = []
        for entry in entries(schema):
            if base.tag == ROOT and is_identity(entry.message):
                continue  # checked while streaming; the skeleton lacks most records
            chain = resolve(base, entry.path)
            where = record_of(chain)
            subject, message = phrase(entry.message)
            line = entry.line or line_of(chain[-1])
            if (line, where, subject or message) in self.seen:
                continue
            self.seen.add((line, where, subject or message))
            out.append(Problem(line, where, message))
        return out

    # streaming

    def stream(self, body: bytes) -> None:
        depth = 0
        unit = 0
        events = safe_iterparse(body, ("start", "end"))
        for event, el in events:
            if event == "start":
                depth += 1
                if depth > 3:  # inside a record: most events, counted only
                    unit += 1
                    if depth > MAX_DEPTH or unit > MAX_UNIT_ELEMENTS:
                        self.too_large(el, depth)
                    continue
                if depth == 1:
                    self.start_root(el)
                elif depth == 2:
                    unit = 0
                    self.container = _Container(str(el.tag)) if el.tag in CONTAINERS else None
                elif self.container is not None:
                    unit = 0
                unit += 1
                if unit > MAX_UNIT_ELEMENTS:
                    self.too_large(el, depth)
                continue
            if depth > 3:
                depth -= 1
                continue
            if depth == 2:
                self.end_top(el)
            elif depth == 3:
                self.end_child(el)
            depth -= 1

    def walk(self, root: etree._Element) -> None:
        """`stream` over a parsed tree: the same calls, in the document order the events
        would come in. Only records and the parts around them are visited in Python. The
        limits are checked by XPath, in C: once for the document and once for each part (a
        school's answer is far from both), and unit by unit only where the document or a
        part breaks one."""
        self.start_root(root)
        deep = bool(_below(MAX_DEPTH)(root))  # an element below depth MAX_DEPTH, anywhere
        for top in list(root):
            if not isinstance(top.tag, str):
                continue  # a comment or processing instruction (the parsers drop them)
            self.container = _Container(str(top.tag)) if top.tag in CONTAINERS else None
            # A part is one unit; in a container, each record is one.
            near = deep or too_big(top, container=self.container is not None)
            if near and self.container is None:
                self.check_size(top, 2)  # the whole element is one unit, as it streams
            for child in list(top):
                if not isinstance(child.tag, str):
                    continue
                if near and self.container is not None:
                    self.check_size(child, 3)  # each record is a unit of its own
                self.end_child(child)
            self.end_top(top)

    def check_size(self, el: etree._Element, depth: int) -> None:
        """MAX_UNIT_ELEMENTS and MAX_DEPTH for one unit at `depth` (the root is 1), with the
        error `stream` would raise at the first element in document order that breaks one."""
        count = cast(float, _COUNT(el))
        steps = MAX_DEPTH + 1 - depth  # an element that many levels below is too deep
        if count <= MAX_UNIT_ELEMENTS and (steps < 1 or not _below(steps)(el)):
            return
        unit = 0
        pending = [(el, depth)]
        while pending:
            node, level = pending.pop()
            unit += 1
            if level > MAX_DEPTH or unit > MAX_UNIT_ELEMENTS:
                self.too_large(node, level)
            pending.extend((c, level + 1) for c in reversed(node) if isinstance(c.tag, str))

    @staticmethod
    def too_large(el: etree._Element, depth: int) -> NoReturn:
        """Too deep (checked first), or too many elements in one record."""
        if depth > MAX_DEPTH:
            raise fail(line_of(el), "document", f"elements are nested deeper than {MAX_DEPTH}")
        raise fail(line_of(el), "document", f"more than {MAX_UNIT_ELEMENTS} elements in one record")

    def start_root(self, el: etree._Element) -> None:
        if has_doctype(el):
            raise fail(line_of(el), "document", "DOCTYPE is not allowed")
        if el.tag != ROOT:
            raise fail(line_of(el), "document", f"root element is not EDEX: '{el.tag}'"[:120])
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
                message = f"{parent.tag} has text after {label(el)}; only elements are allowed"
                self.add([Problem(line_of(el), ROOT, message)])
            parent.remove(el)

    def keep_unexpected(self, el: etree._Element) -> None:
        """Kept, emptied, for the skeleton's error; MAX_ERRORS of them at most."""
        tail = el.tail
        el.clear()
        el.tail = tail  # whitespace, or text the skeleton's validation reports
        self.unexpected += 1
        if self.unexpected > MAX_ERRORS:
            self.problems.append(
                Problem(line_of(el), "document", f"more than {MAX_ERRORS} unexpected elements")
            )
            raise _Stop

    def choose_version(self, school: etree._Element) -> None:
        self.version, note = schema_version(school)
        if note is not None:
            self.notes.append(note)

    def record(self, el: etree._Element) -> None:
        where = label(el)
        self.skip_blocks(el, where)
        schema = self.schema()
        problems = [] if schema.validate(el) else self.schema_problems(schema, el)
        if problems and self.set_aside_guardians(el, problems):
            # Only its guardians were refused, and they are set aside: the rest is read on.
            problems = [] if schema.validate(el) else self.schema_problems(schema, el)
        identity = self.identity(el, where, valid=not problems)
        if (
            problems
            and not identity
            and self.visitor is not None
            and self.visitor.set_aside(str(el.tag), el, problems)
        ):
            return  # one record with an unusable value: set aside, the document read on
        problems += identity
        if not problems and self.visitor is not None:
            problems = self.visitor.item(str(el.tag), el, where)
        self.add(problems)

    def set_aside_guardians(self, el: etree._Element, problems: list[Problem]) -> bool:
        """Leniency per record inside a student: when every problem lies in its guardians
        (each with a key), each is offered to the visitor on its own (`set_aside("verzorger",
        ...)`); those it sets aside are removed, and the student is checked again without
        them. A student's own problems still set the student aside (with its guardians)."""
        if el.tag != "leerling" or self.visitor is None:
            return False
        parts: dict[str, list[Problem]] = {}
        for problem in problems:
            if not problem.where.startswith("verzorger key="):
                return False
            parts.setdefault(problem.where, []).append(problem)
        found = [v for v in el.iterfind("toevoegingen/blok/verzorger") if label(v) in parts]
        if {label(v) for v in found} != set(parts):
            return False
        if not all(self.visitor.set_aside("verzorger", v, parts[label(v)]) for v in found):
            return False
        for guardian in found:
            parent = guardian.getparent()
            if parent is not None:
                parent.remove(guardian)
        return True

    def skip_blocks(self, el: etree._Element, where: str) -> None:
        known = known_block_types(self.version)
        for extra in list(el.iterchildren("toevoegingen")):  # el.findall, without ElementPath
            for blok in list(extra.iterchildren("blok")):
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
        self.unique(out, el, where, "groep" if tag in GROUP_TAGS else tag, el.get("key"), "key")
        if tag == "samengestelde_groep":
            self.composite.add((el.get("key") or "").strip())
        if tag in ("leerling", "leerkracht") and (eckid := el.get("eckid")) is not None:
            self.unique(out, el, where, f"eckid {tag}", eckid, "eckid")
        if not valid:
            return out
        # The references, as el.findall(...) finds them, without ElementPath's generators.
        refs: list[tuple[etree._Element, bool]] = []
        if tag == "leerling":
            refs += [(ref, False) for ref in el.iterchildren("groep")]
            refs += [
                (ref, True)
                for refs_el in el.iterchildren("samengestelde_groepen")
                for ref in refs_el.iterchildren("samengestelde_groep")
            ]
            for ref in el.iterchildren("vestiging"):
                key = (ref.get("key") or "").strip()
                if key not in self.keys["vestiging"]:
                    message = f"vestiging '{key[:100]}' is not in vestigingen"
                    out.append(Problem(line_of(ref), where, message))
        elif tag == "leerkracht":
            refs += [
                (ref, ref.tag != "groep")
                for groups in el.iterchildren("groepen")
                for ref in groups.iterchildren("*")
            ]
        groups = self.keys["groep"]
        for ref, composite in refs:
            key = (ref.get("key") or "").strip()
            if key in groups and composite == (key in self.composite):
                continue
            shown = key[:100]
            if key not in groups:
                message = f"{ref.tag} '{shown}' is not in groepen"
            elif composite:
                message = f"{ref.tag} '{shown}' is a groep, not a samengestelde_groep"
            else:
                message = f"{ref.tag} '{shown}' is a samengestelde_groep, not a groep"
            out.append(Problem(line_of(ref), where, message))
        return out

    def unique(
        self,
        out: list[Problem],
        el: etree._Element,
        where: str,
        table: str,
        value: str | None,
        what: str,
    ) -> None:
        value = (value or "").strip()
        if not value:
            return
        seen = self.keys[table]
        if value in seen:
            message = f"duplicate {what} (first at line {seen[value]})"
            out.append(Problem(line_of(el), where, message))
        else:
            seen[value] = line_of(el)

    def finish(self) -> None:
        if self.root is None:  # pragma: no cover - iterparse raises on an empty document
            raise fail(None, "document", "no root element")
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
