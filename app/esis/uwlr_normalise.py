"""UWLR answers as ESIS sends them, made readable as EDEXml before they are read.

Real answers are not clean: `xsdversie` 2.2 around EDEXml 2.1 content, a school named by
`schoolkey` alone, empty optional elements, staff roles that are not codes. Each is turned
into what the EDEXml reader expects, with a warning where something was reinterpreted.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from lxml import etree

_BRIN = re.compile(r"^[0-9]{2}[A-Z]{2}$")
_BRANCH = re.compile(r"^[0-9]{2}$")
_EMAIL = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+")
_DIGITS = re.compile(r"\d{6,}")


def _local(el: etree._Element) -> str:
    tag = el.tag
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _child(el: etree._Element, name: str) -> etree._Element | None:
    return next((c for c in el if _local(c) == name), None)


def _scrub(text: str, limit: int) -> str:
    text = _DIGITS.sub("[number]", _EMAIL.sub("[e-mail]", " ".join(text.split())))
    return text[:limit]


def requested_school(content_type: str | None) -> tuple[str, str] | None:
    """The (brin, branch) a stored answer was asked for: parameters of its media type."""
    params = dict(
        part.strip().split("=", 1) for part in (content_type or "").split(";")[1:] if "=" in part
    )
    brin, branch = params.get("brin", ""), params.get("branch", "")
    if _BRIN.match(brin) and _BRANCH.match(branch):
        return brin, branch
    return None


def stored_type(media_type: str, brin: str, branch: str) -> str:
    """How a pulled answer is stored: its media type, naming the school that was asked for."""
    return f"{media_type}; brin={brin}; branch={branch}"


def normalise_school(school: etree._Element, requested: tuple[str, str] | None) -> None:
    """Real answers as they come: `xsdversie` 2.2 (UWLR 2.2 wraps EDEXml 2.1 content) reads
    as 2.1, without a warning; a school named by `schoolkey` alone is the school that was
    asked for (the request named its BRIN and dependance code)."""
    version = _child(school, "xsdversie")
    if version is not None and (version.text or "").strip().startswith("2.2"):
        version.text = "2.1"
    namespace = etree.QName(school).namespace
    tag = (lambda name: f"{{{namespace}}}{name}") if namespace else (lambda name: name)
    key = _child(school, "schoolkey")
    has_brin = _child(school, "brincode") is not None
    if key is None or has_brin or _child(school, "instellingsnummer") is not None:
        return
    if requested is None:
        return  # the reader says what is missing
    brin = etree.Element(tag("brincode"))
    brin.text = requested[0]
    branch = etree.Element(tag("dependancecode"))
    branch.text = requested[1]
    brin.sourceline = branch.sourceline = key.sourceline  # they stand for the schoolkey
    key.addprevious(brin)
    key.addprevious(branch)


@functools.cache
def _role_codes() -> frozenset[str]:
    """The staff role codes of EDEXml 2.1 (`EDEXLeerkrachtRolType`), read from the shipped XSD."""
    path = Path(__file__).resolve().parent / "xsd" / "EDEXML-2.1" / "EDEXML.types.variabel.xsd"
    tree = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))
    xs = "{http://www.w3.org/2001/XMLSchema}"
    codes: set[str] = set()
    for simple in tree.iter(f"{xs}simpleType"):
        if simple.get("name") == "EDEXLeerkrachtRolType":
            codes.update(e.get("value") or "" for e in simple.iter(f"{xs}enumeration"))
    return frozenset(codes - {""})


_RECORD_PARTS = ("groepen", "leerlingen", "leerkrachten")


def normalise_records(data: etree._Element) -> list[str]:
    """Real exports are not clean. An empty optional element (`<voorvoegsel></voorvoegsel>`)
    is an absent value; a staff role that is not an EDEXml code is kept as text
    (`rolomschrijving`), with a warning that names the staff member, never the role's
    holder's name."""
    notes: list[str] = []
    emptied = 0
    codes = _role_codes()
    for part in (c for c in data if _local(c) in _RECORD_PARTS):
        for record in (r for r in part if isinstance(r.tag, str)):
            # A record's own fields only: vendor blocks (`toevoegingen`) have schemas of their
            # own, in which an empty element may be required.
            for el in list(record):
                if (
                    isinstance(el.tag, str)
                    and len(el) == 0
                    and not el.attrib
                    and not (el.text or "").strip()
                ):
                    record.remove(el)
                    emptied += 1
            if _local(record) != "leerkracht":
                continue
            roles = [el for el in record if _local(el) == "rol"]
            roles += [
                el
                for groups in record
                if _local(groups) == "groepen"
                for ref in groups
                for el in ref
                if _local(el) == "rol"
            ]
            key = (record.get("key") or "?")[:64]
            for el in roles:
                text = (el.text or "").strip()
                if text in codes:
                    continue
                namespace = etree.QName(el).namespace
                el.tag = f"{{{namespace}}}rolomschrijving" if namespace else "rolomschrijving"
                notes.append(
                    f"leerkracht key={key}: rol '{_scrub(text, 40)}' is not an EDEXml role "
                    "code; kept as text"
                )
    if emptied:
        notes.append(f"{emptied} empty elements read as absent values")
    return notes


# An ECK-iD attribute from its name on; what `\s` matches in a bytes pattern.
_ECKID_AT = re.compile(rb"""eckid\s*=\s*(?:"[^"<>]*"|'[^'<>]*')""")
_SPACE = frozenset(b" \t\n\r\x0b\x0c")


def without_eckid(body: bytes) -> bytes:
    """The answer without its ECK-iD attributes, as it is stored: the ECK-iD is meant for the
    educational content chain only, and this service has no use for it.

    What `re.sub(rb'\\s+eckid\\s*=\\s*("..."|'...')', b"", body)` removes, found from the
    name on: a pattern that starts with `\\s+` is tried at every space of the answer, and an
    indented answer is mostly spaces (4-8 ms for a 250-student answer, now a fraction of a
    millisecond; tests/test_uwlr.py holds the two equal)."""
    if b"eckid" not in body:
        return body
    out: list[bytes] = []
    kept = 0  # the end of what was removed last: a run of spaces starts after it
    found = _ECKID_AT.search(body)
    while found is not None:
        start = found.start()
        spaces = start
        while spaces > kept and body[spaces - 1] in _SPACE:
            spaces -= 1
        if spaces == start:  # no space before the name: not an attribute of its own
            found = _ECKID_AT.search(body, start + 1)
            continue
        out.append(body[kept:spaces])
        kept = found.end()
        found = _ECKID_AT.search(body, kept)
    out.append(body[kept:])
    return b"".join(out)
