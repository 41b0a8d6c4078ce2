"""Cheap checks on a raw body before it is parsed, so that what parsing costs stays bounded.

A body within the size limit can still make a parser build far more than it holds: a JSON
list of a million `{}` (3 MB) becomes a million dictionaries and, validated, millions of
errors; an XML start tag with 200,000 attributes is built whole before any record check can
see it. These checks look at the bytes only (counts and one regular expression, in C) and
refuse such bodies with a 422 that says what is too much.
"""

from __future__ import annotations

import re
from typing import Any

from app.esis.errors import FormatError

# JSON values (objects, arrays and list items) per record allowed in one body: a real
# snapshot has about 13 per record (a student's fields, a guardian's links); the rest is
# slack for long lists of groups or roles. Counted as `{`, `[` and `,` bytes, an upper bound
# of what the parser builds.
VALUES_PER_RECORD = 32
VALUES_SLACK = 10_000
# Items in a list inside one record (a guardian's students, a staff member's groups).
MAX_NESTED_ITEMS = 1_000
# Attributes on one XML element: EDEXml uses a handful (`key`, `xsi:type`).
MAX_XML_ATTRIBUTES = 64
# A start tag this long is looked at closely; a shorter one cannot hold that many attributes
# (each takes at least ` a=""`).
_LONG_TAG = re.compile(rb"<[^<>]{256,}")
_LONG_TAG_TEXT = re.compile(r"<[^<>]{256,}")
# A `<` and more than MAX_XML_ATTRIBUTES `=`, in a body with all but `<`, `>` and `=` taken
# out (`_check_byte_tags`).
_CROWDED = b"<" + b"=" * (MAX_XML_ATTRIBUTES + 1)
_NOT_MARKS = bytes(byte for byte in range(256) if byte not in b"<>=")
# Wide encodings by byte order mark or the zero bytes around `<?`: there a byte 0x3C or 0x3E
# can be half of another character, so the text is decoded first.
_WIDE = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\x00<\x00?", "utf-16-be"),
    (b"<\x00?\x00", "utf-16-le"),
)


def check_json_values(body: bytes, max_records: int) -> int:
    """The body's JSON values, about (an upper bound); refused when too many."""
    values = body.count(b"{") + body.count(b"[") + body.count(b",")
    limit = VALUES_PER_RECORD * max_records + VALUES_SLACK
    if values > limit:
        raise FormatError(
            f"the body holds about {values} JSON values, more than a snapshot of at most "
            f"{max_records} records can have ({limit}); nothing was read",
            errors=[{"field": "body", "message": "too many JSON values"}],
        )
    return values


def check_json_lists(raw: object, lists: tuple[str, ...], max_records: int) -> None:
    """Each record list, and the lists inside its records, within bounds: before validation,
    whose errors would otherwise be built for every item."""
    if not isinstance(raw, dict):
        return
    total = 0
    for name in lists:
        items = raw.get(name)
        if not isinstance(items, list):
            continue
        total += len(items)
        if len(items) > max_records or total > max_records:
            raise FormatError(
                f"{name}: the snapshot has more records, more than the limit of {max_records} "
                "(ESIS_SYNC_MAX_SNAPSHOT_RECORDS); nothing was validated",
                errors=[{"field": name, "message": f"more than {max_records} records"}],
            )
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            for field, value in item.items():
                if isinstance(value, list) and len(value) > MAX_NESTED_ITEMS:
                    where = f"{name}[{index}].{str(field)[:64]}"
                    raise FormatError(
                        f"{where}: more than {MAX_NESTED_ITEMS} items in one record",
                        errors=[{"field": where, "message": "too many items"}],
                    )


def check_xml_attributes(body: bytes) -> None:
    """No element with more than MAX_XML_ATTRIBUTES attributes, counted as `=` in the long
    start tags. In UTF-8 and the one-byte encodings `<`, `>` and `=` are never part of another
    character, so the bytes are enough; wide encodings are decoded first."""
    wide = next((name for mark, name in _WIDE if body.startswith(mark)), None)
    if wide is None:
        _check_byte_tags(body)
        return
    text = body.decode(wide, errors="replace")
    for found in _LONG_TAG_TEXT.finditer(text):
        if _too_many(found.group(), "=", ("<!--", "<![CDATA[")):
            _refuse_attributes(text.count("\n", 0, found.start()) + 1)


def _check_byte_tags(body: bytes) -> None:
    """The start tags of a UTF-8 (or one-byte) body: each long one (`_LONG_TAG`) with more
    than MAX_XML_ATTRIBUTES `=` refused at its line. A tag can only hold that many where
    that many `=` follow a `<` with no `<` or `>` between them: looked for first in the body
    with everything else taken out (`_MARKS`, in C; 1.6 ms of a school's 1.4 MB, against 7 ms
    for `_LONG_TAG` tried at each of its 73,000 `<`), and only a body that has such a place
    is searched tag by tag."""
    if body.translate(None, _NOT_MARKS).find(_CROWDED) < 0:
        return
    for match in _LONG_TAG.finditer(body):
        if _too_many(match.group(), b"=", (b"<!--", b"<![CDATA[")):
            _refuse_attributes(body.count(b"\n", 0, match.start()) + 1)


def _too_many(tag: Any, equals: Any, skipped: tuple[Any, ...]) -> bool:
    return not tag.startswith(skipped) and tag.count(equals) > MAX_XML_ATTRIBUTES


def _refuse_attributes(line: int) -> None:
    raise FormatError(
        f"line {line}: an element has more than {MAX_XML_ATTRIBUTES} attributes",
        errors=[{"field": f"line {line}", "message": "too many attributes"}],
    )
