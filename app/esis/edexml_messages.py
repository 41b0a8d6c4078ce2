"""libxml2's schema messages in this project's words, and where in the document they are.

A message names the line, the record (`leerling key=123`, a guardian inside it) and what is
wrong; it quotes a value only for elements in QUOTABLE (dates, codes, keys), never names,
e-mail addresses or national ids. `unprocessable` turns the problems into one 422.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from lxml import etree

from app.esis.edexml_schemas import RECORDS, ROOT, XSI_TYPE
from app.esis.errors import FormatError, invalid

__all__ = [
    "Problem",
    "entries",
    "fail",
    "is_identity",
    "label",
    "line_of",
    "phrase",
    "record_of",
    "resolve",
    "unprocessable",
]

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
    return invalid([p.as_dict() for p in ordered])


def fail(line: int | None, where: str, message: str) -> FormatError:
    return unprocessable([Problem(line, where, message)])


def line_of(el: etree._Element) -> int | None:
    line = el.sourceline  # lxml-stubs type this attribute badly
    return line if isinstance(line, int) else None


def label(el: etree._Element) -> str:
    if el.tag == "school" or el.tag == ROOT:
        return str(el.tag)
    key = (el.get("key") or "").strip()
    return f"{el.tag} key={key[:100]}" if key else str(el.tag)


class LogEntry(Protocol):
    """What lxml's error log entries carry (lxml-stubs do not describe them)."""

    message: str
    path: str | None
    line: int


def entries(schema: etree.XMLSchema) -> list[LogEntry]:
    return cast("list[LogEntry]", list(cast(Iterable[Any], schema.error_log)))


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


def phrase(message: str) -> tuple[str, str]:
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


def is_identity(message: str) -> bool:
    return any(
        part in message for part in ("identity-constraint", "key-sequence", "keyref", "Duplicate")
    )


def resolve(base: etree._Element, path: str | None) -> list[etree._Element]:
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


def record_of(chain: list[etree._Element]) -> str:
    """The record a problem is in: a guardian, else the record, else the school or EDEX."""
    for el in reversed(chain):
        if el.tag == "verzorger":
            return label(el)
    for el in chain:  # root first: a record comes before any group reference in it
        if el.tag in RECORDS:
            return label(el)
    return ROOT
