"""Safe XML parsing, for every XML document the project reads (EDEXml, UWLR, the fake ESIS).

One set of parser options: no DTD, no entity resolution, no network, libxml2's limits left
on (no `huge_tree`, so its entity amplification guard and text size limits stay), comments
and processing instructions dropped. A DOCTYPE is refused from the bytes, before libxml2
reads any entity declaration in it (`doctype_line`), and again from the parsed tree
(`has_doctype`) for encodings the byte check cannot see. Each caller turns these answers
into its own error: a 422 for an uploaded EDEXml file, a transient pull failure for a UWLR
answer.
"""

from __future__ import annotations

import ctypes
import functools
import io
import re
from collections.abc import Iterator
from typing import Any

from lxml import etree

__all__ = [
    "ENCODINGS",
    "PARSER_OPTIONS",
    "WIDE_ENCODINGS",
    "blanks_droppable",
    "declared_encoding",
    "doctype_line",
    "has_doctype",
    "is_wide",
    "safe_iterparse",
    "safe_parser",
    "schema_parser",
    "syntax_message",
]

PARSER_OPTIONS: dict[str, bool] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}

# Encodings a school's export is written in; anything else is refused before parsing.
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

_FIRST_ELEMENT = re.compile(rb"<[A-Za-z_:]")
_DECLARATION = re.compile(rb"^(?:\xef\xbb\xbf)?<\?xml\s[^>]*?\bencoding\s*=\s*[\"']([^\"'>]{0,64})")
_SYNTAX_POSITION = re.compile(r"(, line \d+, column \d+|\s*Bytes:.*)$")


def safe_parser(*, remove_blank_text: bool = False) -> etree.XMLParser:
    """An XMLParser with PARSER_OPTIONS, for a document parsed as a whole; optionally
    without the whitespace-only text between elements (libxml2's rule for blank text)."""
    options = PARSER_OPTIONS
    return etree.XMLParser(
        remove_blank_text=remove_blank_text,
        resolve_entities=options["resolve_entities"],
        no_network=options["no_network"],
        load_dtd=options["load_dtd"],
        huge_tree=options["huge_tree"],
        remove_comments=options["remove_comments"],
        remove_pis=options["remove_pis"],
    )


def schema_parser() -> etree.XMLParser:
    """A parser for the shipped XSDs: as safe, but keeping their comments (documentation)."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


# Blank text that libxml2 drops (its rule for XML_PARSE_NOBLANKS) before a carriage return.
_BLANK_BEFORE_CR = re.compile(rb"[ \t\n]\r")


def blanks_droppable(body: bytes) -> bool:
    """Whether parsing `body` with `remove_blank_text` drops only whitespace between elements,
    never from a value: libxml2 drops a run of blanks that a `<` or a carriage return
    follows, unless the element's text started before it or its end tag follows at once.
    So a value can lose its leading blanks before a comment, CDATA section or processing
    instruction (`<!`, `<?`: after the root's start tag; before it they are no value's) or
    before a carriage return. A UTF-8 (or one-byte) body."""
    first = _FIRST_ELEMENT.search(body)
    start = first.start() if first else len(body)
    return (
        _lacks(body, b"<!", start)
        and _lacks(body, b"<?", start)
        and (b"\r" not in body or _BLANK_BEFORE_CR.search(body, start) is None)
    )


def _lacks(body: bytes, mark: bytes, start: int) -> bool:
    """`body.find(mark, start) < 0` for a mark of `<` and a rare byte: found by the rare byte
    (`!`, `?`: a few in a school's body) rather than by `<` (one in 20 bytes: 1.5 ms of a
    1.4 MB body each). A body full of the rare byte is searched the plain way after a few."""
    rare = mark[1:]
    at = body.find(rare, start + 1)
    for _ in range(64):
        if at < 0:
            return True
        if body[at - 1] == mark[0]:
            return False
        at = body.find(rare, at + 1)
    return at < 0 or body.find(mark, at - 1) < 0


def safe_iterparse(body: bytes, events: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    """`lxml.etree.iterparse` over `body` with PARSER_OPTIONS, for a document that streams."""
    return iter(etree.iterparse(io.BytesIO(body), events=events, **PARSER_OPTIONS))


def doctype_line(body: bytes) -> int | None:
    """The line of a DOCTYPE before the root element, or None. A DOCTYPE can only come there;
    finding it in the bytes refuses it before libxml2 reads any entity declaration in it."""
    first = _FIRST_ELEMENT.search(body)
    doctype = body.find(b"<!DOCTYPE", 0, first.start() if first else len(body))
    return body.count(b"\n", 0, doctype) + 1 if doctype >= 0 else None


def has_doctype(root: etree._Element) -> bool:
    """Whether the parsed document had a DOCTYPE (the check for UTF-16/32 bodies)."""
    return bool(getattr(root.getroottree().docinfo, "doctype", ""))


def is_wide(body: bytes) -> bool:
    """UTF-16 or UTF-32 by byte order mark (UTF-32LE's starts as UTF-16LE's) or by a zero
    byte in the first four: around the `<` of the first character, or in UTF-32BE's byte
    order mark. No UTF-8 or one-byte document starts with one."""
    return body[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in body[:4]


def declared_encoding(body: bytes) -> str | None:
    """The encoding the XML declaration names (as written), or None without one."""
    declared = _DECLARATION.match(body)
    return declared.group(1).decode("ascii", "replace").strip() if declared else None


def syntax_message(exc: etree.XMLSyntaxError) -> str:
    """libxml2's message without its position and byte dump (the caller names the line)."""
    return _SYNTAX_POSITION.sub("", exc.msg or "syntax error")


@functools.cache
def _malloc_trim() -> Any:
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS). Looked up
    in the process's own symbols, not by `ctypes.util.find_library` (which runs `ldconfig`,
    and finds nothing in an image without it)."""
    try:
        trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:  # pragma: no cover - a platform without dlopen(NULL)
        return None
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


def release_heap() -> None:
    """Gives the C heap's free memory back to the system (glibc's `malloc_trim(0)`, about 2 ms;
    nothing elsewhere). For after a document parsed whole: libxml2 takes its tree from the C
    heap, and the freed tree stays as the process's memory otherwise, so the next request's
    peak stands on top of it (issue 18: the 1,000-student school's 6 MB tree). It holds the
    allocator's locks while it runs: another thread's `malloc` may wait as long (1 to 10 ms
    measured with a fragmented heap of 150 MB), once per whole read."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
